"""Matmul: ``batch`` independent [m,k] @ [k,n] products, each with its own operands.

The [m,k] operand and the [m,n] result are in ``dtype``; the [k,n] operand (the weights) in
``weight_dtype`` (int8 or int4 for weight-only quantization; default ``dtype``). The rate that
prices the FLOPs follows ``compute_dtype`` and ``precision`` (perfmodel.precision).

Tile padding (``flops_exec``): the matrix unit computes whole tiles. A TPU MXU holds a k x n
weight tile (128 x 128; 256 x 256 on v6e) and streams activation rows through it 8 at a time
(How to Scale Your Model, TPU chapter: bf16[8,128] @ bf16[128,128] per 8 cycles), so k and n pad
to the MXU side and m only to the 8 sublanes. GPUs pad to their MMA instruction shape.
"""

from ..formula import ceil
from ..specs import elem_bytes
from . import common_inputs, num, register

FMA_FLOPS = 2  # one multiply-add = 2 FLOPs


def _inputs(op, ctx):
    w = op.weight_dtype or op.dtype
    return {**common_inputs(op), "weight_bytes": float(elem_bytes(w)), "batch": num(op.batch),
            "m": num(op.m), "k": num(op.k), "n": num(op.n)}


def padded(x, tile):
    """A dimension padded up to the matrix unit's tile (tile 1 = no padding)."""
    return ceil(x / tile) * tile


@register("matmul", _inputs)
def matmul(p, hw, op):
    return {
        "flops": FMA_FLOPS * p.batch * p.m * p.k * p.n,
        # the MXU/tensor core computes whole tiles: time uses the padded dims
        "flops_exec": FMA_FLOPS * p.batch * padded(p.m, hw.matmul_tile_m)
        * padded(p.k, hw.matmul_tile_k) * padded(p.n, hw.matmul_tile_n),
        "hbm_bytes": p.batch * (p.elem_bytes * (p.m * p.k + p.m * p.n)
                                + p.weight_bytes * p.k * p.n),
    }
