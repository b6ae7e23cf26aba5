"""The expression layer: each formula is written once and rendered as numbers or as Excel.

Op models are plain arithmetic over their inputs. Called with numbers (or numpy arrays, for
vectorised sweeps) they return numbers; called with ``Ref`` symbols they return an expression
tree that ``to_excel`` renders to an Excel formula string and ``evaluate`` computes, so the
workbook and the Python numbers come from the same definition.

Range primitives (``rsum``, ``rmax``, ``sumif``, ``lookup``) reduce a column of rows: a Ref
bound to a 1-D array in ``evaluate`` (reduced along axis 0) and to a cell range such as
``Model!$H$10:$H$40`` in ``to_excel``. This is the only module that writes Excel function or
operator text; other modules pass plain references (cells, ranges, defined names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

# Binding strength of each operator when rendered; higher binds tighter (Excel's order).
_PREC = {"cmp": 1, "+": 2, "-": 2, "*": 3, "/": 3, "^": 4, "neg": 5, "atom": 9}


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
    "=": lambda a, b: _equal(a, b), "<>": lambda a, b: np.logical_not(_equal(a, b)),
}


def _equal(a, b):
    """Excel's ``=``: text compares without regard to case."""
    if isinstance(b, Labels) and not isinstance(a, Labels):
        a, b = b, a
    if isinstance(a, Labels):
        if isinstance(b, str):
            hit = [i for i, n in enumerate(a.names) if n.lower() == b.lower()]
            return a.codes == hit[0] if len(hit) == 1 else np.isin(a.codes, hit)
        a = np.asarray(a)
        b = np.asarray(b) if isinstance(b, Labels) else b
    if isinstance(b, str) and isinstance(a, np.ndarray) and a.dtype.kind == "U":
        # a column of labels against one: exact matches first; only same-length others can
        # differ by case alone (lower-casing thousands of labels costs milliseconds)
        out = a == b
        maybe = ~out & (np.strings.str_len(a) == len(b))
        if maybe.any():
            out[maybe] = np.strings.lower(a[maybe]) == b.lower()
        return out
    if isinstance(a, str) and isinstance(b, np.ndarray) and b.dtype.kind == "U":
        return _equal(b, a)
    if _is_text(a) or _is_text(b):
        out = np.char.lower(np.asarray(a, dtype=str)) == np.char.lower(np.asarray(b, dtype=str))
        return out.item() if np.ndim(out) == 0 else out
    return np.equal(a, b)


def _is_text(x) -> bool:
    return isinstance(x, str) or (isinstance(x, np.ndarray) and x.dtype.kind in "USO"
                                  and x.size > 0 and isinstance(x.flat[0], str))


# name -> (numpy implementation, Excel rendering from rendered args)
_FUNCS: dict[str, tuple[Callable, Callable[[list[str]], str]]] = {
    "max": (lambda *a: _reduce(np.maximum, a), lambda a: f"MAX({','.join(a)})"),
    "min": (lambda *a: _reduce(np.minimum, a), lambda a: f"MIN({','.join(a)})"),
    # INT rounds down (toward -inf) as np.floor does; ROUNDUP/ROUNDDOWN round away from /
    # toward zero, which differs for negative numbers
    "ceil": (np.ceil, lambda a: f"-INT(-{a[0]})"),
    "floor": (np.floor, lambda a: f"INT({a[0]})"),
    "sqrt": (np.sqrt, lambda a: f"SQRT({a[0]})"),
    "where": (lambda c, x, y: _where(c, x, y), lambda a: f"IF({a[0]},{a[1]},{a[2]})"),
    "and": (lambda *a: _reduce(np.logical_and, a), lambda a: f"AND({','.join(a)})"),
    "na": (lambda: np.float64(np.nan), lambda a: "NA()"),
    "is_blank": (lambda x: _blank(x), lambda a: f"ISBLANK({a[0]})"),
    # range reductions: the argument is a column of rows (axis 0)
    "rsum": (lambda x: np.sum(_rows(x), axis=0), lambda a: f"SUM({a[0]})"),
    "rmax": (lambda x: np.max(_rows(x), axis=0), lambda a: f"MAX({a[0]})"),
    "sumif": (lambda v, *c: _sumif(v, c), lambda a: _sumifs_text(a)),
    "lookup": (lambda v, k, key: _lookup(v, k, key),
               lambda a: f"INDEX({a[0]},MATCH({a[2]},{a[1]},0))"),
}


def json_value(v):
    """A cell's value for JSON: a bool, text, or a float (None where not finite, as a cell
    holding an error or nothing)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    if v is None or getattr(v, "traced", False):  # a traced number (perfmodel.trace) stays
        return v  # traced: its recording applies this rule to the number it computes
    v = float(v)
    return v if math.isfinite(v) else None


def json_code(var: str, like) -> str:
    """json_value's rule as Python source over the variable ``var`` (compiled code that writes
    JSON, perfmodel.results): ``like`` is a value of the kind it holds (a whole number stays
    one; text and bools as they are; a float None where not finite)."""
    if isinstance(like, int) and not isinstance(like, bool):
        return f"_py_int({var})"
    if isinstance(like, (bool, str)):
        return var
    return f"({var} if {var} - {var} == 0.0 else None)"


def _rows(x) -> np.ndarray:
    """A column of rows as one float array; rows given as a list may be numbers or arrays
    (one value per configuration), broadcast together."""
    if isinstance(x, (list, tuple)) and any(isinstance(v, np.ndarray) and v.ndim for v in x):
        return np.asarray(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in x)))
    return np.asarray(x, dtype=float)


def _blank(x):
    if x is None:
        return True
    if isinstance(x, str):
        return False
    out = np.isnan(np.asarray(x, dtype=float))
    return out.item() if out.ndim == 0 else out


def _lookup(values, keys, key):
    hit = np.flatnonzero(_equal(np.asarray(keys), key))
    return np.float64(np.nan) if not hit.size else np.asarray(values)[hit[0]]


def _sumif(values, conds):
    # conds: (range, criterion, range, criterion, ...); a criterion is ("=" | "<>", value)
    v = np.asarray(values, dtype=float)
    mask = np.ones(v.shape[0], dtype=bool)
    for rng, (op, value) in zip(conds[::2], conds[1::2]):
        mask &= np.asarray(_NUM_OPS[op](np.asarray(rng), value), dtype=bool)
    return np.sum(np.where(mask.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0), axis=0)


def _sumifs_text(a: list[str]) -> str:
    return f"SUMIFS({a[0]},{','.join(a[1:])})"


def _reduce(f, args):
    out = args[0]
    for x in args[1:]:
        out = f(out, x)
    return out


class Labels:
    """Text per configuration, as small-integer codes into a few names: what a ``where``
    between labels ('compute' or 'memory') gives on arrays. Compared and chosen as integers;
    text only when asked for (``np.asarray``, iteration, an element)."""

    __slots__ = ("codes", "names")

    def __init__(self, codes: np.ndarray, names: tuple):
        self.codes, self.names = codes, names

    @staticmethod
    def of(x, names: tuple):
        """``x`` (text, or Labels) as codes into ``names`` (an int8, or an array of them)."""
        if isinstance(x, str):
            return np.int8(names.index(x))
        return np.array([names.index(n) for n in x.names], dtype=np.int8)[x.codes]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(np.array(self.names, dtype=str)[self.codes], dtype=dtype)

    ndim = property(lambda self: self.codes.ndim)
    shape = property(lambda self: self.codes.shape)
    size = property(lambda self: self.codes.size)

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, i):
        c = self.codes[i]
        return self.names[c] if np.ndim(c) == 0 else Labels(c, self.names)

    def __iter__(self):
        return (self.names[c] for c in self.codes.tolist())

    def tolist(self) -> list:
        return list(self)

    def __eq__(self, other):
        return _equal(self, other)

    def __ne__(self, other):
        return np.logical_not(_equal(self, other))

    __hash__ = None


def _where(c, x, y):
    if np.ndim(c) == 0:  # one condition: the chosen branch as it is (text or number)
        return x if c else y
    if isinstance(x, (str, Labels)) and isinstance(y, (str, Labels)):  # labels: as codes
        names = tuple(dict.fromkeys([*(x.names if isinstance(x, Labels) else (x,)),
                                     *(y.names if isinstance(y, Labels) else (y,))]))
        return Labels(np.where(c, Labels.of(x, names), Labels.of(y, names)), names)
    try:
        out = np.where(c, x, y)
    except TypeError:  # text in one branch, numbers in the other
        out = np.where(c, np.asarray(x, dtype=object), np.asarray(y, dtype=object))
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
def eq(a, b): return _cmp("=", a, b)
def ne(a, b): return _cmp("<>", a, b)
def na(): return Call("na", ())
def is_blank(x): return _call("is_blank", x)


def _cmp(op, a, b):
    if _is_sym((a, b)):
        return Cmp(op, lift(a), lift(b))
    return _NUM_OPS[op](a, b)


# ---- range primitives: ``x`` is a column of rows (a Ref to a range in the workbook) --------

def rsum(x): return _call("rsum", x)
def rmax(x): return _call("rmax", x)


def lookup(values, keys, key):
    """``values`` at the first row whose ``keys`` equals ``key`` (INDEX/MATCH)."""
    return _call("lookup", values, keys, key)


def sumif(values, *conds):
    """Sum of ``values`` over the rows meeting every condition; a condition is
    ``(range, value)`` (equal) or ``(range, "<>", value)`` (different); text compares
    without regard to case, as Excel does."""
    flat: list = []
    for c in conds:
        rng, op, value = (c[0], "=", c[1]) if len(c) == 2 else c
        if op not in ("=", "<>") or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"sumif condition {c!r}: use (range, value) or (range, '<>', value)")
        flat += [rng, Criterion(op, value)]
    if _is_sym([values, *flat[::2]]):
        return Call("sumif", (lift(values), *(lift(x) for x in flat)))
    with np.errstate(all="ignore"):
        return _sumif(values, [x if i % 2 == 0 else (x.op, x.value) for i, x in enumerate(flat)])


@dataclass(frozen=True, eq=False, slots=True)
class Criterion(Expr):
    """A SUMIFS criterion: ``op`` ("=" or "<>") and a literal value."""

    op: str
    value: float | str


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
    if isinstance(e, Criterion):
        return (e.op, e.value)
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
    if isinstance(e, Criterion):
        # a literal criterion string: "=" or "<>" then the value, Excel's wildcards escaped
        v = e.value if isinstance(e.value, str) else _num(e.value)
        v = v.replace("~", "~~").replace("*", "~*").replace("?", "~?")
        return '"' + (e.op + v).replace('"', '""') + '"', _PREC["atom"]
    if isinstance(e, Call):
        if e.fn == "ceil":  # -INT(-x): x bracketed unless an atom; the sign binds before ^
            a, pa = _render(e.args[0], resolve)
            return _FUNCS["ceil"][1]([a if pa >= _PREC["neg"] else f"({a})"]), _PREC["neg"]
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


# ---- Python rendering: formulas compiled to one plain-Python function ---------------------
#
# The third rendering of the same trees (beside numbers and Excel): straight-line Python over
# floats, built once per formula structure and cached by the caller, so a single evaluation
# costs a function call instead of a walk through numpy scalars. The helpers give numpy's
# float64 answers where plain Python would raise (x/0, 0**-1, sqrt(-1)) or differ (NaN in
# max/min), so both paths agree to the bit.

def _py_div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _py_pow(a, b):
    try:
        r = a ** b
        if not isinstance(r, complex):
            return float(r)
    except (ZeroDivisionError, OverflowError):
        pass
    # the cases Python refuses or makes complex: numpy's answer (signed infinities, NaN)
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(a), np.float64(b)))


def _py_max(*xs):
    out = xs[0]
    for x in xs[1:]:
        if out != out or x != x:
            return math.nan
        if x > out:
            out = x
    return out


def _py_min(*xs):
    out = xs[0]
    for x in xs[1:]:
        if out != out or x != x:
            return math.nan
        if x < out:
            out = x
    return out


def _py_round(f):
    def r(x):
        if not math.isfinite(x):
            return x
        v = float(f(x))
        return math.copysign(v, x) if v == 0.0 else v  # ceil(-0.5) is -0.0, as numpy has it
    return r


def _py_sqrt(x):
    return math.sqrt(x) if x >= 0 else math.nan


def _py_eq(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return str(a).lower() == str(b).lower()
    return a == b


def _py_blank(x):
    return x is None or (isinstance(x, float) and x != x)


def _py_sumif(values, *conds):
    tests = [(rng, op == "=", value.lower() if isinstance(value, str) else value)
             for rng, (op, value) in zip(conds[::2], conds[1::2])]
    total = 0.0
    for i, v in enumerate(values):
        for rng, want, value in tests:
            x = rng[i]
            hit = x.lower() == value if isinstance(x, str) and isinstance(value, str) \
                else _py_eq(x, value)
            if hit != want:
                break
        else:
            total += v
    return total


def _py_lookup(values, keys, key):
    for v, k in zip(values, keys):
        if _py_eq(k, key):
            return v
    return math.nan


def _py_rmax(x):
    return _py_max(*(float(v) for v in x))


_PY_FUNCS = {"max": "_py_max", "min": "_py_min", "ceil": "_py_ceil", "floor": "_py_floor",
             "sqrt": "_py_sqrt", "and": "_py_and", "na": "_py_na", "is_blank": "_py_blank",
             "rsum": "_py_rsum", "rmax": "_py_rmax", "sumif": "_py_sumif",
             "lookup": "_py_lookup"}
_PY_ENV = {"_py_div": _py_div, "_py_pow": _py_pow, "_py_max": _py_max, "_py_min": _py_min,
           "_py_ceil": _py_round(math.ceil), "_py_floor": _py_round(math.floor),
           "_py_sqrt": _py_sqrt, "_py_and": lambda *a: all(a), "_py_na": lambda: math.nan,
           "_py_blank": _py_blank, "_py_rsum": lambda x: float(sum(float(v) for v in x)),
           "_py_rmax": _py_rmax, "_py_sumif": _py_sumif, "_py_lookup": _py_lookup,
           "_py_eq": _py_eq, "_inf": math.inf, "_nan": math.nan,
           "_py_int": lambda v: round(v) if v - v == 0.0 else None}  # JSON: a whole number


def _py_const(v) -> str:
    if isinstance(v, (bool, str)):
        return repr(v)
    if isinstance(v, tuple):  # a constant range
        return "[" + ", ".join(_py_const(x) for x in v) + "]"
    v = float(v)
    if v != v:
        return "_nan"
    if math.isinf(v):
        return "_inf" if v > 0 else "(-_inf)"
    return repr(v) if v >= 0 else f"({v!r})"


_NP_ENV = {"_np_cell": lambda v: v if isinstance(v, (np.ndarray, list, tuple, str))
           else np.float64(v),
           "_np_pow": np.power, "_np_div": np.divide, "_np_eq": _equal,
           "_np_not": np.logical_not,
           "_errstate": np.errstate, "_nan": math.nan, "_inf": math.inf,
           **{f"_np_{fn}": impl for fn, (impl, _) in _FUNCS.items()}}


class _Emitter:
    """Renders trees as Python statements (``arrays``: numpy's functions, as ``evaluate``
    calls them, for arrays; else the plain-float helpers). A subtree the formulas share (the
    same node reached twice) is computed once into a temporary."""

    def __init__(self, name: Callable[[str], str], arrays: bool, shared: set[int],
                 ranges: Mapping[str, tuple]):
        self.name, self.arrays, self.shared, self.ranges = name, arrays, shared, ranges
        self.lines: list[str] = []
        self.temps: dict[int, str] = {}

    def __call__(self, e) -> str:
        if isinstance(e, (BinOp, Cmp, Call)) and id(e) in self.shared:
            if id(e) not in self.temps:
                code = self.render(e)
                self.temps[id(e)] = t = f"_t{len(self.temps)}"
                self.lines.append(f"{t} = {code}")
            return self.temps[id(e)]
        return self.render(e)

    def render(self, e) -> str:
        if isinstance(e, Const):
            return _py_const(e.value)
        if isinstance(e, Ref):
            return self.name(e.name)
        if isinstance(e, Criterion):
            return repr((e.op, e.value))
        if isinstance(e, (BinOp, Cmp)):
            a, b = self(e.a), self(e.b)
            if e.op == "=":
                return f"_np_eq({a}, {b})" if self.arrays else f"_py_eq({a}, {b})"
            if e.op == "<>":
                return f"_np_not(_np_eq({a}, {b}))" if self.arrays else f"(not _py_eq({a}, {b}))"
            if e.op == "^":
                return f"_np_pow({a}, {b})" if self.arrays else f"_py_pow({a}, {b})"
            if e.op == "/":  # Python floats (constants, an empty SUMIFS) must not raise
                return f"_np_div({a}, {b})" if self.arrays else f"_py_div({a}, {b})"
            return f"({a} {e.op} {b})"
        if isinstance(e, Call):
            if e.fn == "sumif" and any(self._const_range(r) for r in e.args[1::2]):
                return self.sumif(e.args[0], list(zip(e.args[1::2], e.args[2::2])))
            args = [self(a) for a in e.args]
            if self.arrays:
                return f"_np_{e.fn}({', '.join(args)})"
            if e.fn == "where":
                c, x, y = args
                return f"({x} if {c} else {y})"
            return f"{_PY_FUNCS[e.fn]}({', '.join(args)})"
        if isinstance(e, list):  # a range built from cells
            return "[" + ", ".join(self(lift(a)) for a in e) + "]"
        if isinstance(e, (bool, str, int, float, np.floating, np.integer)):
            return _py_const(e)
        raise TypeError(f"cannot compile {e!r}")


    def _const_range(self, e):
        return self.ranges.get(e.name) if isinstance(e, Ref) else None

    def sumif(self, values, conds) -> str:
        """SUMIFS over ranges some of which are constants (a ledger's groups and kinds): the
        rows those conditions choose are known here, so the sum is written out over them (in
        row order, as _py_sumif adds), each term kept only if the other conditions hold."""
        const = [(self._const_range(r), c) for r, c in conds if self._const_range(r)]
        rest = [(self(r), c) for r, c in conds if not self._const_range(r)]
        rows = [i for i in range(len(const[0][0]))
                if all(_py_eq(rng[i], c.value) == (c.op == "=") for rng, c in const)]
        vals, terms = self(values), []
        for i in rows:
            t = f"{vals}[{i}]"
            for rng, c in rest:
                eq = f"_np_eq({rng}[{i}], {c.value!r})" if self.arrays else \
                    f"_py_eq({rng}[{i}], {c.value!r})"
                if c.op == "<>":
                    eq = f"_np_not({eq})" if self.arrays else f"(not {eq})"
                t = f"_np_where({eq}, {t}, 0.0)" if self.arrays else f"({t} if {eq} else 0.0)"
            terms.append(t)
        return "(" + " + ".join(["0.0", *terms]) + ")"


def _shared_nodes(trees) -> set[int]:
    """ids of the nodes reached more than once from ``trees``."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = list(trees)
    while stack:
        e = stack.pop()
        if isinstance(e, list):
            stack.extend(e)
        elif isinstance(e, (BinOp, Cmp, Call)):
            if id(e) in seen:
                shared.add(id(e))
                continue
            seen.add(id(e))
            stack.extend([e.a, e.b] if isinstance(e, (BinOp, Cmp)) else e.args)
    return shared


def compile_needed(steps: list, outputs: list[str]) -> list:
    """The steps the outputs depend on, in order (a variable assigned again depends on the
    binding before it)."""
    need, keep = set(outputs), []
    for var, e in reversed(steps):
        if var in need:
            need.discard(var)
            need |= set().union(*(refs(lift(a)) for a in e)) if isinstance(e, list) \
                else refs(lift(e))
            keep.append((var, e))
    return keep[::-1]


def _folded(e, known: Mapping[str, object]):
    """The value of ``e`` when everything it reads is a known constant (None otherwise), as
    ``evaluate`` computes it."""
    if isinstance(e, list) or not isinstance(e, (BinOp, Cmp, Call, Ref, Const)):
        return None
    if not refs(e) <= known.keys():
        return None
    v = evaluate(e, known)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    if isinstance(v, (float, int, np.floating, np.integer)):
        return float(v)
    return None


def split_steps(steps: list[tuple[str, object]], arrays: set[str]) -> tuple[list, list]:
    """(steps computed once, steps over arrays): a program whose inputs named ``arrays`` are
    arrays, cut so that everything that reads no array (whole steps, and the array-free
    subtrees of the others, each a new step ``hoist:N``) is computed once in floats; the
    array steps read those by name. Each name must be assigned once (a recording's are:
    perfmodel.trace), so that a step moved to the first part reads what it read in place."""
    if len({v for v, _ in steps}) != len(steps):
        raise ValueError("split_steps needs each name assigned once")
    dep, once, many = set(arrays), [], []
    memo: dict[int, tuple] = {}

    def cut(e):
        """(e with its array-free compound subtrees hoisted, whether it reads an array)."""
        if isinstance(e, list):
            parts = [cut(x) for x in e]
            return [x for x, _ in parts], any(d for _, d in parts)
        if isinstance(e, Ref):
            return e, e.name in dep
        if not isinstance(e, (BinOp, Cmp, Call)):
            return e, False
        hit = memo.get(id(e))
        if hit is None:
            kids = [cut(x) for x in ((e.a, e.b) if isinstance(e, (BinOp, Cmp)) else e.args)]
            if not any(d for _, d in kids):
                hit = (e, False)
            else:
                new = [x if d or not isinstance(x, (BinOp, Cmp, Call)) else _hoist(x)
                       for x, d in kids]
                hit = ((type(e)(e.op, *new) if isinstance(e, (BinOp, Cmp))
                        else Call(e.fn, tuple(new))), True)
            memo[id(e)] = hit
        return hit

    hoisted: dict[int, Ref] = {}

    def _hoist(x):
        if id(x) not in hoisted:  # a subtree shared by several array steps: hoisted once
            hoisted[id(x)] = Ref(f"hoist:{len(hoisted)}")
            once.append((hoisted[id(x)].name, x))
        return hoisted[id(x)]
    for var, e in steps:
        new, d = cut(e)
        if d:
            many.append((var, new))
            dep.add(var)
        else:
            once.append((var, e))
    return once, many


def compile_py(steps: list[tuple[str, object]], consts: Mapping[str, object],
               outputs: list[tuple[str, str]], *, floats: bool = False, arrays: bool = False,
               returns: Callable[[Callable[[str], str]], str] | None = None
               ) -> Callable[[Mapping], dict]:
    """One Python function ``f(inputs) -> {key: value}`` computing ``steps`` in order.

    ``steps``: (variable, expression) pairs; a Ref names an earlier step's variable, else a
    constant of ``consts`` (written into the code as a literal; a tuple is a constant range,
    over which a SUMIFS is written out row by row), else an input read from the
    mapping ``f`` is called with (``floats``: each read as a float, as a float64 cell holds
    it). ``outputs``: (key, variable) pairs of the returned dict.
    Numbers come out as numpy's float64 arithmetic gives them (the numeric path's answers):
    with ``arrays`` the code calls numpy as ``evaluate`` does (inputs may be arrays), else
    plain-float helpers with numpy's answers. Range sums add their rows in order, where numpy
    sums eight or more pairwise: those agree to rounding, not to the bit.
    ``returns``: instead of the dict, the function returns this Python expression (given how
    to name an output variable; formula.json_code writes JSON values in it). The
    function keeps its program as ``f.source`` = (steps, consts, outputs), for perfmodel.trace.
    """
    local: dict[str, str] = {}
    reads: dict[str, str] = {}

    def name(n: str) -> str:
        if n in local:
            return local[n]
        if n in consts:
            return _py_const(consts[n])
        if n not in reads:
            reads[n] = f"_i{len(reads)}"
        return reads[n]

    steps = compile_needed(steps, [v for _, v in outputs])
    trees = [e if isinstance(e, list) else lift(e) for _, e in steps]
    emit = _Emitter(name, arrays, _shared_nodes(trees),
                    {k: v for k, v in consts.items() if isinstance(v, tuple)})
    known: dict[str, object] = {k: v for k, v in consts.items() if not isinstance(v, tuple)}
    for i, ((var, _), e) in enumerate(zip(steps, trees)):
        again = var in local or var in reads
        if isinstance(e, Ref) and e.name in local:
            code = None  # another name for a variable: none made
            if e.name in known:
                known[var] = known[e.name]
            else:
                known.pop(var, None)
        else:
            value = _folded(e, known)
            if value is not None:  # every input a constant: computed here, once
                code = _py_const(value)
                known[var] = value
            else:
                code = emit(e)
                known.pop(var, None)
        if again:  # assigned again (or over an input): earlier reads keep theirs, and
            emit.temps.clear()  # a shared subtree reading it is computed afresh
        if code is None:
            local[var] = local[e.name]
        elif var in known:
            local[var] = code
        else:
            local[var] = f"_v{i}"
            emit.lines.append(f"{local[var]} = {code}")
    read = "_np_cell(_in[{!r}])" if arrays else "float(_in[{!r}])" if floats else "_in[{!r}]"
    body = [f"{v} = {read.format(n)}" for n, v in reads.items()] + emit.lines
    out = ", ".join(f"{k!r}: {local[v]}" for k, v in outputs)
    if returns is not None:
        out = returns(local.__getitem__)
    else:
        out = "{" + out + "}"
    if arrays:  # x/0 and the like give inf or nan, as in evaluate
        src = ("def _compiled(_in):\n    with _errstate(all='ignore'):\n"
               + "".join(f"        {x}\n" for x in body) + f"        return {out}\n")
    else:
        src = "def _compiled(_in):\n" + "".join(f"    {x}\n" for x in body) \
            + f"    return {out}\n"
    ns = dict(_NP_ENV if arrays else _PY_ENV)
    exec(compile(src, "<perfmodel.formula.compile_py>", "exec"), ns)  # noqa: S102 - our own text
    ns["_compiled"].text = src  # the generated code, for reading and profiling
    f = ns["_compiled"]
    f.source = (steps, dict(consts), list(outputs))
    return f
