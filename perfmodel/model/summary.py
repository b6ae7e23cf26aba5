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

from .. import precision
from ..engine import hw_env, op_columns
from ..formula import fmax
from ..specs import OP_SPECS, Hardware, Workload
from . import expansion
from .transformer import (Plan, expand_op, group_of, make_plan, memory_parts, param_ledger,
                          params_6pt, single_chip_plan)

MODEL_ROLES = ("fwd", "bwd")  # the roles whose FLOPs count as model FLOPs (not remat, optimizer)
MAX_DECODE_BATCH = 1 << 24     # search limit for the compute-bound decode batch


def step_summary(hw: Hardware, wl: Workload, rows: list[dict]) -> dict | None:
    """The step figures for an expanded transformer workload (None for other workloads)."""
    x = expansion(wl)
    if x is None:
        return None
    spec, plan = x.spec, x.plan
    groups = _group_times(rows, x, plan)
    t_lower = sum(g["t_lower"] for g in groups.values())
    t_upper = sum(g["t_upper"] for g in groups.values())
    out: dict = {"model": spec.name, "mode": spec.mode, "chips": plan.chips,
                 "t_comm": sum(r.get("t_comm") or 0.0 for r in rows),
                 "t_lower": t_lower, "t_upper": t_upper}
    basis = "t_lower" if spec.overlap else "t_upper"
    if any(r.get("t_calibrated") is not None for r in rows):
        out["t_calibrated"] = sum(g["t_calibrated"] for g in groups.values())
        basis = "t_calibrated"
    t_step = out[basis]
    out.update(t_step=t_step, t_step_basis=basis)
    if plan.pp > 1:
        out["pipeline_bubble"] = bubble_fraction(plan.pp, plan.microbatches)

    tokens = spec.batch * (1 if spec.mode == "decode" else spec.seq)
    peak = matmul_peak(hw, spec)
    out["tokens_per_step"] = tokens
    out["params"] = params_6pt(spec)
    out["params_total"] = sum(param_ledger(spec).values())
    out["flops_model"] = palm_flops(spec)
    out["flops_ledger"] = model_flops(hw, spec)
    pt = 6 if spec.mode == "train" else 2
    out[f"flops_{pt}pt"] = float(pt * out["params"] * tokens)
    out["peak_used"] = peak
    executed = sum(r["flops"] or 0.0 for r in rows)  # per chip, every row
    out["mfu"] = out["flops_model"] / (plan.chips * t_step * peak) if t_step > 0 else None
    out["hfu"] = executed / (t_step * peak) if t_step > 0 else None
    out["tokens_per_s"] = tokens / t_step if t_step > 0 else None

    parts = memory_parts(spec, plan)
    out["memory_bytes_per_chip"] = sum(parts.values())
    out["memory_parts"] = parts
    out["hbm_capacity"] = hw.hbm_capacity
    out["fits_memory"] = out["memory_bytes_per_chip"] <= hw.hbm_capacity
    out["bounds"] = {name: g["bound"] for name, g in groups.items()}
    out["group_times"] = {name: g["t_lower"] for name, g in groups.items()}
    if spec.mode == "prefill":
        out["ttft"] = t_step  # the whole prompt batch, up to its first output token
    if spec.mode == "decode":
        out["t_per_token"] = t_step  # one step writes one token of every sequence
        out["compute_bound_batch"] = decode_compute_bound_batch(hw, spec, x.source.mesh)
    return out


def matmul_peak(hw: Hardware, spec) -> float:
    """The rate the layer matmuls run at (their compute dtype and precision)."""
    r = precision.matrix_rate(hw, spec.compute_dtype or spec.dtype, spec.precision)
    return hw_env(hw)[r.key] / r.passes


def palm_flops(spec) -> float:
    """PaLM's model FLOPs per step (appendix B): per token 6P + 12 L N H T to train, the
    forward third 2P + 4 L N H T to infer; T the sequence (decode: the KV length)."""
    tokens = spec.batch * (1 if spec.mode == "decode" else spec.seq)
    p = params_6pt(spec)
    attn = spec.layers * spec.heads * spec.head_dim * spec.seq
    per_token = 6 * p + 12 * attn if spec.mode == "train" else 2 * p + 4 * attn
    return float(tokens * per_token)


def bubble_fraction(stages: int, microbatches: int) -> float:
    """Share of a pipeline's time its stages sit idle: (p-1)/(m+p-1)."""
    return (stages - 1) / (microbatches + stages - 1)


def group_time(kernels, collectives):
    """A ledger group's time: its collectives run beside its kernels (numbers or Excel refs)."""
    return fmax(kernels, collectives)


def pipeline_stretch(plan: Plan) -> float:
    """How much the bubble stretches the pipelined groups: (m+p-1)/m (1 without a pipeline)."""
    return (plan.microbatches + plan.pp - 1) / plan.microbatches


def _group_times(rows: list[dict], x, plan: Plan) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        g = out.setdefault(x.groups.get(r["name"]) or group_of(r["name"]),
                           {"busy": 0.0, "comm": 0.0, "upper": 0.0, "compute": 0.0,
                            "memory": 0.0, "cal_busy": 0.0, "cal_comm": 0.0})
        t = r["t_lower"]
        cal = r.get("t_calibrated")
        cal = t if cal is None else cal
        if r["kind"] == "collective":
            g["comm"] += t
            g["cal_comm"] += cal
        else:
            g["busy"] += t
            g["cal_busy"] += cal
            g["compute" if r["bound"] == "compute" else "memory"] += t
        g["upper"] += r["t_upper"]
    stretch = pipeline_stretch(plan)
    for name, g in out.items():
        f = 1.0 if name == "optimizer" else stretch  # the bubble idles the pipelined part
        g["t_lower"] = f * float(group_time(g["busy"], g["comm"]))
        g["t_upper"] = f * g["upper"]
        g["t_calibrated"] = f * float(group_time(g["cal_busy"], g["cal_comm"]))
        g["bound"] = ("comm" if g["comm"] > g["busy"] else
                      "compute" if g["compute"] >= g["memory"] else "memory")
    return out


def _ops(items):
    return [(OP_SPECS[d["kind"]].model_validate(d), role) for d, role in items]


def model_flops(hw: Hardware, spec) -> float:
    """Forward + backward FLOPs of the whole job, unsharded (no remat, no optimizer; a mixture
    of experts at capacity factor 1: every token through its top_k experts, no padding slots)."""
    if spec.experts:
        spec = spec.model_copy(update={"capacity_factor": None})  # None: the default, 1.0
    items = expand_op(spec, single_chip_plan(spec))
    total = 0.0
    for op, role in _ops(items):
        if role in MODEL_ROLES and op.kind != "collective":
            total += float(op_columns(op, hw)[1]["flops"])
    return total


def decode_compute_bound_batch(hw: Hardware, spec, mesh) -> int | None:
    """The smallest batch (sequences, whole job) at which a decode step's layer matmuls
    (projections, MLP; not attention, whose KV reads grow with the batch too: AI ~ heads /
    kv_heads) are compute-bound, i.e. their FLOPs / peak >= t_memory; None if not below
    MAX_DECODE_BATCH. Searched by doubling then bisection in steps the sharding allows."""
    base = make_plan(spec, mesh)
    peak = matmul_peak(hw, spec)
    step = base.batch_shards * base.microbatches

    def bound(k: int) -> bool:
        s = spec.model_copy(update={"batch": k * step})
        items = expand_op(s, make_plan(s, mesh))
        flops = tm = 0.0
        for op, role in _ops([(d, r) for d, r in items
                              if d["kind"] == "matmul" and d["name"].startswith("layer/")]):
            cost, roof = op_columns(op, hw)[1:]
            flops += float(cost["flops"])
            tm += float(roof["t_memory"])
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
