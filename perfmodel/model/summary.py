"""The step summary of a transformer workload: what ``total`` holds besides the row sums.

Rows are per chip (every chip runs the same ledger); ``flops``, ``hbm_bytes``, ``t_compute``,
``t_memory``, ``t_comm`` and ``t_upper`` of the total are sums over them. The step's times:

- ``t_lower`` overlaps communication with compute within each ledger group (the first path
  segment: embed, layer, lm_head, pipeline, optimizer): per group max(sum of its compute ops'
  t_lower, sum of its collectives' t_lower), summed over the groups. Compute and memory overlap
  within each op (its t_lower), ops follow one another, a layer's collectives run beside its
  kernels (the DP all-reduce and FSDP gathers are in the layer group, so they hide behind it).
- ``t_upper``: nothing overlapped, the sum of the rows' t_upper.
- A pipeline of p stages and m microbatches idles (p-1)/(m+p-1) of the time (the bubble):
  every group but the optimizer is stretched by (m+p-1)/m.
- ``t_calibrated`` (when the chip's spec has a calibration, rows carry t_calibrated): the same
  rule with each row's t_calibrated (its t_lower where a row has none).

Headline figures use ``t_step``: t_calibrated when present, else t_lower when the op says
``overlap: true``, else t_upper. ``tokens_per_s`` = tokens per step / t_step (decode: one token
per sequence).

Utilisation, by convention (PaLM, Chowdhery et al. 2022, appendix B):
- ``flops_model`` = tokens x (6P + 12 L N H T) in training, tokens x (2P + 4 L N H T) in
  inference (the forward third), P the parameters a token's FLOPs go through (params_6pt), L
  layers, N heads, H head_dim, T the sequence (decode: the KV length). It does not depend on the
  attention kernel or on causal masking, so MFU compares implementations fairly.
- ``mfu`` = flops_model / (chips x t_step x peak); ``hfu`` = every FLOP the chips execute
  (the rows' unpadded ``flops``: remat, flash recompute, optimizer, masked-out scores a naive
  kernel computes) / (t_step x peak) per chip. ``peak`` is the layer matmuls' ``peak_used``
  (their dtype, compute_dtype and precision: perfmodel.precision).
- ``flops_ledger`` is the ledger's own count of the forward and backward of the whole job
  without sharding, remat or optimizer (what ``mfu`` used before schema 2); ``flops_6pt``
  (train) or ``flops_2pt`` (inference) is the textbook count beside it. Memory per chip sums params, grads, optimizer state, activations and KV cache
(transformer.memory_parts) and is checked against the chip's HBM capacity.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import precision
from ..engine import hw_env, op_columns
from ..formula import NS, Ref, compile_py, fmax, json_value, rsum, sumif, where
from ..ops import REGISTRY
from ..specs import Hardware, TransformerOp, Workload, op_spec
from ..trace import as_float, maximum, run
from . import expansion
from .transformer import (Plan, expand_op, group_of, make_plan,
                          memory_parts, param_ledger, params_6pt, params_active,
                          single_chip_plan)

MODEL_ROLES = ("fwd", "bwd")  # the roles whose FLOPs count as model FLOPs (not remat, optimizer)
MAX_DECODE_BATCH = 1 << 24     # search limit for the compute-bound decode batch
UNSTRETCHED = ("optimizer",)   # groups that run once per step, outside the pipeline

# The step as formula columns, like roofline.COLUMNS: evaluated here with numbers and rendered
# by the workbook's Model sheet. Three levels of cells:
# - the ledger, one row per op (ranges): row_group, row_kind, row_bound, row_t_lower,
#   row_t_upper, row_t_calibrated (the op's t_lower where it has none), row_t_comm (0: none);
# - per group (GROUP_COLUMNS of its name), over the ledger ranges and the step's stretch;
# - the step (step_columns), over the group ranges (group_t_lower, ...) and the STEP_INPUTS.
STEP_INPUTS = ("chips", "pp", "microbatches", "tokens_per_step", "params", "flops_model", "peak",
               "hbm_capacity", "memory_parts")  # peak: the layer matmuls' rate (matmul_peak)
COLLECTIVE = "collective"


def group_columns(name: str, calibrated: bool) -> list[tuple[str, Callable]]:
    """A ledger group's cells: its collectives run beside its kernels (group_time); a pipeline's
    bubble stretches every group but the optimizer."""
    def kernels(e, t="row_t_lower"):
        return sumif(e[t], (e.row_group, name), (e.row_kind, "<>", COLLECTIVE))

    def collectives(e, t="row_t_lower"):
        return sumif(e[t], (e.row_group, name), (e.row_kind, COLLECTIVE))

    def stretch(e):
        return 1 if name in UNSTRETCHED else e.pipeline_stretch
    cols = [
        ("kernels", lambda e: kernels(e)),
        ("collectives", lambda e: collectives(e)),
        ("t_lower", lambda e: stretch(e) * group_time(e.kernels, e.collectives)),
        ("t_upper", lambda e: stretch(e) * sumif(e.row_t_upper, (e.row_group, name))),
        # the kernels' compute-bound share decides compute vs memory
        ("compute", lambda e: sumif(e.row_t_lower, (e.row_group, name), (e.row_kind, "<>", COLLECTIVE),
                                    (e.row_bound, "compute"))),
        ("bound", lambda e: where(e.collectives > e.kernels, "comm",
                                  where(e.compute >= e.kernels - e.compute, "compute", "memory"))),
    ]
    if calibrated:
        cols += [("cal_kernels", lambda e: kernels(e, "row_t_calibrated")),
                 ("cal_collectives", lambda e: collectives(e, "row_t_calibrated")),
                 ("t_calibrated", lambda e: stretch(e) * group_time(e.cal_kernels, e.cal_collectives))]
    return cols


def step_columns(mode: str, pp: int, basis: str, calibrated: bool) -> list[tuple[str, Callable]]:
    """The step's cells, in dependency order (``basis``: the headline time's column)."""
    cols = [
        ("pipeline_stretch", lambda e: pipeline_stretch(e.pp, e.microbatches)),
        ("t_lower", lambda e: rsum(e.group_t_lower)),
        ("t_upper", lambda e: rsum(e.group_t_upper)),
    ]
    if calibrated:
        cols.append(("t_calibrated", lambda e: rsum(e.group_t_calibrated)))
    cols += [
        ("t_step", lambda e: e[basis]),
        ("t_comm", lambda e: rsum(e.row_t_comm)),
        ("peak_used", lambda e: e.peak),
        # useful work: the model's FLOPs over what the chips could do in the step (PaLM's MFU)
        ("mfu", lambda e: e.flops_model / (e.chips * e.t_step * e.peak_used)),
        # every FLOP a chip executes (its ledger rows) over what it could do in the step
        ("hfu", lambda e: rsum(e.row_flops) / (e.t_step * e.peak_used)),
        ("tokens_per_s", lambda e: e.tokens_per_step / e.t_step),
        (f"flops_{6 if mode == 'train' else 2}pt",
         lambda e: (6 if mode == "train" else 2) * e.params * e.tokens_per_step),
        ("memory_bytes_per_chip", lambda e: rsum(e.memory_parts)),
        ("fits_memory", lambda e: e.memory_bytes_per_chip <= e.hbm_capacity),
    ]
    if pp > 1:
        cols.append(("pipeline_bubble", lambda e: bubble_fraction(e.pp, e.microbatches)))
    return cols


def ledger(rows: list[dict], x) -> dict[str, list]:
    """The ledger ranges of a workload's rows (a missing number is NaN, as an empty cell's)."""
    t = [_float(r["t_lower"]) for r in rows]
    return {
        "row_group": [x.groups.get(r["name"]) or group_of(r["name"]) for r in rows],
        "row_kind": [r["kind"] for r in rows],
        "row_bound": [r["bound"] for r in rows],
        "row_t_lower": t,
        "row_t_upper": [_float(r["t_upper"]) for r in rows],
        "row_t_calibrated": [tl if r.get("t_calibrated") is None else r["t_calibrated"]
                             for r, tl in zip(rows, t)],
        "row_t_comm": [r.get("t_comm") or 0.0 for r in rows],
        "row_flops": [r["flops"] or 0.0 for r in rows],
    }


def _float(v) -> float:
    return math.nan if v is None else as_float(v)


def _cell(v):
    """A number as a float64 cell holds it (int products would be exact, the sheet's are not)."""
    if isinstance(v, np.ndarray):
        return v.astype(float) if v.dtype.kind in "iub" else v
    if getattr(v, "traced", False):  # a traced number (perfmodel.trace): a float, still traced
        return as_float(v) if isinstance(v.value, (int, float)) and not isinstance(v.value, bool) \
            else v
    return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v


def step_inputs(hw: Hardware, spec, plan: Plan, batch=None) -> dict:
    """The step's input cells (numbers fixed when the ops were expanded); ``batch`` (an array
    of sequences per step, with a plan of array batch fields) replaces the spec's."""
    return {"chips": plan.chips, "pp": plan.pp, "microbatches": plan.microbatches,
            "tokens_per_step": tokens_per_step(spec, batch),
            "params": params_6pt(spec), "flops_model": palm_flops(spec, batch),
            "peak": matmul_peak(hw, spec), "hbm_capacity": hw.hbm_capacity,
            "memory_parts": memory_parts(spec, plan)}


def basis_of(spec, calibrated: bool) -> str:
    """Headline figures use t_calibrated when present, else t_lower when the op says
    ``overlap: true``, else t_upper."""
    return "t_calibrated" if calibrated else "t_lower" if spec.overlap else "t_upper"


def derive_step(groups: list[str], ledger_env: dict, inputs: dict, mode: str, pp: int, basis: str,
                calibrated: bool, symbolic: Callable | None = None, arrays: bool = False
                ) -> tuple[dict, dict]:
    """(per group {column: value}, step {column: value}) from the ledger and the inputs; with
    ``symbolic(level, group, column)`` the formulas instead, over Refs the caller resolves
    (each finished cell enters as that Ref, as roofline.derive does). ``arrays``: the ledger's
    row values and the inputs may be numpy arrays, one entry per configuration (model.batched);
    the row groups and kinds are the same for all."""
    if symbolic is None:  # numbers: the same formulas compiled once per step structure
        rows = {k: tuple(ledger_env[k]) for k in LEDGER_CONSTANTS}
        f, out = _compiled_step(tuple(groups), rows["row_group"], rows["row_kind"],
                                tuple(k for k in ledger_env if k not in rows), tuple(inputs),
                                mode, pp, basis, calibrated, arrays)
        parts = list(inputs["memory_parts"].values())
        v = run(f, {**ledger_env, **{k: _cell(x) for k, x in inputs.items()},
               "memory_parts": np.broadcast_arrays(*parts) if arrays
               else [as_float(x) for x in parts]})
        return ({g: {c: v[k] for c, k in cols.items()} for g, cols in out["group"].items()},
                {c: v[k] for c, k in out["step"].items()})
    env = NS({k: Ref(k) for k in {**ledger_env, **inputs}})  # every input a Ref
    steps = step_columns(mode, pp, basis, calibrated)
    stretch = dict(steps)["pipeline_stretch"](env)
    env["pipeline_stretch"] = symbolic("step", None, "pipeline_stretch")
    per_group: dict[str, dict] = {}
    for g in groups:
        genv, out = NS(env), {}
        for col, f in group_columns(g, calibrated):
            out[col] = f(genv)
            genv[col] = symbolic("group", g, col)
        per_group[g] = out
    for col in ("t_lower", "t_upper", "t_calibrated"):
        env[f"group_{col}"] = Ref(f"group_{col}")
    step = {"pipeline_stretch": stretch}
    for col, f in steps[1:]:
        step[col] = f(env)
        env[col] = symbolic("step", None, col)
    return per_group, step


_STEP_CACHE: dict[tuple, tuple] = {}


# the ledger ranges fixed by its rows (names and kinds): constants of the compiled step, over
# which its SUMIFS are written out row by row
LEDGER_CONSTANTS = ("row_group", "row_kind")


def _compiled_step(groups: tuple, row_group: tuple, row_kind: tuple, ledger_keys: tuple,
                   input_keys: tuple, mode: str, pp: int, basis: str, calibrated: bool,
                   arrays: bool = False) -> tuple:
    """(function of the ledger and the inputs -> every cell, {"group": {g: {col: key}},
    "step": {col: key}}): derive_step's symbolic formulas compiled to Python once per step
    structure (formula.compile_py), the group ranges as lists of the group cells."""
    key = (groups, row_group, row_kind, ledger_keys, input_keys, mode, pp, basis, calibrated,
           arrays)
    hit = _STEP_CACHE.get(key)
    if hit is not None:
        return hit
    if len(_STEP_CACHE) > 1024:
        _STEP_CACHE.clear()

    def cell(level, group, col):
        return Ref(f"{level}:{group}:{col}")
    per_group, step = derive_step(list(groups), dict.fromkeys(ledger_keys + LEDGER_CONSTANTS),
                                  dict.fromkeys(input_keys), mode, pp, basis, calibrated,
                                  symbolic=cell)
    steps: list = [("step:None:pipeline_stretch", step["pipeline_stretch"])]
    steps += [(f"group:{g}:{c}", e) for g, cols in per_group.items() for c, e in cols.items()]
    steps += [(f"group_{c}", [Ref(f"group:{g}:{c}") for g in groups])
              for c in ("t_lower", "t_upper", "t_calibrated") if c in per_group[groups[0]]]
    steps += [(f"step:None:{c}", e) for c, e in step.items() if c != "pipeline_stretch"]
    out = {"group": {g: {c: f"group:{g}:{c}" for c in cols} for g, cols in per_group.items()},
           "step": {c: f"step:None:{c}" for c in step}}
    f = compile_py(steps, {"row_group": row_group, "row_kind": row_kind},
                   [(k, k) for k, _ in steps if not k.startswith("group_")], arrays=arrays)
    _STEP_CACHE[key] = (f, out)
    return _STEP_CACHE[key]


def step_summary(hw: Hardware, wl: Workload, rows: list[dict]) -> dict | None:
    """The step figures for an expanded transformer workload (None for other workloads)."""
    x = expansion(wl)
    if x is None:
        return None
    spec, plan = x.spec, x.plan
    calibrated = any(r.get("t_calibrated") is not None for r in rows)
    basis = basis_of(spec, calibrated)
    led = ledger(rows, x)
    groups = list(dict.fromkeys(led["row_group"]))
    inputs = step_inputs(hw, spec, plan)
    per_group, step = derive_step(groups, led, inputs, spec.mode, plan.pp, basis, calibrated)
    out: dict = {"model": spec.name, "mode": spec.mode, "chips": plan.chips}
    for k in ("t_comm", "t_lower", "t_upper", "t_calibrated", "t_step"):
        if k in step:
            out[k] = json_value(step[k])
    out["t_step_basis"] = basis
    if "pipeline_bubble" in step:
        out["pipeline_bubble"] = json_value(step["pipeline_bubble"])
    out["tokens_per_step"] = inputs["tokens_per_step"]
    out["params"] = inputs["params"]
    out["params_total"] = sum(param_ledger(spec).values())
    out["params_active"] = params_active(spec)  # P plus the embedding (once when tied)
    out["flops_model"] = inputs["flops_model"]
    out["flops_ledger"] = model_flops(hw, spec, (plan, rows, x.roles))
    pt = f"flops_{6 if spec.mode == 'train' else 2}pt"
    out[pt] = json_value(step[pt])
    out["peak_used"] = json_value(step["peak_used"])
    for k in ("mfu", "hfu", "tokens_per_s"):
        out[k] = json_value(step[k])
    out["memory_bytes_per_chip"] = json_value(step["memory_bytes_per_chip"])
    out["memory_parts"] = inputs["memory_parts"]
    out["hbm_capacity"] = hw.hbm_capacity
    out["fits_memory"] = json_value(step["fits_memory"])
    out["bounds"] = {g: json_value(v["bound"]) for g, v in per_group.items()}
    out["group_times"] = {g: json_value(v["t_lower"]) for g, v in per_group.items()}
    if spec.mode == "prefill":
        out["ttft"] = out["t_step"]  # the whole prompt batch, up to its first output token
    if spec.mode == "decode":
        out["t_per_token"] = out["t_step"]  # one step writes one token of every sequence
        names = set(x.names)
        mms = [op for op in wl.ops if op.kind == "matmul" and op.name in names
               and op.name.startswith("layer/")]
        out["compute_bound_batch"] = decode_compute_bound_batch(hw, spec, x.source.mesh, mms)
    return out


def matmul_peak(hw: Hardware, spec) -> float:
    """The rate the layer matmuls run at (their compute dtype and precision)."""
    return hw_env(hw)[matmul_rate_name(spec)]


def matmul_rate_name(spec) -> str:
    """The derived hardware parameter of that rate (a defined name in the workbook)."""
    return precision.matrix_name(spec.compute_dtype or spec.dtype, spec.precision)


def tokens_per_step(spec, batch=None):
    """Tokens a step processes (decode: one per sequence); ``batch`` (a number or an array)
    replaces the spec's."""
    batch = spec.batch if batch is None else batch
    return batch * (1 if spec.mode == "decode" else spec.seq)


def palm_flops(spec, batch=None):
    """PaLM's model FLOPs per step (appendix B): per token 6P + 12 L N H T to train, the
    forward third 2P + 4 L N H T to infer; T the sequence (decode: the KV length). ``batch``
    (sequences, a number or an array) replaces the spec's."""
    tokens = tokens_per_step(spec, batch)
    p = params_6pt(spec)
    attn = spec.layers * spec.heads * spec.head_dim * spec.seq
    per_token = 6 * p + 12 * attn if spec.mode == "train" else 2 * p + 4 * attn
    return (tokens * per_token).astype(float) if hasattr(tokens, "astype") \
        else as_float(tokens * per_token)


def bubble_fraction(stages, microbatches):
    """Share of a pipeline's time its stages sit idle: (p-1)/(m+p-1)."""
    return (stages - 1) / (microbatches + stages - 1)


def group_time(kernels, collectives):
    """A ledger group's time: its collectives run beside its kernels (numbers or formulas)."""
    return fmax(kernels, collectives)


def pipeline_stretch(stages, microbatches):
    """How much the bubble stretches the pipelined groups: (m+p-1)/m (1 without a pipeline)."""
    return (microbatches + stages - 1) / microbatches


def _ops(items):
    return [(op_spec(d), role) for d, role in items]


def model_flops(hw: Hardware, spec, evaluated: tuple | None = None) -> float:
    """Forward + backward FLOPs of the whole job, unsharded (no remat, no optimizer; a mixture
    of experts at capacity factor 1: every token through its top_k experts, no padding slots).
    ``evaluated``: (plan, rows, roles) of the spec's own expansion; when that plan is already
    the unsharded one, its rows are the unsharded ledger and their FLOPs are summed as they are
    (the same ops, so the same numbers) instead of expanding and evaluating it again."""
    if spec.experts and spec.capacity_factor is not None:
        spec = spec.model_copy(update={"capacity_factor": None})  # None: the default, 1.0
        evaluated = None  # the rows were sized at the spec's capacity factor
    single = single_chip_plan(spec)
    if evaluated is not None and evaluated[0] == single:
        _, rows, roles = evaluated
        total = 0.0
        for r in rows:
            if roles.get(r["name"]) in MODEL_ROLES and r["kind"] != "collective":
                total += math.nan if r["flops"] is None else r["flops"]  # None: not finite
        return total
    items = expand_op(spec, single)
    total = 0.0
    for op, role in _ops([(d, r) for d, r in items
                          if r in MODEL_ROLES and d["kind"] != "collective"]):
        total += as_float(op_columns(op, hw)[1]["flops"])
    return total


def decode_compute_bound_batch(hw: Hardware, spec, mesh, layer_matmuls=None) -> int | None:
    """The smallest batch (sequences, whole job) at which a decode step's layer matmuls
    (projections, MLP; not attention, whose KV reads grow with the batch too: AI ~ heads /
    kv_heads) are compute-bound, i.e. their FLOPs / peak >= t_memory; None if not below
    MAX_DECODE_BATCH.

    Closed form for a dense model: with k sequences per chip per microbatch every layer matmul
    has m = k rows, so margin(k) = FLOPs / peak - t_memory = a + b k is affine in k (FLOPs
    2 k K N, bytes e k (K + N) + w K N: the useful FLOPs, not padded to the matrix tile); the
    answer is k* = ceil(-a / b) when b > 0 (when -a / b is within 1e-6 of a whole number,
    checked against margin at k* and k* - 1, so float rounding cannot move it), times the
    sequences one k stands for. A mixture of experts (the
    active experts grow with k) is searched by doubling then bisection. ``layer_matmuls``: the
    expansion's layer matmul ops when the caller has them (decode_matmul_margin)."""
    base = make_plan(spec, mesh)
    peak = matmul_peak(hw, spec)
    step = base.batch_shards * base.microbatches
    if not spec.experts:
        def margin(k):
            return decode_matmul_margin(hw, spec, mesh, k, layer_matmuls)
        f1, f2 = margin(1), margin(2)
        slope = f2 - f1
        if slope <= 0:
            return None
        q = -(f1 - slope) / slope
        k = maximum(1, math.ceil(q))
        # q's distance to the nearest whole number (at a tie 0.5 whichever is nearest)
        near_tie = abs(q - math.floor(q + 0.5)) <= 1e-6 * maximum(1.0, abs(q))
        for _ in range(4 if near_tie else 0):  # settle a float tie at the boundary
            lo, hi = margin(max(k - 1, 1)), margin(k)
            if hi < 0:
                k += 1
            elif k > 1 and lo >= 0:
                k -= 1
            else:
                break
        return k * step if k * step <= MAX_DECODE_BATCH else None

    def bound(k: int) -> bool:
        s = spec.model_copy(update={"batch": k * step})
        items = expand_op(s, make_plan(s, mesh))
        flops = tm = 0.0
        for op, role in _ops([(d, r) for d, r in items
                              if d["kind"] == "matmul" and d["name"].startswith("layer/")]):
            cost, roof = op_columns(op, hw)[1:]
            flops += as_float(cost["flops"])
            tm += as_float(roof["t_memory"])
        # the useful FLOPs (not padded to the matmul tile): the ridge-point batch, peak / HBM
        # bandwidth tokens per step (How to Scale Your Model, inference chapter: jax-ml.github.io/scaling-book/inference), not a tile-rounding artefact
        return flops / peak >= tm

    hi = 1
    while not bound(hi):
        hi *= 2
        if hi * step > MAX_DECODE_BATCH:
            return None
    lo = hi // 2  # bound(lo) is False (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bound(mid):
            hi = mid
        else:
            lo = mid
    return hi * step


def decode_matmul_margin(hw: Hardware, spec: TransformerOp, mesh, per_chip, layer_matmuls=None):
    """FLOPs / peak - t_memory of a decode step's layer matmuls with ``per_chip`` sequences
    per chip per microbatch (a number or an array): >= 0 where they are compute-bound (the
    useful FLOPs, as summary.decode_compute_bound_batch defines it). In a dense decode step
    every layer matmul has one row per such sequence (m); ``layer_matmuls`` are those ops of
    the spec's own expansion (expanded here when not given), evaluated with that m."""
    if layer_matmuls is None:
        layer_matmuls = [op_spec(d)
                         for d, _ in expand_op(spec, make_plan(spec, mesh))
                         if d["kind"] == "matmul" and d["name"].startswith("layer/")]
    flops = t_mem = 0.0
    for op in layer_matmuls:
        cells = {**REGISTRY["matmul"].inputs(op, None), "m": per_chip}
        _, cost, roof = op_columns(op, hw, None, inputs=cells, columns=("flops", "t_memory"))
        flops = flops + cost["flops"]
        t_mem = t_mem + roof["t_memory"]  # the roofline's own column
    return flops / matmul_peak(hw, spec) - t_mem
