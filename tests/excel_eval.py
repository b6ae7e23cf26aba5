"""A small evaluator of Excel formula text, independent of perfmodel.formula: it parses what
``to_excel`` wrote with Excel's own grammar (comparison < + - < * / < ^, ^ left-associative,
unary minus tighter than ^) and computes it, so a rendering that Excel would group differently
from the expression tree gives a different number. Errors (#DIV/0!, #N/A, #NUM!) are ``None``."""

from __future__ import annotations

import math
import re

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"]|"")*")
  | (?P<op><>|<=|>=|[-+*/^=<>(),:])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_.$!]*)
)""", re.X)


class ExcelError(Exception):
    pass


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SyntaxError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def evaluate_text(formula: str, cells: dict):
    """The value of ``formula`` (with its leading '='); ``cells`` maps a name or an address
    (``A1``; a range ``A1:A3`` is looked up as one key) to a number, text or list."""
    p = _Parser(tokens(formula.lstrip("=")))
    tree = p.expr()
    if p.i != len(p.t):
        raise SyntaxError(f"trailing text in {formula!r}")
    try:
        return _eval(tree, cells)
    except (ExcelError, ZeroDivisionError, OverflowError, ValueError):
        return None


class _Parser:
    """Text -> tree of tuples: ("num", v), ("str", s), ("bool", b), ("ref", name),
    ("bin", op, a, b), ("neg", a), ("call", FN, [args])."""

    def __init__(self, toks):
        self.t, self.i = toks, 0

    def peek(self):
        return self.t[self.i][1] if self.i < len(self.t) else None

    def take(self, want=None):
        tok = self.t[self.i]
        if want is not None and tok[1] != want:
            raise SyntaxError(f"expected {want!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def _left(self, ops, sub):
        a = sub()
        while self.peek() in ops:
            op = self.take()[1]
            a = ("bin", op, a, sub())
        return a

    def expr(self):  # comparison, the loosest
        return self._left(("=", "<>", "<", ">", "<=", ">="), self.additive)

    def additive(self):
        return self._left(("+", "-"), self.term)

    def term(self):
        return self._left(("*", "/"), self.power)

    def power(self):  # left-associative in Excel: 2^3^2 = 64
        return self._left(("^",), self.unary)

    def unary(self):  # -2^2 = 4 in Excel: the sign binds first
        if self.peek() in ("-", "+"):
            sign = self.take()[1]
            a = self.unary()
            return ("neg", a) if sign == "-" else ("bin", "+", ("num", 0.0), a)
        return self.primary()

    def primary(self):
        kind, text = self.take()
        if kind == "num":
            return ("num", float(text))
        if kind == "str":
            return ("str", text[1:-1].replace('""', '"'))
        if text == "(":
            v = self.expr()
            self.take(")")
            return v
        if kind == "name":
            if self.peek() == "(":
                self.take("(")
                args = []
                if self.peek() != ")":
                    args.append(self.expr())
                    while self.peek() == ",":
                        self.take()
                        args.append(self.expr())
                self.take(")")
                return ("call", text.upper(), args)
            if text.upper() in ("TRUE", "FALSE"):
                return ("bool", text.upper() == "TRUE")
            if self.peek() == ":":
                self.take()
                text = f"{text}:{self.take()[1]}"
            return ("ref", text)
        raise SyntaxError(f"unexpected {text!r}")


def _eval(t, cells):
    tag = t[0]
    if tag in ("num", "str", "bool"):
        return t[1]
    if tag == "ref":
        if t[1] not in cells:
            raise KeyError(f"no cell {t[1]!r}")
        return cells[t[1]]  # None: a blank cell
    if tag == "neg":
        return -_n(_eval(t[1], cells))
    if tag == "bin":
        op, a, b = t[1], _eval(t[2], cells), _eval(t[3], cells)
        if op in ("=", "<>", "<", ">", "<=", ">="):
            return _compare(op, a, b)
        a, b = _n(a), _n(b)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                raise ExcelError("#DIV/0!")
            return a / b
        return _pow(a, b)
    fn, args = t[1], t[2]
    if fn == "IF":  # lazy: only the chosen branch is computed
        return _eval(args[1] if bool(_n(_eval(args[0], cells))) else args[2], cells)
    if fn == "ISBLANK":
        return args[0][0] == "ref" and _eval(args[0], cells) is None
    return _call(fn, [_eval(a, cells) for a in args])


def _n(v):
    if v is None:
        return 0.0  # a blank cell in arithmetic
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        raise ExcelError("#VALUE!")
    v = float(v)
    if not math.isfinite(v):
        raise ExcelError("#NUM!")
    return v


def _pow(a, b):
    if a == 0 and b <= 0:
        raise ExcelError("#NUM!" if b == 0 else "#DIV/0!")
    if a < 0 and not float(b).is_integer():
        raise ExcelError("#NUM!")
    return a ** b


def _compare(op, a, b):
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.lower(), b.lower()
    elif isinstance(a, str) or isinstance(b, str):  # text sorts after numbers in Excel
        return {"=": False, "<>": True}.get(op, (op in (">", ">=")) == isinstance(a, str))
    else:
        a, b = _n(a), _n(b)
    return {"=": a == b, "<>": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _int(x):
    return float(math.floor(_n(x)))


def _criterion(c, v) -> bool:
    op = "<>" if c.startswith("<>") else "=" if c.startswith("=") else "="
    text = c[len(op):] if c.startswith(op) else c
    pat = re.escape(text).replace(r"\~\~", "\0").replace(r"\~\*", "\1").replace(r"\~\?", "\2")
    pat = pat.replace(r"\*", ".*").replace(r"\?", ".").replace("\0", "~").replace("\1", r"\*")
    pat = pat.replace("\2", r"\?")
    hit = re.fullmatch(pat, str(v), re.I) is not None if isinstance(v, str) else \
        _is_num(text) and v is not None and float(text) == float(v)
    return hit if op == "=" else not hit


def _is_num(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _call(fn, a):
    if fn == "MAX":
        return max(x for v in a for x in (v if isinstance(v, list) else [_n(v)]))
    if fn == "MIN":
        return min(_n(v) for v in a)
    if fn == "INT":
        return _int(a[0])
    if fn == "AND":
        return all(bool(_n(v)) for v in a)
    if fn == "NA":
        raise ExcelError("#N/A")
    if fn == "SUM":
        return sum(_n(x) for v in a for x in (v if isinstance(v, list) else [v]))
    if fn == "SUMIFS":
        vals, conds = a[0], list(zip(a[1::2], a[2::2]))
        return sum(_n(v) for i, v in enumerate(vals)
                   if all(_criterion(c, rng[i]) for rng, c in conds))
    if fn == "INDEX":
        return a[0][int(_n(a[1])) - 1]
    if fn == "MATCH":
        key, rng = a[0], a[1]
        for i, v in enumerate(rng):
            if _compare("=", v, key):
                return float(i + 1)
        raise ExcelError("#N/A")
    raise SyntaxError(f"function {fn} is not in this evaluator")
