"""Matmul: ``batch`` independent [m,k] @ [k,n] products, each with its own operands."""

from ..formula import ceil
from . import common_inputs, num, register

FMA_FLOPS = 2  # one multiply-add = 2 FLOPs


def _inputs(op, ctx):
    return {**common_inputs(op), "batch": num(op.batch), "m": num(op.m), "k": num(op.k),
            "n": num(op.n)}


def padded(x, tile):
    """A dimension padded up to the systolic array's tile (tile 1 = no padding)."""
    return ceil(x / tile) * tile


@register("matmul", _inputs)
def matmul(p, hw, op):
    t = hw.matmul_tile
    return {
        "flops": FMA_FLOPS * p.batch * p.m * p.k * p.n,
        # the MXU/tensor core computes whole tiles: time uses the padded dims
        "flops_exec": FMA_FLOPS * p.batch * padded(p.m, t) * padded(p.k, t) * padded(p.n, t),
        "hbm_bytes": p.elem_bytes * p.batch * (p.m * p.k + p.k * p.n + p.m * p.n),
    }
