"""Attention: naive, fused and flash; causal, grouped-query (kv_heads) and decode (kv_seq).

B batch, H query heads, K kv heads, S query length, T kv length, D head dim, e bytes/elem.
- naive: QK^T, softmax and AV as three passes; the B*H*S*T score matrix goes through HBM
  (written by QK^T, read and written by softmax, read by AV): e*(2BHSD + 2BKTD + 4BHST).
- fused: nothing of size S*T leaves the chip: e*(2BHSD + 2BKTD). It needs one (example, head)
  score matrix on chip: onchip_bytes = e*S*T.
- flash: tiled. Query block Br = the most rows whose Q, O, K and V tiles (Br x D each) fit on
  chip, capped at S. K and V are read once per query block per kv head (a GQA kernel serves the
  whole query-head group): e*(2BHSD + 2BKTD*ceil(S/Br)) (FlashAttention, Theorem 2).
"""

from ..formula import ceil, fmax, fmin, floor, where
from . import common_inputs, num, register
from .matmul import FMA_FLOPS

# softmax per score: max, subtract, exp, sum, divide (XLA counts about 5 and 1 transcendental)
SOFTMAX_FLOPS_PER_SCORE = 5
FLASH_TILES = 4  # Q, O, K and V tiles resident at once


def _inputs(op, ctx):
    return {**common_inputs(op), "batch": num(op.batch), "seq": num(op.seq),
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
    flops = (2 * FMA_FLOPS * D + SOFTMAX_FLOPS_PER_SCORE) * scores * kept
    qo = 2 * B * H * S * D
    kv = 2 * B * K * T * D
    out = {"flops": flops, "flops_exec": flops}
    if op.impl == "naive":
        out["hbm_bytes"] = e * (qo + kv + 4 * scores)
        out["onchip_bytes"] = 0  # three separate passes: nothing must stay resident
    elif op.impl == "fused":
        out["hbm_bytes"] = e * (qo + kv)
        out["onchip_bytes"] = e * S * T
    else:
        br = fmin(S, fmax(1, floor(hw.onchip_memory / (FLASH_TILES * D * e))))
        out["q_block"] = br
        out["hbm_bytes"] = e * (qo + kv * ceil(S / br))
        out["onchip_bytes"] = FLASH_TILES * br * D * e
    # naive keeps nothing resident between its passes, so it always fits
    out["fits_onchip"] = True if op.impl == "naive" else out["onchip_bytes"] <= hw.onchip_memory
    return out
