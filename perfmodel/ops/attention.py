"""Attention: naive, fused and flash; causal, grouped-query (kv_heads) and decode (kv_seq).

B batch, H query heads, K kv heads, S query length, T kv length, D head dim, e bytes/elem.
- naive: QK^T, softmax and AV as three passes; the B*H*S*T score matrix goes through HBM
  (written by QK^T, read and written by softmax, read by AV): e*(2BHSD + 2BKTD + 4BHST).
- fused: nothing of size S*T leaves the chip: e*(2BHSD + 2BKTD). It needs one (example, head)
  score matrix on chip: onchip_bytes = e*S*T.
- flash: tiled. Query block Br = the largest b <= S whose Q, O, K and V tiles (b x D each)
  and the fp32 score tile (b x b, square blocks) fit on chip: 4 b D e + 4 b^2 <= onchip_memory,
  unless the chip gives a cited ``flash_block_q``. K and V are read once per query block per kv
  head (a GQA kernel serves the whole query-head group): e*(2BHSD) + kv_e*(2BKTD*ceil(S/Br))
  (FlashAttention, Theorem 2). FlashAttention-1's extra cap Br <= D (Algorithm 1) is a rule for
  a GPU's ~100-200 kB of SRAM; on a TPU with 128 MiB of VMEM it would multiply the K/V reads by
  S/128, which XLA's and Pallas' kernels do not do, so the on-chip fit is the only cap.
- K and V are stored in ``kv_dtype`` (kv_e bytes; an int8 KV cache halves their reads).

Units: QK^T and AV run on the matrix unit; the softmax FLOPs (``flops_vector``) on the vector
unit (perfmodel.precision); t_compute adds the two.

Backward (``backward: true``; dQ, dK, dV from dO). Matmuls per score: naive 4 (dV = P^T dO,
dP = dO V^T, dQ = dS K, dK = dS^T Q, with P stored by the forward); fused and flash 5 (they
recompute S = QK^T: 2.5x the forward's two, FlashAttention-2), plus the softmax backward
(dS = P (dP - rowsum(dO O)): 2 FLOPs per score) and, when recomputing, P = exp(S - lse) (2).
Bytes: Q, O, dO read and dQ written (4BHSD), K, V read and dK, dV written (4BKTD); naive adds
7 passes over the scores (P read twice, dP written and read, dS written and read twice); flash
loops over KV blocks of Br rows (square tiles: K, V, dK, dV, Q, O, dO, dQ and the fp32 score
tile on chip at once: 8 b D e + 4 b^2 <= onchip_memory, the forward's rule with its tiles) and
re-reads Q, dO and reads and writes dQ once per KV block: e*(4BKTD + 4BHSD*ceil(T/Br)).
"""

from ..formula import ceil, fmax, fmin, floor, sqrt, where
from ..specs import elem_bytes
from . import common_inputs, num, operand_bytes, register
from .matmul import FMA_FLOPS

# softmax per score: max, subtract, exp, sum, divide (XLA counts about 5 and 1 transcendental)
SOFTMAX_FLOPS_PER_SCORE = 5
EXPS_PER_SCORE = 1  # of those, the exp (a transcendental); recomputing P = exp(S - lse) too
FLASH_TILES = 4  # Q, O, K and V tiles resident at once
# backward (FlashAttention-2): matmuls per score, with and without recomputing S = QK^T
BWD_MATMULS_RECOMPUTE = 5  # S, dV, dP, dQ, dK: 2.5x the forward's 2
BWD_MATMULS_STORED = 4     # naive keeps P from the forward
SOFTMAX_BWD_FLOPS_PER_SCORE = 2   # dS = P * (dP - delta): subtract, multiply
SOFTMAX_RECOMPUTE_FLOPS_PER_SCORE = 2  # P = exp(S - lse): subtract, exp
NAIVE_BWD_SCORE_PASSES = 7  # P read twice, dP written and read, dS written and read twice
FLASH_BWD_TILES = 8  # K, V, dK, dV, Q, O, dO and dQ tiles resident at once
SCORE_TILE_BYTES = 4  # the b x b score tile is fp32


def flash_block(hw, S, D, e, tiles):
    """The largest b <= S with tiles*b*D*e + 4*b^2 <= onchip_memory (the positive root of the
    quadratic, floored), or the chip's flash_block_q when it gives one (0: none)."""
    a = tiles * D * e
    fit = floor((sqrt(a * a + 4 * SCORE_TILE_BYTES * hw.onchip_memory) - a)
                / (2 * SCORE_TILE_BYTES))
    b = where(hw.flash_block_q > 0, hw.flash_block_q, fmax(1, fit))
    return fmin(S, b)


def _inputs(op, ctx):
    kv = {}
    if op.kv_dtype is not None and op.kv_dtype != op.dtype:  # a cell only when it differs
        kv["kv_bytes"] = float(elem_bytes(op.kv_dtype))
    return {**common_inputs(op), **kv, "batch": num(op.batch), "seq": num(op.seq),
            "kv_seq": num(op.seq if op.kv_seq is None else op.kv_seq), "heads": num(op.heads),
            "kv_heads": num(op.heads if op.kv_heads is None else op.kv_heads),
            "head_dim": num(op.head_dim), "causal": num(op.causal)}


@register("attention", _inputs)
def attention(p, hw, op):
    B, H, K, S, T, D, e = p.batch, p.heads, p.kv_heads, p.seq, p.kv_seq, p.head_dim, p.elem_bytes
    scores = B * H * S * T
    # causal with the queries as the last S of T positions: kept = 1 - (S-1)/(2T);
    # (S+1)/(2S) when S = T. Naive computes every score anyway (masking is not skipping).
    kept = where(p.causal > 0, 1 - (S - 1) / (2 * T), 1) if op.impl != "naive" else 1
    if getattr(op, "backward", False):
        return _backward(p, hw, op, B, H, K, S, T, D, e, scores, kept)
    flops = (2 * FMA_FLOPS * D + SOFTMAX_FLOPS_PER_SCORE) * scores * kept
    qo = 2 * B * H * S * D
    kv = 2 * B * K * T * D
    out = {"flops": flops, "flops_exec": flops,
           "flops_vector": SOFTMAX_FLOPS_PER_SCORE * scores * kept,
           "flops_transcendental": EXPS_PER_SCORE * scores * kept}
    if op.impl == "naive":
        out["hbm_bytes"] = operand_bytes(p, ("elem_bytes", qo), ("kv_bytes", kv),
                                         ("elem_bytes", 4 * scores))
        out["onchip_bytes"] = 0  # three separate passes: nothing must stay resident
    elif op.impl == "fused":
        out["hbm_bytes"] = operand_bytes(p, ("elem_bytes", qo), ("kv_bytes", kv))
        out["onchip_bytes"] = e * S * T
    else:
        br = flash_block(hw, S, D, e, FLASH_TILES)
        out["q_block"] = br
        out["hbm_bytes"] = operand_bytes(p, ("elem_bytes", qo), ("kv_bytes", kv * ceil(S / br)))
        out["onchip_bytes"] = FLASH_TILES * br * D * e + SCORE_TILE_BYTES * br * br
    # naive keeps nothing resident between its passes, so it always fits
    out["fits_onchip"] = True if op.impl == "naive" else out["onchip_bytes"] <= hw.onchip_memory
    return out


def _backward(p, hw, op, B, H, K, S, T, D, e, scores, kept):
    naive = op.impl == "naive"
    matmuls = BWD_MATMULS_STORED if naive else BWD_MATMULS_RECOMPUTE
    per_score = FMA_FLOPS * D * matmuls + SOFTMAX_BWD_FLOPS_PER_SCORE + (
        0 if naive else SOFTMAX_RECOMPUTE_FLOPS_PER_SCORE)
    flops = per_score * scores * kept
    vector = (SOFTMAX_BWD_FLOPS_PER_SCORE + (0 if naive else SOFTMAX_RECOMPUTE_FLOPS_PER_SCORE))
    q_side = 4 * B * H * S * D   # Q, O, dO read; dQ written
    kv_side = 4 * B * K * T * D  # K, V read; dK, dV written
    out = {"flops": flops, "flops_exec": flops, "flops_vector": vector * scores * kept,
           "flops_transcendental": (0 if naive else EXPS_PER_SCORE) * scores * kept}
    if naive:
        out["hbm_bytes"] = e * (q_side + kv_side + NAIVE_BWD_SCORE_PASSES * scores)
        out["onchip_bytes"] = 0
    elif op.impl == "fused":
        out["hbm_bytes"] = e * (q_side + kv_side)
        out["onchip_bytes"] = 2 * e * S * T  # P and dS of one (example, head)
    else:
        br = flash_block(hw, T, D, e, FLASH_BWD_TILES)
        out["q_block"] = br
        out["hbm_bytes"] = e * (kv_side + q_side * ceil(T / br))
        out["onchip_bytes"] = FLASH_BWD_TILES * br * D * e + SCORE_TILE_BYTES * br * br
    out["fits_onchip"] = True if naive else out["onchip_bytes"] <= hw.onchip_memory
    return out
