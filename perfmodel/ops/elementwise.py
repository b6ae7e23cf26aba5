"""Elementwise: ``inputs`` arrays in, ``outputs`` arrays out, all of one shape.

Priced on the vector unit (perfmodel.precision). Inputs are in ``dtype``, outputs in
``out_dtype`` (default ``dtype``: a cast reads one and writes the other).

An unfused chain is several ops (each a round trip through HBM); a fused chain is one op with
all of its inputs and one output: A+B+C unfused moves 6N elements, fused 4N. An op given
``bytes`` (a fused kernel whose operands differ in shape or dtype, as ``perfmodel analyze``
writes XLA's fusions) moves exactly those bytes.
"""

import math

from ..specs import elem_bytes
from . import common_inputs, num, operand_bytes, register


def _inputs(op, ctx):
    out = {}
    if op.out_dtype is not None and op.out_dtype != op.dtype:  # a cell only when it differs
        out["out_bytes"] = float(elem_bytes(op.out_dtype))
    return {**common_inputs(op), **out, "elements": num(math.prod(op.shape)),
            "inputs": num(op.inputs), "outputs": num(op.outputs),
            "flops_per_element": num(op.flops_per_element),
            **({"bytes": num(op.bytes)} if op.bytes is not None else {})}


@register("elementwise", _inputs)
def elementwise(p, hw, op):
    flops = p.flops_per_element * p.elements
    return {
        "flops": flops,
        "flops_exec": flops,
        "hbm_bytes": (p.bytes if op.bytes is not None else
                      operand_bytes(p, ("elem_bytes", p.inputs), ("out_bytes", p.outputs),
                                    per=p.elements)),
    }
