"""formula.compile_py: the formulas compiled to plain Python give the numpy path's numbers."""

import math

import numpy as np
import pytest

from perfmodel import catalog, engine
from perfmodel.formula import Ref, ceil, compile_py, eq, fmax, fmin, rsum, sqrt, sumif, where
from perfmodel.formula import evaluate as evaluate_expr
from perfmodel.ops import REGISTRY, OpContext

CHIPS = catalog.builtin_names("hardware")
WORKLOADS = catalog.builtin_names("workloads")


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("chip", CHIPS)
def test_every_builtin_op_compiles_to_the_interpreted_numbers_bit_for_bit(chip):
    hw = catalog.load_hardware(chip)
    checked = 0
    for name in WORKLOADS:
        wl = catalog.load_workload(name)
        ctx = OpContext(wl, hw)
        for op in wl.ops:
            try:
                values = REGISTRY[op.kind].inputs(op, ctx)
            except Exception:  # a collective this chip's interconnect cannot run
                continue
            _, cost, roof = engine.op_columns(op, hw, wl, inputs=values)  # compiled, floats
            _, cost_i, roof_i = engine._interpreted_columns(op, hw, wl, values, None, False)
            arrays = {k: np.array([v, v], dtype=float) for k, v in values.items()}
            _, cost_a, roof_a = engine.op_columns(op, hw, wl, inputs=arrays)  # compiled, numpy
            for k, v in {**cost, **roof}.items():
                ref = {**cost_i, **roof_i}[k]
                arr = np.broadcast_to({**cost_a, **roof_a}[k], (2,))
                assert _same(v, ref), (name, op.name, k, v, ref)
                assert _same(arr[0], ref) and _same(arr[1], ref), (name, op.name, k, arr, ref)
            checked += 1
    assert checked > 50


def test_numpy_semantics_where_python_would_raise():
    x, y = Ref("x"), Ref("y")
    f = compile_py([("d", x / y), ("p", x ** y), ("s", sqrt(x)), ("m", fmax(x, y)),
                    ("n", fmin(x, y)), ("c", ceil(x))], {}, [(k, k) for k in "dpsmnc"])
    for xv, yv in [(1.0, 0.0), (-1.0, 0.0), (0.0, 0.0), (-8.0, 0.5), (0.0, -1.0), (1e300, 2.0),
                   (math.nan, 1.0), (2.5, math.nan), (-2.5, 3.0)]:
        got = f({"x": xv, "y": yv})
        with np.errstate(all="ignore"):
            want = {"d": np.float64(xv) / yv, "p": np.power(np.float64(xv), yv),
                    "s": np.sqrt(np.float64(xv)), "m": np.maximum(xv, yv),
                    "n": np.minimum(xv, yv), "c": np.ceil(xv)}
        for k in want:
            assert _same(got[k], want[k]), (k, xv, yv, got[k], want[k])


def test_ranges_text_and_branches_match_evaluate():
    # a step-summary shape: sums over rows chosen by text (Excel compares it without case)
    e = {"g": sumif(Ref("v"), (Ref("grp"), "Layer"), (Ref("kind"), "<>", "collective")),
         "t": rsum(Ref("v")), "b": where(Ref("v2") > 1, "big", "small"),
         "q": eq(Ref("word"), "ABC")}
    env = {"v": [1.0, 2.0, 4.0, 8.0], "grp": ["layer", "layer", "embed", "LAYER"],
           "kind": ["matmul", "collective", "matmul", "attention"], "v2": 3.0, "word": "abc"}
    f = compile_py(list(e.items()), {}, [(k, k) for k in e])
    got = f(env)
    np_env = {k: np.asarray(v) if isinstance(v, list) else v for k, v in env.items()}
    for k, x in e.items():
        assert _same(got[k], evaluate_expr(x, np_env)), k
    assert got["g"] == 9.0 and got["t"] == 15.0 and got["b"] == "big" and got["q"] is True


@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
def test_flops_ledger_from_the_rows_equals_the_expanded_count(mode):
    # an unsharded workload's rows are its unsharded ledger: summing their FLOPs must give what
    # expanding and evaluating that ledger again gives, to the bit
    from perfmodel import results
    from perfmodel.model import summary
    from perfmodel.specs import Workload

    from .models import LLAMA2_7B

    hw = catalog.load_hardware("h100")
    spec = {**LLAMA2_7B, "mode": mode, "batch": 4, "seq": 512,
            **({"remat": "full"} if mode == "train" else {})}  # remat rows are not counted
    wl = Workload.model_validate({"name": "w", "ops": [spec]})
    got = results.to_json(hw, wl)["total"]["flops_ledger"]
    assert got == summary.model_flops(hw, wl.ops[0])  # the expansion path
    assert got > 0


def test_review_edge_cases_match_evaluate():
    # found in review: signed infinities and NaN from ^, the sign of a zero from ceil/floor,
    # a shared subtree read after its variable is assigned again, x/0 on plain floats in the
    # numpy rendering
    from perfmodel.formula import BinOp, Const, floor

    x, y = Ref("x"), Ref("y")
    cases = [(x ** y, {"x": -10.0, "y": 401.0}), (x ** y, {"x": -10.0, "y": 400.5}),
             (x ** y, {"x": -0.0, "y": -1.0}), (1 / ceil(x), {"x": -0.5}),
             (1 / floor(x), {"x": -0.0})]
    for e, env in cases:
        with np.errstate(all="ignore"):
            want = evaluate_expr(e, env)
        for kw in ({"floats": True}, {"arrays": True}):
            got = compile_py([("o", e)], {}, [("o", "o")], **kw)(env)["o"]
            assert _same(got, want) and math.copysign(1, got) == math.copysign(1, want), (e, kw)
    node = x * 2.0  # one node object in two steps, x assigned in between: z = (1 + 1) * 2
    steps = [("y", node), ("x", x + 1.0), ("z", node)]
    for kw in ({"floats": True}, {"arrays": True}):
        assert compile_py(steps, {}, [("z", "z")], **kw)({"x": 1.0})["z"] == 4.0
    zero = compile_py([("o", BinOp("/", Const(0.0), Const(0.0)))], {}, [("o", "o")],
                      arrays=True)({})["o"]
    assert math.isnan(zero)


def test_batched_step_counts_the_collectives_time():
    # the batched step (plan, sweeps) and to_json agree on t_comm too: a 2 x 8 H100 FSDP step
    from perfmodel import results
    from perfmodel.model.batched import Structure
    from perfmodel.specs import Workload

    from .models import LLAMA2_7B

    hw = catalog.load_hardware("h100")
    wl = Workload.model_validate({"name": "w", "slice": "2x8", "mesh": {"data": 2, "fsdp": 8},
                                  "ops": [{**LLAMA2_7B, "mode": "train", "batch": 32, "seq": 512,
                                           "parallelism": {"data": ["data"],
                                                           "fsdp": ["fsdp"]}}]})
    want = results.to_json(hw, wl)["total"]["t_comm"]
    got = Structure(hw, wl).evaluate(np.array([32]), 1, 1)["t_comm"][0]
    assert want > 0 and got == pytest.approx(want, rel=1e-12)
