"""A transformer step evaluated over arrays of batch sizes: one expansion per structure.

``results.to_json`` expands a transformer op into its ledger, validates every op and evaluates
them one by one: about half a millisecond per configuration. A search over thousands of configurations
changes only numbers between many of them: the sequences per step (``batch``), the pipeline
``microbatches`` and ``grad_accum``. Everything else (the mesh and the strategies on it, remat,
attention, mode, the chip) fixes the *structure*: which ledger rows exist and which collective
groups they run over. So the op is expanded once per structure with a Plan whose batch fields
are numpy arrays (``transformer.expand_op`` and ``memory_parts`` accept them), each ledger row
is validated once at a representative configuration, its array-valued fields (rows of the
projections, attention sequences, elementwise sizes, collective bytes, repeats) replace the
representative's input cells, and ``engine.op_columns`` evaluates the same formulas as a single
evaluation, on arrays. The step figures are ``summary.derive_step``'s own formulas evaluated on
those arrays, so each configuration agrees with ``to_json`` of the equivalent workload
(tests/test_plan.py checks it to 1e-12).
"""

from __future__ import annotations

import numpy as np

from ..calibrated import matmul_group
from ..engine import op_columns, price_columns
from ..formula import Labels
from ..ops import REGISTRY, OpContext
from ..specs import OP_SPECS, Hardware, TransformerOp, Workload
from .summary import basis_of, derive_step, matmul_peak, step_inputs
from .transformer import array_plan, expand_op, first_row, group_of, make_plan, row_inputs

# the row columns the step figures need (and, on a calibrated chip, t_calibrated)
STEP_COLUMNS = ("t_lower", "t_upper", "t_calibrated", "bound", "flops", "t_comm")


class Structure:
    """One structure of a transformer workload, ready to evaluate over batch arrays.

    ``wl`` is a validated workload at a representative configuration (its transformer op
    unexpanded: slice, mesh, the op with its parallelism, remat, ...); the representative's
    ledger rows are validated and their input cells built once here."""

    def __init__(self, hw: Hardware, wl: Workload):
        self.hw, self.wl = hw, wl
        (self.spec,) = [op for op in wl.ops if isinstance(op, TransformerOp)]
        self.plan = make_plan(self.spec, wl.mesh)
        self.peak = matmul_peak(hw, self.spec)
        self.rows = None  # (op spec, input cells, ledger group) per row, from the first prepare

    def prepare(self, batch, microbatches, grad_accum) -> "_Prepared":
        """The array plan and every ledger row's input cells for these configurations."""
        batch = np.asarray(batch, dtype=np.int64)
        n = batch.shape[0]
        # microbatches and grad_accum the same for every configuration stay numbers: the
        # repeats of the rows are then numbers too, and fewer columns are arrays
        micro, accum = _one_or_array(microbatches, n), _one_or_array(grad_accum, n)
        plan = array_plan(self.spec, self.wl.mesh, batch, micro, accum)
        items = expand_op(self.spec, plan)
        if self.rows is None:
            # the rows validated at the first configuration (one expansion serves both)
            ctx = OpContext(self.wl, self.hw)
            self.rows = []
            for d, _role in items:
                op = _validated(first_row(d))
                self.rows.append((op, REGISTRY[op.kind].inputs(op, ctx), group_of(d["name"])))
        elif [d["name"] for d, _ in items] != [op.name for op, _, _ in self.rows]:
            raise AssertionError("the array expansion's ledger differs from the structure's")
        cells = [row_inputs(op.kind, cell, d) for (d, _), (op, cell, _) in zip(items, self.rows)]
        return _Prepared(self, n, batch, plan, cells)

    def signature(self) -> tuple:
        """Structures with equal signatures have the same ledger rows, formulas and input
        cells (only the numbers differ): they are evaluated together."""
        return tuple((op.name, op.kind, g, tuple(sorted(k for k in c if k != "repeat")),
                      _shape_of(op)) for op, c, g in self.rows)

    def evaluate(self, batch, microbatches, grad_accum, rows: list | None = None,
                 row_columns: tuple | None = None) -> dict:
        """Step figures per configuration (numpy arrays), as summary.step_summary defines them.
        ``rows``: a list that receives (op name, cost and roofline columns) per ledger row
        (``row_columns``: only these; the rest are freed as the next rows are computed, so
        their memory is reused instead of fresh pages touched)."""
        parts = prepare_all(self.hw, self.wl, batch, microbatches, grad_accum)
        if len(parts) == 1:
            return evaluate_many([parts[0][1]], rows, row_columns)[0]
        if rows is not None:
            raise ValueError("per-row columns need one calibration group per matmul row")
        return _merge([(idx, res) for (idx, _), res in
                       zip(parts, evaluate_many([p for _, p in parts]))],
                      int(np.asarray(batch).shape[0]))


def prepare_all(hw: Hardware, wl: Workload, batch, microbatches, grad_accum) -> list:
    """[(configuration indices, prepared structure)]: one part, or on a calibrated chip one
    part per combination of fitted kernel groups of the matmul rows (a product of one row is a
    matrix-vector kernel with its own fitted group: calibrated.matmul_group)."""
    batch = np.asarray(batch, dtype=np.int64)
    n = batch.shape[0]
    micro = np.broadcast_to(np.asarray(microbatches, dtype=np.int64), (n,))
    accum = np.broadcast_to(np.asarray(grad_accum, dtype=np.int64), (n,))
    first = Structure(hw, wl)
    if hw.calibration is None:
        return [(np.arange(n), first.prepare(batch, micro, accum))]
    plan = array_plan(first.spec, wl.mesh, batch, micro, accum)
    keys = []
    for d, _ in expand_op(first.spec, plan):
        if d["kind"] == "matmul":
            m = np.broadcast_to(np.asarray(d["m"]), (n,))
            keys.append(np.array([matmul_group(int(x), int(d["n"])) == "gemv" for x in m]))
    if not keys:
        return [(np.arange(n), first.prepare(batch, micro, accum))]
    _, part = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    part = part.ravel()
    out = []
    for k in range(int(part.max()) + 1):
        idx = np.flatnonzero(part == k)
        st = first if k == 0 else Structure(hw, wl)
        out.append((idx, st.prepare(batch[idx], micro[idx], accum[idx])))
    return out


def _one_or_array(x, n: int):
    """``x`` (a number or n values) as one int when every configuration has the same."""
    a = np.broadcast_to(np.asarray(x, dtype=np.int64), (n,))
    return int(a[0]) if n and (a == a[0]).all() else a


def _merge(parts: list, n: int) -> dict:
    """One result dict from the parts' results, in the configurations' order."""
    out: dict = {}
    for idx, res in parts:
        for k, v in res.items():
            if isinstance(v, np.ndarray):
                if k not in out:
                    out[k] = np.empty(n, dtype=v.dtype)
                out[k][idx] = v
            else:
                out.setdefault(k, v)
    return out


_OPS: dict = {}
def _validated(d: dict):
    """The op spec of a ledger row, validated once per distinct row (a search meets the same
    rows in many structures; specs are frozen, so sharing them is safe)."""
    key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items())
    op = _OPS.get(key)
    if op is None:
        if len(_OPS) > 200_000:
            _OPS.clear()
        op = _OPS[key] = OP_SPECS[d["kind"]].model_validate(d)
    return op


def _shape_of(op) -> tuple:
    """The fields of an op that choose its formulas (not its numbers)."""
    d = op.__dict__  # a pydantic model's fields (faster than getattr on thousands of rows)
    # a calibrated chip prices a one-row product with the gemv group (calibrated.column)
    gemv = matmul_group(d["m"], d["n"]) if op.kind == "matmul" else None
    return (gemv,) + tuple(d.get(f) for f in (
        "impl", "backward", "collective", "dtype", "weight_dtype", "compute_dtype",
        "out_dtype", "kv_dtype", "precision", "causal", "in_step"))


class _Prepared:
    def __init__(self, st: Structure, n, batch, plan, cells):
        self.st, self.n, self.batch, self.plan, self.cells = st, n, batch, plan, cells


def evaluate_many(members: list, rows: list | None = None,
                  row_columns: tuple | None = None) -> list[dict]:
    """Evaluate prepared structures; those with one signature (and chip) share each op_columns
    call on their concatenated arrays. Returns one result dict per member, in order."""
    out: list = [None] * len(members)
    by_sig: dict = {}
    for i, m in enumerate(members):
        by_sig.setdefault((id(m.st.hw), m.st.signature()), []).append(i)
    for idx in by_sig.values():
        group = [members[i] for i in idx]
        for i, res in zip(idx, _evaluate_stacked(group, rows if len(members) == 1 else None,
                                                 row_columns)):
            out[i] = res
    return out


def _evaluate_stacked(group: list, rows: list | None, row_columns: tuple | None = None
                      ) -> list[dict]:
    first = group[0].st
    hw = first.hw
    sizes = [m.n for m in group]
    n = sum(sizes)
    # the ledger ranges of summary.ledger, each row's value an array over the configurations
    led: dict[str, list] = {k: [] for k in ("row_group", "row_kind", "row_bound", "row_t_lower",
                                            "row_t_upper", "row_t_calibrated", "row_t_comm",
                                            "row_flops")}
    calibrated = False
    needed = STEP_COLUMNS + (row_columns or ())
    for r, (op, _cell, gname) in enumerate(first.rows):
        keys = dict.fromkeys(k for m in group for k in m.cells[r])
        # a repeat of 1 is no input cell (ops.common_inputs): 1 where a member has none
        cell = {k: _stack([m.cells[r].get(k, 1.0) if k == "repeat" else m.cells[r][k]
                           for m in group], sizes) for k in keys}
        _, cost, roof = op_columns(op, hw, first.wl, inputs=cell,
                                   columns=needed if rows is None or row_columns is not None
                                   else None)
        if rows is not None:
            cols = {**cost, **roof}
            rows.append((op.name, cols if row_columns is None
                         else {c: cols[c] for c in row_columns}))
        t, cal = roof["t_lower"], roof.get("t_calibrated")
        calibrated |= cal is not None
        for k, v in (("row_group", gname), ("row_kind", op.kind), ("row_bound", roof["bound"]),
                     ("row_t_lower", t), ("row_t_upper", roof["t_upper"]),
                     ("row_t_calibrated", t if cal is None else cal),
                     ("row_t_comm", cost.get("t_comm", 0.0)), ("row_flops", cost["flops"])):
            led[k].append(v)
    # the step's cells: summary.derive_step's formulas, on arrays (one definition of the step)
    per_member = [step_inputs(hw, m.st.spec, m.plan, m.batch) for m in group]
    inputs = {k: _stack([p[k] for p in per_member], sizes) for k in per_member[0]
              if k != "memory_parts"}
    inputs["memory_parts"] = {k: _stack([p["memory_parts"][k] for p in per_member], sizes)
                              for k in per_member[0]["memory_parts"]}
    spec = first.spec
    basis = basis_of(spec, calibrated)
    groups = list(dict.fromkeys(led["row_group"]))
    per_group, step = derive_step(groups, led, inputs, spec.mode,
                                  max(m.plan.pp for m in group), basis, calibrated, arrays=True)
    seen = np.zeros(n, dtype=np.int64)  # bit 1 comm, 2 compute, 4 memory: groups' bounds
    bounds = bound_labels([g["bound"] for g in per_group.values()], n)
    executed = sum(np.broadcast_to(f, (n,)) for f in led["row_flops"])

    def full(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,))
    results, a = [], 0
    for m in group:
        sl = slice(a, a + m.n)
        a += m.n
        res = {k: full(step[k])[sl] for k in ("t_lower", "t_upper", "t_step", "t_comm",
                                              "tokens_per_s", "mfu", "hfu",
                                              "memory_bytes_per_chip")}
        if calibrated:
            res["t_calibrated"] = full(step["t_calibrated"])[sl]
        res["fits_memory"] = np.broadcast_to(np.asarray(step["fits_memory"], dtype=bool), (n,))[sl]
        res.update(bounds=bounds[sl], tokens_per_step=full(inputs["tokens_per_step"])[sl],
                   flops=executed[sl], chips=m.plan.chips)
        res.update(price_columns(hw.price_per_hour, res))
        res["t_step_basis"] = basis
        results.append(res)
    return results


def _stack(values: list, sizes: list):
    """One array of the members' values (numbers or arrays), each broadcast to its size."""
    if len(values) == 1:
        return values[0]
    out = np.empty(sum(sizes))
    a = 0
    for v, k in zip(values, sizes):
        out[a:a + k] = v
        a += k
    return out


BOUND_BITS = {"comm": 1, "compute": 2, "memory": 4}


def bound_labels(bounds: list, n: int) -> np.ndarray:
    """Per configuration, the sorted set of the groups' bounds ('comm/compute'); each group's
    bound is one label or Labels (formula's where between labels on arrays)."""
    seen = np.zeros(n, dtype=np.int64)  # a bit per bound met
    for b in bounds:
        seen |= (np.array([BOUND_BITS[x] for x in b.names])[b.codes] if isinstance(b, Labels)
                 else BOUND_BITS[b])
    return _bound_names(seen)


def _bound_names(bits: np.ndarray) -> np.ndarray:
    """'comm/compute/memory'-style labels (sorted, as the sweep's totals write them)."""
    names = {b: "/".join(sorted(k for k, bit in BOUND_BITS.items() if b & bit))
             for b in range(1, 8)}
    return np.array([names[b] for b in range(8) if b] , dtype=object)[bits - 1] if bits.size \
        else np.array([], dtype=object)
