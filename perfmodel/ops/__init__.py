"""Op cost models: one small module per family, registered by op kind.

Each model is two pure functions. ``inputs(op, ctx)`` turns a validated op spec into its numeric
input cells (SI, dtype resolved to bytes per element); ``ctx`` is an ``OpContext`` with the workload
(slice, mesh) and the hardware, for ops whose inputs depend on them (collectives). ``cost(p, hw, op)`` is arithmetic over
those inputs and the hardware's symbols; it returns the op's cost columns (``flops``,
``flops_exec``, ``hbm_bytes`` and any extras). Written once, it runs on numbers, numpy arrays
(sweeps) or formula ``Ref``s (the workbook). ``op`` is passed only for structural choices
(e.g. the attention ``impl``) that change the shape of the formula, not its inputs.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..specs import elem_bytes
from ..trace import as_float


@dataclass(frozen=True)
class OpModel:
    kind: str
    inputs: Callable  # (op spec, OpContext) -> dict[str, float]
    cost: Callable    # (p, hw, op) -> dict[str, expr|number]
    # (op spec, OpContext) -> descriptive, non-formula fields for JSON rows (e.g. a collective's
    # per-axis wraparound flags); None for most kinds
    info: Callable | None = None


@dataclass(frozen=True)
class OpContext:
    workload: object  # specs.Workload
    hardware: object  # specs.Hardware


REGISTRY: dict[str, OpModel] = {}


def register(kind: str, inputs: Callable, info: Callable | None = None):
    """Decorator for a cost function; ``inputs`` builds its numeric input cells."""

    def deco(cost: Callable) -> Callable:
        REGISTRY[kind] = OpModel(kind, inputs, cost, info)
        return cost

    return deco


def num(x):
    """A field as float, or as a float array when a sweep passes an array of values (traced
    while perfmodel.trace records)."""
    return np.asarray(x, dtype=float) if isinstance(x, np.ndarray) else as_float(x)


def common_inputs(op) -> dict[str, float]:
    out = {"elem_bytes": float(elem_bytes(op.dtype))}
    # identical instances in sequence: an input cell only when not 1 (the engine multiplies
    # the extensive cost columns by it; see engine.REPEATED_COLUMNS)
    rep = getattr(op, "repeat", 1)
    if isinstance(rep, np.ndarray) or rep != 1:
        out["repeat"] = num(rep)
    return out


def operand_bytes(p, *terms, per=None):
    """Bytes of operands whose dtypes may differ: ``terms`` are (width cell, elements), the
    width being that cell when the op has it (kv_bytes, out_bytes: written only for a dtype other
    than the op's own), else elem_bytes. Operands of one width are summed before they are
    multiplied, so an op of one dtype stays elem_bytes*(a+b); ``per`` (elements per operand)
    multiplies them all."""
    groups: dict = {}
    for cell, n in terms:
        w = cell if cell in p else "elem_bytes"
        groups[w] = groups[w] + n if w in groups else n
    if len(groups) == 1:
        (w, n), = groups.items()
        return p[w] * n if per is None else p[w] * per * n
    total = functools.reduce(operator.add, (p[w] * n for w, n in groups.items()))
    return total if per is None else per * total


from . import attention, collectives, elementwise, matmul  # noqa: E402,F401  (register the models)
