"""The calibrated prediction: a roofline with fitted, per-group-of-kernels parameters.

For one kernel of a fitted group:

    t = overhead + combine(flops_exec / P_eff, t_mem),  combine = sum or max
    P_eff = peak / (1 + d0/m + d0/n + dk/k)          matmuls: small dims run below peak
    t_mem = hbm_bytes * (hit / cache_bandwidth + (1 - hit) / bandwidth)   with a cache term,
    hit   = 1 / (1 + (working_set / cache_bytes) ^ cache_sharpness)       else hbm_bytes / bandwidth

``hit`` is the share of the bytes served at cache speed: about 1 while the working set is well
inside the cache, falling smoothly past ``cache_bytes`` (a step as the sharpness grows), so a
shape just past the cache's edge is priced between the two speeds rather than on one side of
a cliff placed from a few samples. The working set (working_set) is what a cache must hold,
not the bytes moved: an in-place elementwise op's inputs only (its outputs overwrite them),
and one (batch, head) slice of naive attention, which works a head at a time (the same total
bytes can run 2x faster when one head's scores fit a cache: docs/calibration.md); otherwise the
op's bytes.

Attention uses its own fitted group when there is one (attention_naive, with the matmul shape
knee on its per-kv-head product; attention_decode if a calibration has one); otherwise naive
attention is predicted as the sum of its parts, as it runs: the QK^T product, the softmax over
the scores and the AV product, each with its own group's parameters. The products' rows are
the query rows sharing one kv head, so a decode step (one token, 1-4 heads per kv head) runs
them on the gemv group (one row) or as small GEMMs on the matmul group. A backward takes its forward's fitted group on the backward's
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

from .formula import fmax
from .specs import INDEX_DTYPES

PARAMS = ["peak_flops", "bandwidth", "overhead", "cache_bytes", "cache_bandwidth",
          "cache_sharpness", "small_dim", "small_k"]
# a cache term given without its sharpness (older calibrated specs) is close to a step
DEFAULT_CACHE_SHARPNESS = 50.0
SOFTMAX_FLOPS = 5  # as the attention model counts it


GEMV_ROWS = 1  # one row or column: XLA runs it as a matrix-vector product; 2+ rows are small GEMMs


def matmul_group(m, n) -> str:
    """Matrix-vector products (a decode step's projections) stream the weights through a
    different kernel than blocked GEMMs: their own group."""
    return "gemv" if min(m, n) <= GEMV_ROWS else "matmul"


def group(base: str, dtype: str) -> str:
    # integer and bool kernels (indices, masks) take fp32's group, as the engine prices them
    # as fp32 (perfmodel.precision)
    return base if dtype == "fp32" or dtype in INDEX_DTYPES else f"{base}_{dtype}"


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
        out[f"cal_{key}_cache_sharpness"] = k.cache_sharpness or DEFAULT_CACHE_SHARPNESS
        out[f"cal_{key}_small_dim"] = k.small_dim or 0.0
        out[f"cal_{key}_small_k"] = k.small_k or 0.0
    return out


def relative_error(predicted, measured):
    """|predicted - measured| / measured: the error every calibration figure reports."""
    return fmax(predicted - measured, measured - predicted) / measured


def has_cache(hw, key: str) -> bool:
    k = hw.calibration.kinds.get(key) if hw.calibration is not None else None
    return bool(k is not None and k.cache_bytes)


def kernel_time(e, key: str, combine: str, flops, hbm_bytes, dims=None, overhead: bool = True,
                cache: bool = False, working_set=None):
    """One kernel of group ``key``; ``dims`` = (m, k, n) for a matmul's shape term;
    ``overhead`` False for a kernel inside a compiled step (see column); ``cache`` True when
    the group has a cache term (a structural choice, like ``combine``)."""
    c = lambda p: e[f"cal_{key}_{p}"]  # noqa: E731
    peak = c("peak_flops")
    if dims is not None:  # few output rows/columns, or a short reduction, run below peak
        d0, dk = c("small_dim"), c("small_k")
        m, k, n = dims
        peak = peak / (1 + d0 / m + d0 / n + dk / k)
    tc = flops / peak
    if cache:
        ws = hbm_bytes if working_set is None else working_set
        hit = 1 / (1 + (ws / c("cache_bytes")) ** c("cache_sharpness"))
        tm = hbm_bytes * (hit / c("cache_bandwidth") + (1 - hit) / c("bandwidth"))
    else:
        tm = hbm_bytes / c("bandwidth")
    t = tc + tm if combine == "sum" else fmax(tc, tm)
    return c("overhead") + t if overhead else t


def working_set(op, e):
    """The bytes a cache must hold for ``op`` to run from it, or None for its hbm_bytes."""
    if op.kind == "elementwise" and getattr(op, "in_place", False):
        return e.elem_bytes * e.elements * fmax(e.inputs, e.outputs)
    if op.kind == "attention" and op.impl == "naive" and op.seq > 1:
        S, T, D = e.seq, e.kv_seq, e.head_dim  # one (batch, head): scores, q, k, v, output
        return e.elem_bytes * (S * T + 2 * S * D + 2 * T * D)
    return None


def attention_dims(e):
    """(m, k, n) of naive attention's QK^T product per kv head, for the shape term."""
    return (e.seq * e.heads / e.kv_heads, e.head_dim, e.kv_seq)


def naive_attention_parts(e):
    """(group base, flops, hbm_bytes, dims) of QK^T, softmax and AV: together exactly the
    naive attention model's flops and bytes."""
    B, H, K, S, T, D, b = e.batch, e.heads, e.kv_heads, e.seq, e.kv_seq, e.head_dim, e.elem_bytes
    scores = B * H * S * T
    rows = S * H / K  # the query rows that share one kv head form one product's rows
    return [
        ("matmul", 2 * scores * D, b * (B * H * S * D + B * K * T * D + scores), (rows, D, T)),
        ("softmax", SOFTMAX_FLOPS * scores, b * 2 * scores, None),
        ("matmul", 2 * scores * D, b * (scores + B * K * T * D + B * H * S * D), (rows, T, D)),
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


def attention_matmul_group(op) -> str:
    """The group of naive attention's two products: their rows are the query rows of one kv
    head (seq x heads/kv_heads), so a decode step (one query token, a few heads per kv head)
    runs them as matrix-vector products."""
    rows = op.seq * (op.heads // (op.kv_heads or op.heads))
    return matmul_group(rows, min(op.kv_seq or op.seq, op.head_dim))


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

    def kt(e, key, flops, hbm_bytes, dims=None, working_set=None):
        return kernel_time(e, key, kinds[key].combine, flops, hbm_bytes, dims, overhead=ovh,
                           cache=has_cache(hw, key), working_set=working_set)

    def summed(parts_fn, keys):
        def total(e):
            t = [kt(e, keys[g], f, b, dims) for g, f, b, dims in parts_fn(e)]
            out = t[0]
            for x in t[1:]:
                out = out + x
            return out
        return total

    if op.kind == "matmul" and op.calibrate_as is None:
        gemv = group(matmul_group(op.m, op.n), op.dtype)  # matrix-vector: its own group if fitted
        key = gemv if gemv in kinds else key
    if op.kind == "matmul" and key in kinds:
        return lambda e: kt(e, key, e.flops_exec, e.hbm_bytes, (e.m, e.k, e.n))
    if op.kind == "elementwise" and key in kinds:
        return lambda e: kt(e, key, e.flops_exec, e.hbm_bytes, working_set=working_set(op, e))
    if op.kind != "attention":
        return None
    # a fitted attention kernel of its own (a calibration from a host that fitted one); a
    # backward runs the same kinds of products and score passes as its forward, so it takes
    # the forward's group on its own (backward) FLOPs and bytes
    key = group("attention_decode" if op.seq == 1 else f"attention_{op.impl}", op.dtype)
    if op.calibrate_as is None and key in kinds:
        dims = attention_dims if kinds[key].small_dim or kinds[key].small_k else (lambda e: None)
        return lambda e: kt(e, key, e.flops_exec, e.hbm_bytes, dims(e), working_set=working_set(op, e))
    if op.impl != "naive":
        return None
    backward = getattr(op, "backward", False)
    mm = "matmul" if backward else attention_matmul_group(op)
    keys = {"matmul": group(mm, op.dtype), "softmax": group("softmax", op.dtype)}
    if mm == "gemv" and keys["matmul"] not in kinds:
        keys["matmul"] = group("matmul", op.dtype)
    if not all(k in kinds for k in keys.values()):
        return None
    return summed(naive_attention_bwd_parts if backward else naive_attention_parts, keys)
