"""Elementwise: ``inputs`` arrays in, ``outputs`` arrays out, all of one shape.

An unfused chain is several ops (each a round trip through HBM); a fused chain is one op with
all of its inputs and one output: A+B+C unfused moves 6N elements, fused 4N. An op given
``bytes`` (a fused kernel whose operands differ in shape or dtype, as ``perfmodel analyze``
writes XLA's fusions) moves exactly those bytes.
"""

import math

from . import common_inputs, num, register


def _inputs(op, ctx):
    return {**common_inputs(op), "elements": float(math.prod(op.shape)),
            "inputs": num(op.inputs), "outputs": num(op.outputs),
            "flops_per_element": num(op.flops_per_element),
            **({"bytes": num(op.bytes)} if op.bytes is not None else {})}


@register("elementwise", _inputs)
def elementwise(p, hw, op):
    flops = p.flops_per_element * p.elements
    return {
        "flops": flops,
        "flops_exec": flops,
        "hbm_bytes": (p.bytes if op.bytes is not None
                      else p.elem_bytes * p.elements * (p.inputs + p.outputs)),
    }
