"""The calibrated prediction: a roofline with fitted, per-group-of-kernels parameters.

For one kernel of a fitted group:

    t = overhead + combine(flops_exec / P_eff, hbm_bytes / W_eff),  combine = sum or max
    P_eff = peak / (1 + d0/m + d0/n + dk/k)          matmuls: small dims run below peak
    W_eff = cache_bandwidth while hbm_bytes <= cache_bytes, else bandwidth

Attention uses its own fitted group when there is one (attention_naive, attention_decode for a
single query row, ...); otherwise naive attention is predicted as the sum of its parts, as it
runs: the QK^T matmul, the softmax over the scores and the AV matmul, each with its own group's
parameters (matmul, softmax). A backward takes its forward's fitted group on the backward's
FLOPs and bytes, or else (naive) is predicted as dV, dP, the softmax backward, dQ and dK the
same way (naive_attention_bwd_parts).
A kernel of a compiled step (``in_step``: a transformer's expanded ops) leaves out the
overhead: that term is fitted on separately dispatched kernels (dispatch, argument handling,
waking the thread pool each call), which the kernels inside one executable do not pay.
Groups are per dtype (``matmul`` for fp32, ``matmul_bf16``, ...). The fitted numbers are
hardware parameters named ``cal_<group>_<param>``, so the workbook shows them as input cells
and the formula stays live. Pure: the fitting lives in calibrate/fit.py.
"""

from __future__ import annotations

from typing import Callable

from .formula import fmax, where

PARAMS = ["peak_flops", "bandwidth", "overhead", "cache_bytes", "cache_bandwidth", "small_dim",
          "small_k"]
SOFTMAX_FLOPS = 5  # as the attention model counts it


GEMV_ROWS = 4  # a matmul with at most this many rows or columns is a matrix-vector kernel (kernels.GEMV_ROWS)


def matmul_group(m, n) -> str:
    """Matrix-vector products (a decode step's projections) stream the weights through a
    different kernel than blocked GEMMs: their own group."""
    return "gemv" if min(m, n) <= GEMV_ROWS else "matmul"


def group(base: str, dtype: str) -> str:
    return base if dtype == "fp32" else f"{base}_{dtype}"


def env(hw) -> dict[str, float]:
    """cal_<group>_<param> for every fitted group, with neutral defaults for unset terms."""
    out = {}
    if hw.calibration is None:
        return out
    for key, k in hw.calibration.kinds.items():
        out[f"cal_{key}_peak_flops"] = k.peak_flops
        out[f"cal_{key}_bandwidth"] = k.bandwidth
        out[f"cal_{key}_overhead"] = k.overhead
        out[f"cal_{key}_cache_bytes"] = k.cache_bytes or 0.0  # 0: no cache term
        out[f"cal_{key}_cache_bandwidth"] = k.cache_bandwidth or k.bandwidth
        out[f"cal_{key}_small_dim"] = k.small_dim or 0.0
        out[f"cal_{key}_small_k"] = k.small_k or 0.0
    return out


def kernel_time(e, key: str, combine: str, flops, hbm_bytes, dims=None, overhead: bool = True):
    """One kernel of group ``key``; ``dims`` = (m, k, n) for a matmul's shape term;
    ``overhead`` False for a kernel inside a compiled step (see column)."""
    c = lambda p: e[f"cal_{key}_{p}"]  # noqa: E731
    peak = c("peak_flops")
    if dims is not None:  # few output rows/columns, or a short reduction, run below peak
        d0, dk = c("small_dim"), c("small_k")
        m, k, n = dims
        peak = peak / (1 + d0 / m + d0 / n + dk / k)
    bw = where(hbm_bytes <= c("cache_bytes"), c("cache_bandwidth"), c("bandwidth"))
    tc = flops / peak
    tm = hbm_bytes / bw
    t = tc + tm if combine == "sum" else fmax(tc, tm)
    return c("overhead") + t if overhead else t


def naive_attention_parts(e):
    """(group base, flops, hbm_bytes, dims) of QK^T, softmax and AV: together exactly the
    naive attention model's flops and bytes."""
    B, H, K, S, T, D, b = e.batch, e.heads, e.kv_heads, e.seq, e.kv_seq, e.head_dim, e.elem_bytes
    scores = B * H * S * T
    return [
        ("matmul", 2 * scores * D, b * (B * H * S * D + B * K * T * D + scores), (S, D, T)),
        ("softmax", SOFTMAX_FLOPS * scores, b * 2 * scores, None),
        ("matmul", 2 * scores * D, b * (scores + B * K * T * D + B * H * S * D), (S, T, D)),
    ]


def naive_attention_bwd_parts(e):
    """(group base, flops, hbm_bytes, dims) of naive attention's backward as it runs (P kept
    by the forward): dV = P^T dO, dP = dO V^T, the softmax backward dS = P (dP - rowsum(P dP))
    and dQ = dS K, dK = dS^T Q. Together exactly the backward model's flops and bytes
    (ops/attention.py: 4 matmuls and 2 FLOPs per score; Q, dO twice and dQ, K, V, dK, dV, and
    7 passes over the scores: P twice, dP written and read, dS written and read twice)."""
    from .ops.attention import SOFTMAX_BWD_FLOPS_PER_SCORE

    B, H, K, S, T, D, b = e.batch, e.heads, e.kv_heads, e.seq, e.kv_seq, e.head_dim, e.elem_bytes
    scores = B * H * S * T
    q, kv = B * H * S * D, B * K * T * D
    mm = 2 * scores * D
    return [
        ("matmul", mm, b * (scores + q + kv), (T, S, D)),            # dV = P^T dO
        ("matmul", mm, b * (q + kv + scores), (S, D, T)),            # dP = dO V^T
        ("softmax", SOFTMAX_BWD_FLOPS_PER_SCORE * scores, b * 3 * scores, None),  # dS
        ("matmul", mm, b * (scores + kv + q), (S, T, D)),            # dQ = dS K
        ("matmul", mm, b * (scores + q + kv), (T, S, D)),            # dK = dS^T Q
    ]


def column(hw, op) -> Callable | None:
    """The t_calibrated formula (env -> expression) for ``op`` on ``hw``, or None when no
    fitted group covers it."""
    if hw.calibration is None:
        return None
    kinds = hw.calibration.kinds
    key = group(op.calibrate_as or op.kind, op.dtype)
    # the fitted overhead is what a separately dispatched kernel pays per call (dispatch,
    # argument handling, waking the thread pool); kernels of one compiled step do not
    ovh = not getattr(op, "in_step", False)

    def kt(*a):
        return kernel_time(*a, overhead=ovh)

    if op.kind == "matmul" and op.calibrate_as is None:
        gemv = group(matmul_group(op.m, op.n), op.dtype)  # matrix-vector: its own group if fitted
        key = gemv if gemv in kinds else key
    if op.kind == "matmul" and key in kinds:
        return lambda e: kt(e, key, kinds[key].combine, e.flops_exec, e.hbm_bytes,
                            (e.m, e.k, e.n))
    if op.kind == "elementwise" and key in kinds:
        return lambda e: kt(e, key, kinds[key].combine, e.flops_exec, e.hbm_bytes)
    if op.kind == "attention":
        # a fitted attention kernel of its own (decode, one query row, is a different kernel);
        # a backward runs the same kinds of products and score passes as its forward, so it
        # takes the forward's group on its own (backward) FLOPs and bytes
        key = group("attention_decode" if op.seq == 1 else f"attention_{op.impl}", op.dtype)
        if op.calibrate_as is None and key in kinds:
            return lambda e: kt(e, key, kinds[key].combine, e.flops_exec, e.hbm_bytes)
    if op.kind == "attention" and op.impl == "naive" and not getattr(op, "backward", False):
        keys = {g: group(g, op.dtype) for g in ("matmul", "softmax")}
        if all(k in kinds for k in keys.values()):
            def naive(e):
                parts = [kt(e, keys[g], kinds[keys[g]].combine, f, b, dims)
                         for g, f, b, dims in naive_attention_parts(e)]
                return parts[0] + parts[1] + parts[2]
            return naive
    if op.kind == "attention" and op.impl == "naive" and getattr(op, "backward", False):
        keys = {g: group(g, op.dtype) for g in ("matmul", "softmax")}
        if all(k in kinds for k in keys.values()):
            def naive_bwd(e):
                parts = [kt(e, keys[g], kinds[keys[g]].combine, f, b, dims)
                         for g, f, b, dims in naive_attention_bwd_parts(e)]
                return parts[0] + parts[1] + parts[2] + parts[3] + parts[4]
            return naive_bwd
    return None

