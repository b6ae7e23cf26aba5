"""The expression layer: each formula is written once and rendered as numbers or as Excel.

Op models are plain arithmetic over their inputs. Called with numbers (or numpy arrays, for
vectorised sweeps) they return numbers; called with ``Ref`` symbols they return an expression
tree that ``to_excel`` renders to an Excel formula string and ``evaluate`` computes, so the
workbook and the Python numbers come from the same definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

# Binding strength of each operator when rendered; higher binds tighter (Excel's order).
_PREC = {"cmp": 1, "+": 2, "-": 2, "*": 3, "/": 3, "^": 4, "atom": 9}


class Expr:
    """Base of the expression tree; Python operators build nodes."""

    __slots__ = ()
    __array_ufunc__ = None  # numpy scalars/arrays defer to our reflected operators

    def __add__(self, o): return _bin("+", self, o)
    def __radd__(self, o): return _bin("+", o, self)
    def __sub__(self, o): return _bin("-", self, o)
    def __rsub__(self, o): return _bin("-", o, self)
    def __mul__(self, o): return _bin("*", self, o)
    def __rmul__(self, o): return _bin("*", o, self)
    def __truediv__(self, o): return _bin("/", self, o)
    def __rtruediv__(self, o): return _bin("/", o, self)
    def __pow__(self, o): return _bin("^", self, o)
    def __rpow__(self, o): return _bin("^", o, self)
    def __lt__(self, o): return Cmp("<", self, lift(o))
    def __le__(self, o): return Cmp("<=", self, lift(o))
    def __gt__(self, o): return Cmp(">", self, lift(o))
    def __ge__(self, o): return Cmp(">=", self, lift(o))
    __hash__ = object.__hash__


@dataclass(frozen=True, eq=False, slots=True)
class Const(Expr):
    value: float | str | bool


@dataclass(frozen=True, eq=False, slots=True)
class Ref(Expr):
    """A named input (hardware parameter, op field, or an earlier derived column)."""

    name: str


@dataclass(frozen=True, eq=False, slots=True)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=False, slots=True)
class Cmp(Expr):
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True, eq=False, slots=True)
class Call(Expr):
    fn: str  # one of _FUNCS
    args: tuple[Expr, ...]


def lift(x) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, (bool, str)):
        return Const(x)
    return Const(float(x))


def _bin(op: str, a, b) -> Expr:
    a, b = lift(a), lift(b)
    # fold constants so rendered formulas stay short (2*64 -> 128), exact in float64
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(float(_NUM_OPS[op](np.float64(a.value), np.float64(b.value))))
    if op == "*" and isinstance(a, Const) and a.value == 1:
        return b
    if op in ("*", "/") and isinstance(b, Const) and b.value == 1:
        return a
    return BinOp(op, a, b)


_NUM_OPS: dict[str, Callable] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
}

# name -> (numpy implementation, Excel rendering from rendered args)
_FUNCS: dict[str, tuple[Callable, Callable[[list[str]], str]]] = {
    "max": (lambda *a: _reduce(np.maximum, a), lambda a: f"MAX({','.join(a)})"),
    "min": (lambda *a: _reduce(np.minimum, a), lambda a: f"MIN({','.join(a)})"),
    "ceil": (np.ceil, lambda a: f"ROUNDUP({a[0]},0)"),
    "sqrt": (np.sqrt, lambda a: f"SQRT({a[0]})"),
    "floor": (np.floor, lambda a: f"ROUNDDOWN({a[0]},0)"),
    "where": (lambda c, x, y: _where(c, x, y), lambda a: f"IF({a[0]},{a[1]},{a[2]})"),
    "and": (lambda *a: _reduce(np.logical_and, a), lambda a: f"AND({','.join(a)})"),
}


def _reduce(f, args):
    out = args[0]
    for x in args[1:]:
        out = f(out, x)
    return out


def _where(c, x, y):
    out = np.where(c, x, y)
    return out.item() if out.ndim == 0 else out


def _is_sym(args) -> bool:
    return any(isinstance(a, Expr) for a in args)


def _call(fn: str, *args):
    if _is_sym(args):
        return Call(fn, tuple(lift(a) for a in args))
    with np.errstate(all="ignore"):
        return _FUNCS[fn][0](*args)


def fmax(*args): return _call("max", *args)
def fmin(*args): return _call("min", *args)
def ceil(x): return _call("ceil", x)
def floor(x): return _call("floor", x)
def sqrt(x): return _call("sqrt", x)
def where(cond, a, b): return _call("where", cond, a, b)
def fand(*args): return _call("and", *args)


# ---- evaluation ---------------------------------------------------------------------------

def evaluate(e: Expr, env: Mapping[str, object]):
    """Compute an expression with numbers (or numpy arrays) bound to its Refs."""
    with np.errstate(all="ignore"):
        return _eval(e, env)


def _eval(e, env):
    if isinstance(e, Const):
        return np.float64(e.value) if isinstance(e.value, float) else e.value
    if isinstance(e, Ref):
        try:
            return env[e.name]
        except KeyError:
            raise KeyError(f"formula refers to {e.name!r}, which has no value") from None
    if isinstance(e, (BinOp, Cmp)):
        return _NUM_OPS[e.op](_eval(e.a, env), _eval(e.b, env))
    if isinstance(e, Call):
        return _FUNCS[e.fn][0](*(_eval(a, env) for a in e.args))
    return e  # already a number


def refs(e: Expr) -> set[str]:
    """Names an expression depends on."""
    if isinstance(e, Ref):
        return {e.name}
    if isinstance(e, (BinOp, Cmp)):
        return refs(e.a) | refs(e.b)
    if isinstance(e, Call):
        return set().union(*(refs(a) for a in e.args))
    return set()


# ---- Excel rendering ----------------------------------------------------------------------

def to_excel(e, resolve: Callable[[str], str], *, leading_eq: bool = True) -> str:
    """Render as an Excel formula; ``resolve`` maps a Ref name to a cell address or name."""
    body, _ = _render(lift(e), resolve)
    return "=" + body if leading_eq else body


def _num(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _render(e: Expr, resolve) -> tuple[str, int]:
    if isinstance(e, Const):
        v = e.value
        if isinstance(v, bool):
            return ("TRUE" if v else "FALSE"), _PREC["atom"]
        if isinstance(v, str):
            return '"' + v.replace('"', '""') + '"', _PREC["atom"]
        s = _num(v)
        return (f"({s})" if v < 0 else s), _PREC["atom"]
    if isinstance(e, Ref):
        return resolve(e.name), _PREC["atom"]
    if isinstance(e, Call):
        args = [_render(a, resolve)[0] for a in e.args]
        return _FUNCS[e.fn][1](args), _PREC["atom"]
    if isinstance(e, (BinOp, Cmp)):
        prec = _PREC["cmp"] if isinstance(e, Cmp) else _PREC[e.op]
        a, pa = _render(e.a, resolve)
        b, pb = _render(e.b, resolve)
        if pa < prec or (e.op == "^" and pa <= prec):
            a = f"({a})"
        # at equal rank the right operand keeps its brackets: Excel then groups (and rounds)
        # exactly as numpy did
        if pb <= prec:
            b = f"({b})"
        return f"{a}{e.op}{b}", prec
    raise TypeError(f"cannot render {e!r}")


class NS(dict):
    """A dict with attribute access: op models read ``p.m`` and ``hw['hbm_bandwidth']``."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def symbols(names) -> NS:
    """A namespace of Refs, one per name: the symbolic twin of a namespace of numbers."""
    return NS({n: Ref(n) for n in names})
