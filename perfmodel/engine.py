"""Evaluate workloads on hardware: op inputs -> cost columns -> roofline columns.

The numeric path and the workbook's formulas share one definition: ``op_columns`` with numbers
gives values; with ``symbolic=True`` it gives expression trees whose Refs name op input cells,
hardware parameters and earlier columns of the same row.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import typing

import numpy as np
import pandas as pd

from . import calibrated, gcpause, precision
from .formula import NS, BinOp, Call, Cmp, Ref, compile_py, json_value, symbols
from .formula import evaluate as evaluate_expr
from .model import expand_workload
from .ops import REGISTRY, OpContext
from .roofline import COLUMNS, derive
from .specs import DTYPE_BYTES, PEAK_KEYS, Hardware, Workload, bare_type
from .trace import active as tracing
from .trace import run

TOTAL_FIELDS = ["flops", "flops_exec", "hbm_bytes", "t_compute", "t_memory", "t_lower", "t_upper",
                "t_calibrated"]

# Cost columns that add up over identical instances. An op with ``repeat: r`` (OpBase) is r
# identical instances run one after another (a transformer's layers), so these are multiplied
# by r; the roofline columns derived from them (t_compute, t_memory, t_lower, t_upper,
# t_calibrated) follow, and intensive columns (hops, q_block, onchip_bytes, algbw, intensity,
# mfu) stay per instance. A row is then a ledger entry: its FLOPs, bytes and times are totals.
REPEATED_COLUMNS = ("flops", "flops_exec", "flops_vector", "flops_transcendental", "hbm_bytes", "comm_bytes",
                    "t_latency", "t_bandwidth", "t_comm", "t_link", "t_scale_out", "t_dcn")


# 2: total.mfu is PaLM's model-FLOP utilisation (the old count is total.flops_ledger), total.hfu;
# rows gain peak_used, precision, compute_dtype, runs_as; collectives t_link/t_scale_out/t_dcn
SCHEMA_VERSION = 2


PER_CHIP: dict[tuple, tuple] = {}


def per_chip(hw: Hardware, key: tuple, build: typing.Callable):
    """``build()`` once per chip spec object and ``key`` (specs are frozen, and every op of
    every configuration asks): the spec is kept beside its value, so a reused id() never
    returns another chip's."""
    k = (id(hw), key)
    hit = PER_CHIP.get(k)
    if hit is not None and hit[0] is hw:
        return hit[1]
    if len(PER_CHIP) > 8192:
        PER_CHIP.clear()
    value = build()
    PER_CHIP[k] = (hw, value)
    return value


def hw_env(hw: Hardware) -> dict[str, float]:
    """The hardware's numeric parameters under the names formulas use."""
    return per_chip(hw, ("env",), lambda: _hw_env(hw))


def _hw_env(hw: Hardware) -> dict[str, float]:
    env = {f"peak_flops_{d}": v for d, v in hw.peak_flops.items()}
    env.update({f"vector_flops_{d}": v for d, v in (hw.vector_flops or {}).items()})
    env.update({f"transcendental_flops_{d}": v
                for d, v in (hw.transcendental_flops or {}).items()})
    t = hw.matmul_tile
    env.update(hbm_bandwidth=hw.hbm_bandwidth, hbm_capacity=hw.hbm_capacity,
               onchip_memory=hw.onchip_memory,
               matmul_tile_m=float(t.m if t else 1), matmul_tile_k=float(t.k if t else 1),
               matmul_tile_n=float(t.n if t else 1),
               flash_block_q=float(hw.flash_block_q or 0))  # 0: fit the block to onchip_memory
    # interconnect (collectives): the same keys on every chip, 0 where a chip has none (a
    # collective that would need a missing one is refused by topology.py, never divided by 0)
    ic = hw.interconnect
    env.update({k: float(getattr(ic, k) or 0.0) for k in INTERCONNECT_PARAMS})
    env.update(calibrated.env(hw))
    # the rate each (unit, dtype, precision) runs at on this chip (perfmodel.precision)
    env.update({k: float(evaluate_expr(e, env)) for k, e in precision.rate_exprs(hw).items()})
    return env


# link_bandwidth: one-way per link; hop_latency: per hop / ring step; scale_out_bandwidth: per
# GPU NIC; dcn_bandwidth: per chip between slices
INTERCONNECT_PARAMS = ["link_bandwidth", "hop_latency", "scale_out_bandwidth", "dcn_bandwidth",
                       "links_per_chip"]

HW_PARAMS = (["hbm_bandwidth", "hbm_capacity", "onchip_memory", "matmul_tile_m",
              "matmul_tile_k", "matmul_tile_n", "flash_block_q"]
             + [f"peak_flops_{d}" for d in PEAK_KEYS] + [f"vector_flops_{d}" for d in DTYPE_BYTES]
             + [f"transcendental_flops_{d}" for d in DTYPE_BYTES] + INTERCONNECT_PARAMS
             + precision.RATE_NAMES)


def rate_env(op, h: NS) -> dict:
    """``peak`` (the rate of the op's main unit) and ``vector_peak`` (the vector unit's, for
    the softmax inside attention): the chip's derived rate parameters (perfmodel.precision)."""
    d = precision.compute_dtype(op)
    return {"peak": h[precision.rate_name(op)], "vector_peak": h[precision.vector_name(d)],
            "transcendental_peak": h[precision.transcendental_name(d)]}


def _hw_ns(hw: Hardware) -> NS:
    """hw_env as numpy scalars (what the interpreted formulas read)."""
    return per_chip(hw, ("ns",), lambda: NS({k: np.float64(v) for k, v in hw_env(hw).items()}))


def op_cost(op, hw: Hardware, wl: Workload | None = None, *, inputs: dict | None = None):
    """(inputs, cost, hardware symbols) of one op, numeric, without the roofline columns (for
    callers that need only FLOPs or bytes)."""
    model = REGISTRY[op.kind]
    values = inputs if inputs is not None else model.inputs(op, OpContext(wl, hw))
    p = NS({k: np.float64(v) if np.isscalar(v) else v for k, v in values.items()})
    h = _hw_ns(hw)
    cost = model.cost(p, h, op)
    if "repeat" in values:  # ops.common_inputs: a cell only when not 1
        cost = _repeated(cost, p.repeat, False)
    return p, cost, h


def op_columns(op, hw: Hardware, wl: Workload | None = None, *, symbolic: bool = False,
               inputs: dict | None = None, columns: tuple | None = None):
    """(inputs, cost, roofline) for one op. Numbers, or expression trees when symbolic.
    ``columns``: only these are needed (numbers: what they do not depend on is skipped)."""
    model = REGISTRY[op.kind]
    values = inputs if inputs is not None else model.inputs(op, OpContext(wl, hw))
    cal = calibrated.column(hw, op)
    if not symbolic and cal is None:  # the formulas compiled once per structure
        arrays = any(isinstance(v, np.ndarray) for v in values.values())
        f, cost_keys, roof_keys = _compiled(op, hw, values, arrays=arrays, columns=columns)
        out = run(f, values)
        return (values, {k: out[k] for k in cost_keys if k in out},
                {k: out[k] for k in roof_keys if k in out})
    return _interpreted_columns(op, hw, wl, values, cal, symbolic)


def _interpreted_columns(op, hw: Hardware, wl, values: dict, cal, symbolic: bool):
    """op_columns by walking the formulas: symbolic (the workbook's trees), or with numbers on
    a calibrated chip (whose fitted column is a Python function of the op) and as the
    reference the compiled path is tested against."""
    model = REGISTRY[op.kind]
    if symbolic:
        p, h = symbols(values), symbols(hw_env(hw))
        cost = model.cost(p, h, op)
        if "repeat" in values:
            cost = _repeated(cost, p.repeat, True)
    else:
        p, cost, h = op_cost(op, hw, wl, inputs=values)
    rep_ = p.repeat if "repeat" in values else None  # ops.common_inputs: a cell only when not 1
    env = NS({**h, **p, **rate_env(op, h), **(symbols(cost) if symbolic else cost)})
    columns = COLUMNS
    if cal is not None:  # the fitted model of this kind of kernel, beside the roofline bounds
        columns = COLUMNS + [("t_calibrated", lambda e: _per_instance(e, rep_, cal))]
    roof = derive(env, columns, Ref if symbolic else None)
    return values, cost, roof


def _compiled(op, hw: Hardware, values: dict, key: tuple | None = None,
              arrays: bool = False, columns: tuple | None = None) -> tuple:
    """(function of the input cells -> cost and roofline columns, cost keys, roofline keys) for
    ops of this formula structure on this chip: the symbolic formulas compiled to Python once
    (formula.compile_py), so one op costs a function call (``arrays``: numpy code, for input
    cells that are arrays). Numbers as the interpreted path's."""
    return per_chip(hw, ("op", arrays, columns, key or _structure(op, values)),
                     lambda: _compile_op(op, hw, values, arrays, columns))


def _compile_op(op, hw: Hardware, values: dict, arrays: bool, columns: tuple | None) -> tuple:
    model = REGISTRY[op.kind]
    p, h = symbols(values), symbols(hw_env(hw))
    cost = model.cost(p, h, op)  # one instance; earlier columns enter as Refs
    steps = list(cost.items())
    if "repeat" in values:  # then the instances' totals, as _repeated multiplies numbers
        steps += [(k, Ref(k) * p.repeat) for k in cost if k in REPEATED_COLUMNS]
    env = NS({**h, **p, **rate_env(op, h), **symbols(cost)})
    roof = derive(env, COLUMNS, Ref)
    steps += list(roof.items())
    f = compile_py(steps, hw_env(hw), [(k, k) for k in [*cost, *roof]
                                       if columns is None or k in columns],
                   floats=not arrays, arrays=arrays)
    return f, tuple(cost), tuple(roof)


def _repeated(cost: dict, rep, symbolic: bool) -> dict:
    """Multiply the REPEATED_COLUMNS of one instance's cost by ``rep``.

    Numbers: each value is one instance's, so multiply. Formulas: a column may refer to an
    earlier column's cell (a collective's t_comm = MAX(t_latency, t_bandwidth)), and that cell
    now holds the total over the instances; such a reference is divided back to one instance
    (t_comm = MAX(t_latency/repeat, t_bandwidth/repeat)*repeat), so both paths agree.
    """
    if not symbolic:
        return {k: v * rep if k in REPEATED_COLUMNS else v for k, v in cost.items()}
    per_one = {k: Ref(k) / rep for k in cost if k in REPEATED_COLUMNS}
    return {k: (_subst(e, per_one) * rep if k in REPEATED_COLUMNS and not _is_zero(e)
                else _subst(e, per_one))
            for k, e in cost.items()}


def _is_zero(e) -> bool:
    return isinstance(e, (int, float)) and not isinstance(e, bool) and e == 0


def _per_instance(env, rep, f):
    """``f`` (a time formula) of one instance, times ``rep``: a per-kernel overhead or a cache
    threshold applies to each instance, not to their sum."""
    if rep is None:
        return f(env)
    one = NS({**env, **{k: env[k] / rep for k in REPEATED_COLUMNS if k in env}})
    return f(one) * rep


def _subst(e, names: dict):
    """``e`` with the Refs named in ``names`` replaced by their expressions."""
    if isinstance(e, Ref):
        return names.get(e.name, e)
    if isinstance(e, BinOp):
        return BinOp(e.op, _subst(e.a, names), _subst(e.b, names))
    if isinstance(e, Cmp):
        return Cmp(e.op, _subst(e.a, names), _subst(e.b, names))
    if isinstance(e, Call):
        return Call(e.fn, tuple(_subst(a, names) for a in e.args))
    return e  # a constant or a number


def _clean(v):
    """numpy scalars and floats as JSON values (formula.json_value); anything else as is."""
    return json_value(v) if isinstance(v, (float, np.generic)) else v


def evaluate_op(op, hw: Hardware, wl: Workload | None = None) -> dict:
    _, cost, roof = op_columns(op, hw, wl)
    return _row(op, hw, wl, cost, roof)


def _runs(hw, op) -> dict:
    """How an op runs (the same for every op of one formula structure on one chip)."""
    return {"compute_dtype": precision.compute_dtype(op),
            "precision": getattr(op, "precision", None),
            "runs_as": precision.rate(hw, op).runs_as}


def _row(op, hw, wl, cost: dict, roof: dict, ctx: OpContext | None = None,
         columns: dict | None = None, runs: dict | None = None) -> dict:
    """An op's row: its fields, how it runs, descriptive info and the cost and roofline
    columns (``columns``: already JSON-ready values, from a batch; ``runs``: _runs's, when the
    caller has it for the op's structure)."""
    row = {"name": op.name, "kind": op.kind, "dtype": op.dtype, "repeat": op.repeat,
           **(runs or _runs(hw, op))}
    info = REGISTRY[op.kind].info
    if info is not None:  # descriptive fields (a collective's wraparound flags per axis)
        row.update(info(op, ctx or OpContext(wl, hw)))
    row.update(columns if columns is not None
               else {k: _clean(v) for k, v in {**cost, **roof}.items()})
    if "t_link" in row:  # a collective's per-level bandwidth times (ops/collectives.py)
        row["t_levels"] = {lv: row[f"t_{lv}"] for lv in ("link", "scale_out", "dcn")}
    return row


# ops sharing a formula structure are evaluated together as numpy arrays (as a sweep is) once
# there are this many of them; fewer are evaluated one by one
BATCH_MIN = 8


def evaluate_rows(hw: Hardware, wl: Workload) -> list[dict]:
    """One row per op (``evaluate_op``'s). Ops of one formula structure (kind, dtype, the
    structural fields such as impl, precision or collective, the same input cells) are
    evaluated in one vectorised pass: a workload of 100,000 ops costs a few numpy calls per
    structure, not 100,000 passes through the formulas. The numbers are ``evaluate_op``'s."""
    wl = expand_workload(wl)  # a transformer op becomes its kernels (no-op otherwise)
    with gcpause.paused():  # thousands of row dicts, none of them garbage
        return _evaluate_rows(hw, wl)


def _evaluate_rows(hw: Hardware, wl: Workload) -> list[dict]:
    if hw.calibration is not None:  # the calibrated column picks a group from each op's sizes
        return [evaluate_op(op, hw, wl) for op in wl.ops]
    ctx = OpContext(wl, hw)
    groups: dict[tuple, list] = {}
    for i, op in enumerate(wl.ops):
        values = REGISTRY[op.kind].inputs(op, ctx)
        groups.setdefault(_structure(op, values), []).append((i, op, values))
    rows: list = [None] * len(wl.ops)
    for key, members in groups.items():
        if len(members) < BATCH_MIN or tracing():  # one by one, through the compiled formulas
            f = _compiled(members[0][1], hw, members[0][2], key)[0]
            runs = _runs(hw, members[0][1])
            for i, op, values in members:
                rows[i] = _row(op, hw, wl, None, None, ctx=ctx, runs=runs,
                               columns={k: None if v.__class__ is float and v - v != 0.0 else v
                                        for k, v in run(f, values).items()})  # non-finite: None
            continue
        stacked = {k: np.array([v[k] for _, _, v in members], dtype=float) for k in members[0][2]}
        _, cost, roof = op_columns(members[0][1], hw, wl, inputs=stacked)
        n = len(members)
        cols = {k: _column(v, n) for k, v in {**cost, **roof}.items()}
        for j, (i, op, _) in enumerate(members):
            rows[i] = _row(op, hw, wl, None, None, ctx=ctx,
                           columns={k: c[j] for k, c in cols.items()})
    return rows


def _structure(op, values: dict) -> tuple:
    """What makes two ops share one formula: every field but the name and the numbers that
    became input cells (whether an optional number is unset counts: kv_seq unset is another
    formula), and the set of input cells (``repeat`` is a cell only when not 1)."""
    get_structural, lists, get_optional = _getters(type(op))
    fields = get_structural(op)
    if lists:
        fields = list(fields)
        for i in lists:
            fields[i] = tuple(fields[i])
        fields = tuple(fields)
    return (type(op), fields, tuple(map(operator.is_, get_optional(op), _NONES)),
            tuple(values))


_NONES = itertools.repeat(None)


@functools.lru_cache(maxsize=None)
def _getters(cls):
    """(structural fields getter, indices of its list-valued fields, optional numbers getter):
    each a tuple-returning C call (a structure key is taken for every op evaluated)."""
    structural, optional = _field_roles(cls)

    def getter(names):
        if len(names) > 1:
            return operator.attrgetter(*names)
        return (lambda op: (getattr(op, names[0]),)) if names else (lambda op: ())
    lists = tuple(i for i, f in enumerate(structural)
                  if typing.get_origin(bare_type(cls.model_fields[f].annotation)[0]) is list)
    return getter(structural), lists, getter(optional)


@functools.lru_cache(maxsize=None)
def _field_roles(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(structural fields, optional numeric fields) of an op class, from its annotations."""
    structural, optional = [], []
    for f, info in cls.model_fields.items():
        if f == "name":
            continue
        tp, is_optional = bare_type(info.annotation)
        if typing.get_origin(tp) is list:
            tp = bare_type(typing.get_args(tp)[0])[0]
        if tp in (int, float):
            if is_optional:
                optional.append(f)
        else:
            structural.append(f)
    return tuple(structural), tuple(optional)


def _column(v, n: int) -> list:
    """One cost/roofline column of a batch as n JSON-ready values (``_clean``'s)."""
    if np.ndim(v) == 0:
        return [_clean(v)] * n
    out = np.broadcast_to(v, (n,)).tolist()  # Python floats, bools, strs
    if isinstance(out[0], float):
        return [x if math.isfinite(x) else None for x in out]
    return out



def evaluate(hw: Hardware, wl: Workload) -> pd.DataFrame:
    """One row per op with every cost and roofline column (NaN where a kind lacks one)."""
    return pd.DataFrame(evaluate_rows(hw, wl))


def totals(rows: list[dict]) -> dict:
    # a column an op lacks is skipped; a non-finite value (None in a row) makes the total null
    # t_calibrated only when every op is calibrated: a partial sum would mislead
    return {k: _clean(sum(math.nan if r[k] is None else r[k] for r in rows if k in r))
            for k in TOTAL_FIELDS if k != "t_calibrated" or all(k in r for r in rows)}


def price_columns(price_per_hour, total: dict) -> dict:
    """$ per step (all chips), $ per million tokens (whole models) and FLOP per $ from a chip's
    price_per_hour; empty when the spec has no price. Works on scalars or numpy arrays."""
    if price_per_hour is None:
        return {}
    t = total.get("t_step", total.get("t_lower"))
    chips = total.get("chips", 1)
    if t is None:
        return {}
    usd = price_per_hour / 3600.0 * chips * t
    out = {"usd_per_step": usd, "flop_per_usd": total["flops"] * chips / usd}
    tokens = total.get("tokens_per_step")
    if tokens is not None and (np.all(tokens) if isinstance(tokens, np.ndarray) else tokens != 0):
        out["usd_per_mtok"] = usd / total["tokens_per_step"] * 1e6
    return out
