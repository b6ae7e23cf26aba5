"""Whole-model workloads: a ``transformer`` op expanded into the kernels the engine evaluates.

``expand_workload(wl)`` is the one place a transformer op becomes ops: it returns a Workload
whose ``ops`` hold, in place of the transformer op, its per-chip matmul, attention,
elementwise and collective ops (ledger paths such as ``layer/attn/qkv``, identical layers as
one op with ``repeat``), and which remembers where they came from (``expansion(wl)``: the
TransformerOp, its sharding Plan, each op's role and group, and the workload as written).
``catalog.load_workload`` calls it, so every command (roofline, compare, report, sweep, the
workbook) sees the expanded ops; ``engine.evaluate_rows`` and ``results.to_json`` call it too,
for workloads built in code. It is idempotent: an expanded workload, or one without a
transformer op, comes back unchanged.

Pure Python: no jax, no hardware (the expansion depends on the mesh, not on the chip).
"""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import SpecError
from ..specs import CollectiveOp, TransformerOp, Workload, field_path, op_spec
from ..trace import active as tracing
from .transformer import Expansion, Plan, expand_op, group_of, make_plan

__all__ = ["expand_workload", "expansion", "source_workload", "with_slice", "Expansion", "Plan"]


def expansion(wl: Workload) -> Expansion | None:
    """How ``wl`` was expanded (None: it has no transformer op)."""
    return getattr(wl, "_expansion", None)


def source_workload(wl: Workload) -> Workload:
    """The workload as written (before expansion)."""
    x = expansion(wl)
    return x.source if x is not None else wl


def expand_workload(wl: Workload) -> Workload:
    """``wl`` with its transformer op replaced by its kernels (see the module docstring)."""
    if expansion(wl) is not None:
        return wl
    found = [(i, op) for i, op in enumerate(wl.ops) if isinstance(op, TransformerOp)]
    if not found:
        return wl
    (i, spec), = found  # Workload validation allows one transformer op
    try:
        plan = make_plan(spec, wl.mesh)  # the model's sizes must fit the mesh (heads by tensor...)
    except SpecError as e:
        raise SpecError(f"ops[{i}] ({spec.name!r}): {e}") from None
    items = expand_op(spec, plan)
    before = [op.model_dump() for op in wl.ops[:i]]
    after = [op.model_dump() for op in wl.ops[i + 1:]]
    data = {**wl.model_dump(exclude={"ops"}), "ops": before + [d for d, _ in items] + after}
    try:
        out = Workload.model_validate(data) if not tracing() else Workload.model_construct(
            **{**data, "ops": [op_spec(d) for d in data["ops"]]})  # trace.py: guards instead
    except ValidationError as e:  # sizes each valid alone whose products are not (2**53)
        x = e.errors()[0]
        at = x["loc"][1] if len(x["loc"]) > 1 and isinstance(x["loc"][1], int) else None
        kernel = data["ops"][at]["name"] if at is not None else "a kernel"
        raise SpecError(f"workload {wl.name!r}: transformer {spec.name!r} expands to kernel "
                        f"{kernel!r}, which is invalid: {x['msg'].removeprefix('Value error, ')}; "
                        f"the model's sizes (batch, seq, d_model, d_ff, heads, head_dim, vocab) "
                        f"are too large together: use realistic values.") from None
    out._expansion = Expansion(
        spec=spec, plan=plan, source=wl, names=[d["name"] for d, _ in items],
        roles={d["name"]: r for d, r in items}, groups={d["name"]: group_of(d["name"])
                                                      for d, _ in items})
    return out


def with_slice(wl: Workload, slice_shape: str, source: str | None = None) -> Workload:
    """The workload with its slice replaced (the CLI's --slice), validated again."""
    src = source_workload(wl)  # a transformer is expanded again from the workload as written
    if not src.mesh and not any(isinstance(op, (CollectiveOp, TransformerOp)) for op in src.ops):
        raise SpecError(f"--slice {slice_shape!r}: workload {source or wl.name!r} has no mesh "
                        f"and no collective or transformer op, so the slice would change "
                        f"nothing; drop --slice, or add a mesh and collectives to the workload.")
    try:
        return expand_workload(Workload.model_validate({**src.model_dump(), "slice": slice_shape}))
    except (ValidationError, SpecError) as e:
        msgs = (str(e) if isinstance(e, SpecError) else
                "; ".join(f"{field_path(x['loc'])}: {x['msg'].removeprefix('Value error, ')}"
                          for x in e.errors()[:3]))
        raise SpecError(f"--slice {slice_shape!r} does not fit workload {wl.name!r}: {msgs}. "
                        f"The mesh stays the workload's: choose a slice with the same number "
                        f"of chips whose axes line up with it.") from None
