"""Tracing: a computation run once on traced numbers, recorded as formulas, replayed compiled.

``results.to_json`` of a transformer workload runs hundreds of small Python steps (the sharding
plan, the expansion into kernels, each kernel's formulas, the step summary). Between two
configurations of one structure (the same chip, mesh, strategies, dtypes, ...) only numbers
change. So the first time a structure is seen twice, the same code runs once more with the
spec's numbers replaced by ``Traced`` values: each carries its value and a formula ``Expr``
recording how it was computed. Arithmetic on them records more formula; a compiled formula
function (``formula.compile_py``) called through ``run`` adds its own steps to the recording.
Every decision the code takes on a traced value (a comparison, ``if x:``, the builtin ``max``)
is recorded as a *guard*: the formula and its outcome (``minimum``/``maximum`` record MIN/MAX
formulas instead, so the recording holds whichever wins). The recording becomes one compiled function that
checks the guards and, when they all hold, computes the result for any numbers of that
structure; when one fails the caller runs the code again (and may record another variant).

Safety: a traced value refuses to become a plain number silently. ``float()``, ``int()``,
``str()``, formatting, numpy conversion and ``//`` or ``%`` of non-integers raise
``TraceLeak``, hashing a TypeError (either way the recording is abandoned and the structure
always takes the ordinary path), so a value can never be baked in as a constant. Code that
converts numbers on purpose calls ``as_float``/``as_int``.

Semantics: values are computed as the ordinary code computes them (Python ints stay ints);
the recorded formula computes in float64. They agree exactly for whole numbers below 2**53
(``a // b`` of ints is recorded as floor(a / b), exact there) and to rounding above.
"""

from __future__ import annotations

import contextlib
import math
import operator
import threading
from typing import Callable

from .formula import BinOp, Call, Cmp, Const, Criterion, Ref, _bin, ceil, eq, floor, fmax, fmin, lift, ne

from .limits import MAX_COUNT

class _State(threading.local):
    active: "Trace | None" = None  # the recording under way in this thread


_STATE = _State()


class TraceLeak(Exception):
    """A traced value was about to become a plain number (its formula would be lost)."""


def active() -> bool:
    return _STATE.active is not None


def _leak(what: str):
    def f(self, *a, **k):
        raise TraceLeak(f"{what} of a traced value ({self.value!r})")
    return f


def _guard(expr, outcome):
    t = _STATE.active
    if t is None:
        raise TraceLeak("a traced value compared outside its trace")
    t.guards.append((expr, bool(outcome)))
    return outcome


def _expr(x):
    return x.expr if type(x) is Traced else lift(x)


def _val(x):
    return x.value if type(x) is Traced else x


def _arith(op: str, py: Callable, record: Callable):
    def fwd(self, o):
        if not isinstance(o, (Traced, int, float)):
            return NotImplemented
        return Traced(py(self.value, _val(o)), record(self.expr, _expr(o)))

    def rev(self, o):
        if not isinstance(o, (int, float)):
            return NotImplemented
        return Traced(py(o, self.value), record(lift(o), self.expr))
    return fwd, rev


def _compare(py: Callable, record: Callable):
    def f(self, o):
        if not isinstance(o, (Traced, int, float, str)):
            return NotImplemented
        return _guard(record(self.expr, _expr(o)), py(self.value, _val(o)))
    return f


def _whole(py: Callable) -> Callable:
    """``py`` (// or %) of whole numbers only: recorded as floor(a / b), which is Python's
    answer for ints below 2**53 but not for floats (1 // 0.1 is 9.0; floor(1 / 0.1) is 10)."""
    def f(a, b):
        if not (isinstance(a, int) and isinstance(b, int)):
            raise TraceLeak(f"{py.__name__} of the non-integers {a!r}, {b!r}")
        return py(a, b)
    return f


def _floordiv(a, b):
    return floor(_bin("/", a, b))


def _mod(a, b):
    return _bin("-", a, _bin("*", b, floor(_bin("/", a, b))))


class Traced:
    """A number (or a formula's text result) with the formula that computed it."""

    __slots__ = ("value", "expr")
    traced = True  # formula.json_value passes it through
    __array_ufunc__ = None  # numpy defers to our operators instead of converting

    def __init__(self, value, expr):
        self.value, self.expr = value, expr

    __add__, __radd__ = _arith("+", operator.add, lambda a, b: _bin("+", a, b))
    __sub__, __rsub__ = _arith("-", operator.sub, lambda a, b: _bin("-", a, b))
    __mul__, __rmul__ = _arith("*", operator.mul, lambda a, b: _bin("*", a, b))
    __truediv__, __rtruediv__ = _arith("/", operator.truediv, lambda a, b: _bin("/", a, b))
    __floordiv__, __rfloordiv__ = _arith("//", _whole(operator.floordiv), _floordiv)
    __mod__, __rmod__ = _arith("%", _whole(operator.mod), _mod)
    __pow__, __rpow__ = _arith("^", operator.pow, lambda a, b: _bin("^", a, b))

    __lt__ = _compare(operator.lt, lambda a, b: Cmp("<", a, b))
    __le__ = _compare(operator.le, lambda a, b: Cmp("<=", a, b))
    __gt__ = _compare(operator.gt, lambda a, b: Cmp(">", a, b))
    __ge__ = _compare(operator.ge, lambda a, b: Cmp(">=", a, b))
    __eq__ = _compare(operator.eq, eq)
    __ne__ = _compare(operator.ne, ne)
    __hash__ = None  # a dict key or set member would be a decision nobody records

    def __neg__(self):
        return Traced(-self.value, _bin("-", Const(0.0), self.expr))

    def __pos__(self):
        return self

    def __abs__(self):
        return Traced(abs(self.value), fmax(self.expr, _bin("-", Const(0.0), self.expr)))

    def __bool__(self):
        return _guard(ne(self.expr, Const(0.0)), bool(self.value))

    def __ceil__(self):
        return Traced(math.ceil(self.value), ceil(self.expr))

    def __floor__(self):
        return Traced(math.floor(self.value), floor(self.expr))

    __float__ = _leak("float()")
    __int__ = _leak("int()")
    __index__ = _leak("use as an index")
    __complex__ = _leak("complex()")
    __round__ = _leak("round()")
    __trunc__ = _leak("trunc()")
    __format__ = _leak("formatting")
    __str__ = _leak("str()")  # repr() stays: it names the value in messages
    __array__ = _leak("numpy conversion")

    def __repr__(self):
        return f"Traced({self.value!r})"


def as_float(x):
    """float(x), keeping a traced value traced."""
    return Traced(float(x.value), x.expr) if type(x) is Traced else float(x)


def as_int(x):
    """int(x) of a whole number, keeping a traced value traced (a traced value must already
    be an int: its formula is the same at every configuration)."""
    if type(x) is Traced:
        if not isinstance(x.value, int) or isinstance(x.value, bool):
            raise TraceLeak(f"int() of the traced non-integer {x.value!r}")
        return x
    return int(x)


def minimum(a, b):
    """min(a, b); of traced values of one type a formula (MIN), not a decision: no guard, so
    the recording holds whichever is smaller. An int against a float stays a decision (Python
    gives the winner's type)."""
    if (type(a) is Traced or type(b) is Traced) and \
            isinstance(_val(a), float) == isinstance(_val(b), float):
        return Traced(min(_val(a), _val(b)), fmin(_expr(a), _expr(b)))
    return min(a, b)


def maximum(a, b):
    """max(a, b); of traced values of one type a formula (MAX), not a decision (see minimum)."""
    if (type(a) is Traced or type(b) is Traced) and \
            isinstance(_val(a), float) == isinstance(_val(b), float):
        return Traced(max(_val(a), _val(b)), fmax(_expr(a), _expr(b)))
    return max(a, b)


def run(f: Callable, inputs: dict) -> dict:
    """``f(inputs)`` for a function ``formula.compile_py`` made; while tracing, its steps are
    recorded over the traced inputs and its outputs come back traced."""
    t = _STATE.active
    if t is None:
        return f(inputs)
    return t.call(f, inputs)


class Trace:
    """One recording: the formula steps of the compiled functions called, and the guards."""

    def __init__(self):
        self.steps: list[tuple[str, object]] = []
        self.consts: dict[str, object] = {}
        self.guards: list[tuple[object, bool]] = []
        self.calls = 0

    def call(self, f: Callable, inputs: dict) -> dict:
        plain = {k: ([_val(x) for x in v] if isinstance(v, list) else _val(v))
                 for k, v in inputs.items()}
        out = f(plain)
        if not any(type(x) is Traced for v in inputs.values()
                   for x in (v if isinstance(v, list) else (v,))):
            return out
        steps, consts, outputs = f.source
        p = f"c{self.calls}:"
        self.calls += 1
        bound: dict[str, object] = {}
        for k, v in inputs.items():
            if isinstance(v, list):  # a range: one list-valued step, read by index
                self.steps.append((p + k, [_expr(x) for x in v]))
                bound[k] = Ref(p + k)
            else:
                bound[k] = _expr(v)
        assigned: dict[str, str] = {}  # variable -> its current name in the recording
        memo: dict[int, object] = {}

        def ref(name):
            if name in assigned:
                return Ref(assigned[name])
            if name in consts:
                self.consts[p + name] = consts[name]
                return Ref(p + name)
            return bound[name]
        for i, (var, e) in enumerate(steps):
            e = _subst(e, ref, memo)  # reads the bindings before this step (as compile_py)
            if var in assigned or var in bound or var in consts:
                memo.clear()  # later steps read this new binding, not the one it replaces
            # each assignment its own name: the recording assigns every name once
            assigned[var] = p + var if var not in assigned else f"{p}{var}#{i}"
            self.steps.append((assigned[var], e))
        return {key: Traced(out[key], Ref(assigned[var])) for key, var in outputs}


def _subst(e, ref: Callable, memo: dict):
    """``e`` with each Ref replaced by ``ref(name)`` (shared nodes stay shared)."""
    if isinstance(e, list):
        return [_subst(x, ref, memo) for x in e]
    if isinstance(e, Ref):
        return ref(e.name)
    if not isinstance(e, (BinOp, Cmp, Call)):
        return e  # Const, Criterion, a number or text
    hit = memo.get(id(e))
    if hit is None:
        if isinstance(e, Call):
            hit = Call(e.fn, tuple(_subst(a, ref, memo) for a in e.args))
        else:
            hit = type(e)(e.op, _subst(e.a, ref, memo), _subst(e.b, ref, memo))
        memo[id(e)] = hit
    return hit


@contextlib.contextmanager
def tracing():
    """Record a trace (one at a time; the ordinary path runs outside it)."""
    if _STATE.active is not None:
        raise TraceLeak("a trace inside a trace")
    _STATE.active = t = Trace()
    try:
        yield t
    finally:
        _STATE.active = None


def traced_inputs(names_values: dict) -> dict:
    """{name: Traced(value, Ref(name))}: the numbers a recording is a function of."""
    return {k: Traced(v, Ref(k)) for k, v in names_values.items()}


def check_numbers(model) -> None:
    """While tracing, a pydantic model built without validation (``model_construct``) from
    traced numbers: its after-validators run on them (their comparisons become guards), and
    each traced number keeps its validity class (positive or zero, below 2**53; the only
    constraints op fields carry), so a configuration that passes the guards would pass
    validation. Below 2**53 strictly, and a shape's product too: the guards compute in
    float64, where a count of 2**53 + 1 rounds to 2**53."""
    for name in type(model).model_fields:
        v = getattr(model, name)
        for x in (v if isinstance(v, list) else (v,)):
            if type(x) is Traced:
                if not x > 0:
                    _ = x == 0
                _ = x < MAX_COUNT
        if isinstance(v, list) and any(type(x) is Traced for x in v):
            _ = math.prod(v) < MAX_COUNT
    for dec in type(model).__pydantic_decorators__.model_validators.values():
        if dec.info.mode == "after":
            dec.func(model)


__all__ = ["Traced", "TraceLeak", "Criterion", "active", "as_float", "as_int", "run", "tracing",
           "traced_inputs", "check_numbers"]
