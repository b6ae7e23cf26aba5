"""The expression layer: ``to_excel`` text, the range primitives, and random expression trees
rendered to Excel and computed by an independent evaluator (and by LibreOffice) equal to
``formula.evaluate``."""

from __future__ import annotations

import math

import numpy as np
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import formula as F
from perfmodel.formula import Ref, evaluate, to_excel

from . import lo
from .excel_eval import evaluate_text

CELLS = {"a": "A1", "b": "B1", "c": "C1"}


def xl(e):
    return to_excel(e, CELLS.__getitem__)


a, b, c = Ref("a"), Ref("b"), Ref("c")


@pytest.mark.parametrize("expr, text", [
    (a + b * c, "=A1+B1*C1"),
    ((a + b) * c, "=(A1+B1)*C1"),
    (a - (b - c), "=A1-(B1-C1)"),      # right operand keeps its brackets at equal rank
    ((a - b) - c, "=A1-B1-C1"),
    (a / (b * c), "=A1/(B1*C1)"),
    ((a ** b) ** c, "=(A1^B1)^C1"),    # bracketed for readers, though Excel groups left
    (a ** (b ** c), "=A1^(B1^C1)"),
    (a * -2, "=A1*(-2)"),              # a negative constant is bracketed
    (a * 0.1, "=A1*0.1"),
    (2 * a * 1, "=2*A1"),              # x*1 dropped; constants folded
    (F.fmax(a, b, 3), "=MAX(A1,B1,3)"),
    (F.ceil(a / b), "=-INT(-(A1/B1))"),   # ceil = -floor(-x), right for negatives too
    (F.ceil(a) ** 2, "=-INT(-A1)^2"),     # the sign binds before ^ in Excel
    (F.floor(a), "=INT(A1)"),
    (F.where(a >= b, "compute", "memory"), '=IF(A1>=B1,"compute","memory")'),
    (F.where(F.eq(a, 'say "hi"'), True, False), '=IF(A1="say ""hi""",TRUE,FALSE)'),
    (F.where(F.ne(a, b), 1, F.na()), "=IF(A1<>B1,1,NA())"),
    (F.where(F.is_blank(a), b, a), "=IF(ISBLANK(A1),B1,A1)"),
    (F.rsum(a), "=SUM(A1)"),
    (F.rmax(a) * 2, "=MAX(A1)*2"),
    (F.sumif(a, (b, "layer"), (c, "<>", "collective")), '=SUMIFS(A1,B1,"=layer",C1,"<>collective")'),
    (F.sumif(a, (b, "x*y?~")), '=SUMIFS(A1,B1,"=x~*y~?~~")'),  # wildcards match literally
    (F.lookup(a, b, c), "=INDEX(A1,MATCH(C1,B1,0))"),
])
def test_to_excel_text(expr, text):
    assert xl(expr) == text
    assert to_excel(expr, CELLS.__getitem__, leading_eq=False) == text[1:]


def test_range_primitives_evaluate_over_rows():
    group = np.array(["embed", "layer", "layer", "Layer", "optimizer"])
    kind = np.array(["matmul", "matmul", "collective", "matmul", "matmul"])
    t = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    env = {"t": t, "g": group, "k": kind, "key": "optimizer"}
    # layer kernels: rows 1 and 3 (criteria compare text without case, as Excel does)
    assert evaluate(F.sumif(Ref("t"), (Ref("g"), "layer"), (Ref("k"), "<>", "collective")), env) == 10.0
    assert evaluate(F.sumif(Ref("t"), (Ref("k"), "collective")), env) == 4.0
    assert evaluate(F.rsum(Ref("t")), env) == 31.0
    assert evaluate(F.rmax(Ref("t")), env) == 16.0
    assert evaluate(F.lookup(Ref("t"), Ref("g"), Ref("key")), env) == 16.0
    assert np.isnan(evaluate(F.lookup(Ref("t"), Ref("g"), "absent"), env))
    # vectorised: rows x configurations reduce along the rows
    t2 = np.stack([t, 2 * t], axis=1)
    got = evaluate(F.sumif(Ref("t"), (Ref("g"), "layer")), {**env, "t": t2})
    assert got.tolist() == [14.0, 28.0]
    # numbers in, numbers out (no tree)
    assert F.sumif(t, (group, "embed")) == 1.0
    with pytest.raises(ValueError):
        F.sumif(Ref("t"), (Ref("g"), "<", 3))


def test_range_primitives_match_the_text_evaluator():
    cells = {"T": [1.0, 2.0, 4.0], "G": ["layer", "embed", "layer"], "K": ["x", "collective", "y"]}
    env = {"t": np.array(cells["T"]), "g": np.array(cells["G"]), "k": np.array(cells["K"])}
    names = {"t": "T", "g": "G", "k": "K"}
    for e in (F.sumif(Ref("t"), (Ref("g"), "layer"), (Ref("k"), "<>", "collective")),
              F.rsum(Ref("t")) / F.rmax(Ref("t")), F.lookup(Ref("t"), Ref("g"), "embed")):
        assert evaluate_text(to_excel(e, names.__getitem__), cells) == evaluate(e, env)


# ---- random expression trees ------------------------------------------------------------

NAMES = ["x", "y", "z"]
values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).map(lambda v: round(v, 3))
leaf = st.one_of(st.sampled_from(NAMES).map(Ref), values.map(F.Const),
                 st.integers(-5, 5).map(lambda i: F.Const(float(i))))


def _grow(kids):
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), kids, kids).map(lambda t: F.BinOp(*t)),
        # ^ with a small integer exponent: Excel and numpy agree on its domain
        st.tuples(kids, st.integers(1, 3)).map(lambda t: F.BinOp("^", t[0], F.Const(float(t[1])))),
        st.lists(kids, min_size=1, max_size=3).map(lambda xs: F.Call("max", tuple(xs))),
        st.lists(kids, min_size=1, max_size=3).map(lambda xs: F.Call("min", tuple(xs))),
        kids.map(lambda x: F.Call("ceil", (x,))),
        kids.map(lambda x: F.Call("floor", (x,))),
        st.tuples(st.sampled_from(["<", "<=", ">", ">=", "=", "<>"]), kids, kids, kids, kids)
        .map(lambda t: F.Call("where", (F.Cmp(t[0], t[1], t[2]), t[3], t[4]))),
    )


trees = st.recursive(leaf, _grow, max_leaves=12)
envs = st.fixed_dictionaries({n: values for n in NAMES})


def _agree(got, want) -> bool:
    """Excel's errors (None) stand for numpy's inf/nan; numbers agree to rounding."""
    want = float(want)
    if not math.isfinite(want) or abs(want) > 1e300:
        return got is None or not math.isfinite(float(got)) or abs(float(got)) > 1e300
    return got is not None and math.isclose(float(got), want, rel_tol=1e-12, abs_tol=1e-12)


def _nonfinite_inside(tree, env) -> bool:
    """Whether some sub-expression is inf or nan. Excel propagates such an error through IF and
    comparisons, where numpy's nan compares False and a where() may pick the other branch (the
    model's own formulas never divide by zero inside a condition)."""
    from perfmodel.formula import BinOp, Call, Cmp
    kids = ([tree.a, tree.b] if isinstance(tree, (BinOp, Cmp))
            else list(tree.args) if isinstance(tree, Call) else [])
    for k in kids:
        v = evaluate(k, env)
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            return True
        if _nonfinite_inside(k, env):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(trees, envs)
def test_random_trees_render_to_text_excel_computes_alike(tree, env):
    text = to_excel(tree, {n: f"{n.upper()}1" for n in NAMES}.__getitem__)
    cells = {f"{n.upper()}1": v for n, v in env.items()}
    num_env = {n: np.float64(v) for n, v in env.items()}
    want = evaluate(tree, num_env)
    got = evaluate_text(text, cells)
    if got is None and _nonfinite_inside(tree, num_env):
        return  # an error inside: Excel shows it, numpy may have stepped around it
    assert _agree(got, want), (text, env, want)


@lo.needs_lo
@settings(max_examples=1, deadline=None)
@given(st.lists(st.tuples(trees, envs), min_size=60, max_size=60))
def test_random_trees_recalculated_by_libreoffice(tmp_path_factory, cases):
    """60 random trees in one workbook (one LibreOffice run): row i holds x, y, z and the
    rendered formula over them; LibreOffice's value equals formula.evaluate's."""
    tmp = tmp_path_factory.mktemp("trees")
    wb = openpyxl.Workbook()
    ws = wb.active
    want = []
    for i, (tree, env) in enumerate(cases, start=1):
        for j, n in enumerate(NAMES):
            ws.cell(row=i, column=1 + j, value=env[n])
        ws.cell(row=i, column=4, value=to_excel(tree, {n: f"{'ABC'[k]}{i}" for k, n in enumerate(NAMES)}.__getitem__))
        want.append(evaluate(tree, {n: np.float64(v) for n, v in env.items()}))
    src = tmp / "trees.xlsx"
    wb.save(src)
    fresh = openpyxl.load_workbook(lo.convert(src, tmp / "lo"), data_only=True).active
    bad = []
    for i, w in enumerate(want, start=1):
        got = fresh.cell(row=i, column=4).value
        got = None if isinstance(got, str) and got.startswith("#") else got
        if not _agree(got, w):
            bad.append((ws.cell(row=i, column=4).value, got, float(w)))
    assert not bad, bad[:5]
