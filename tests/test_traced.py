"""perfmodel.trace and results.to_json compiled per structure: the compiled JSON is the
evaluated JSON, for every built-in transformer workload, at configurations other than the
recorded one; a failed guard, an invalid configuration or a leaking recording falls back to
the evaluation."""

import math

import pytest

from perfmodel import catalog, engine, results, trace
from perfmodel.model import source_workload
from perfmodel.specs import SpecError, TransformerOp, Workload
from perfmodel.trace import Traced, TraceLeak

CHIPS = ("tpu-v5e", "tpu-v5p", "h100", "mi300x")


def _transformers():
    for name in catalog.builtin_names("workloads"):
        src = source_workload(catalog.load_workload(name))
        if len(src.ops) == 1 and isinstance(src.ops[0], TransformerOp):
            yield name, src


TRANSFORMERS = dict(_transformers())


def _variant(src: Workload, **update) -> Workload:
    spec = src.ops[0]
    return Workload.model_validate({**src.model_dump(),
                                    "ops": [{**spec.model_dump(), **update}]})


def _structure(hw, src):
    return [v[1] for k, v in engine.PER_CHIP.items()
            if k[0] == id(hw) and k[1][0] == "to_json"]


def test_there_are_transformer_workloads_to_check():
    assert len(TRANSFORMERS) >= 8


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_compiled_json_is_the_evaluated_json_at_other_configurations(name):
    src = TRANSFORMERS[name]
    spec = src.ops[0]
    checked = 0
    for chip in CHIPS:
        hw = catalog.load_hardware(chip)
        try:
            results._to_json(hw, src)
        except SpecError:
            continue  # a slice this chip is not sold in
        engine.PER_CHIP.clear()
        before = dict(results.TRACE_STATS)
        results.to_json(hw, src)
        results.to_json(hw, src)  # the second call records the structure
        (st,) = _structure(hw, src)
        assert st.refused is None, st.refused
        assert results.TRACE_STATS["recorded"] == before["recorded"] + 1
        # other numbers of the same structure (doubling keeps every divisibility)
        for update in ({"batch": spec.batch * 2}, {"seq": spec.seq * 2},
                       {"batch": spec.batch * 4, "layers": spec.layers * 2}):
            wl = _variant(src, **update)
            fast = results.to_json(hw, wl)
            slow = results._to_json(hw, wl)
            assert results._same(fast, slow), (chip, update)
            checked += 1
        # the variants were compiled calls, not evaluations
        assert results.TRACE_STATS["compiled"] >= before["compiled"] + 3
    assert checked


def test_compiled_json_agrees_exactly_where_numbers_are_whole_below_2_53():
    # Llama-2-7B-like decode on one h100: every count below 2**53, so the float64 recording
    # and the integer evaluation agree to the bit (not just to 1e-12)
    hw = catalog.load_hardware("h100")
    op = {"name": "m", "kind": "transformer", "layers": 32, "d_model": 4096, "heads": 32,
          "kv_heads": 32, "head_dim": 128, "d_ff": 11008, "vocab": 32000, "mlp": "gated",
          "mode": "decode", "batch": 1, "seq": 640}

    def wl(b):
        return Workload.model_validate({"name": "w", "ops": [{**op, "batch": b}]})
    results.to_json(hw, wl(1))
    results.to_json(hw, wl(2))
    n = results.TRACE_STATS["compiled"]
    for b in (3, 16, 100, 4096):
        assert results.to_json(hw, wl(b)) == results._to_json(hw, wl(b))
    assert results.TRACE_STATS["compiled"] == n + 4


def test_a_configuration_the_slow_path_refuses_is_refused_after_compiling():
    hw = catalog.load_hardware("tpu-v5p")
    src = TRANSFORMERS["llama2-7b-train-fsdp"]
    results.to_json(hw, src)
    results.to_json(hw, src)
    # a batch the fsdp axis does not divide: the guard fails, the evaluation says why
    bad = _variant(src, batch=src.ops[0].batch + 1)
    with pytest.raises(SpecError, match="not divisible"):
        results.to_json(hw, bad)
    # kernels too large for float64 (2**53) are refused as the evaluation refuses them
    huge = _variant(src, batch=2**30 * 8, seq=2**24)
    with pytest.raises(SpecError, match="too large"):
        results.to_json(hw, huge)


def test_a_recording_that_leaks_a_number_is_refused_and_the_answer_still_evaluated(monkeypatch):
    from perfmodel.model import summary

    hw = catalog.load_hardware("h100")
    src = TRANSFORMERS["llama2-7b-decode"]
    engine.PER_CHIP.clear()
    real = summary.params_6pt
    monkeypatch.setattr(summary, "params_6pt", lambda spec: float(real(spec)))  # a leak
    first = results.to_json(hw, src)
    second = results.to_json(hw, src)
    (st,) = _structure(hw, src)
    assert st.refused is not None and "TraceLeak" in st.refused
    assert not st.variants
    assert results._same(first, second)
    wl = _variant(src, batch=src.ops[0].batch * 2)
    assert results._same(results.to_json(hw, wl), results._to_json(hw, wl))
    engine.PER_CHIP.clear()  # the refusal is remembered: not for the tests that follow


def test_a_traced_number_refuses_to_become_a_plain_one():
    with trace.tracing():
        x = trace.traced_inputs({"x": 3})["x"]
        for leak in (float, int, math.trunc, round, hash, lambda v: f"{v}", lambda v: [0][v]):
            with pytest.raises((TraceLeak, TypeError)):
                leak(x)
        import numpy as np
        with pytest.raises(TraceLeak):
            np.asarray(x, dtype=float)


def test_traced_arithmetic_records_python_semantics_and_guards():
    from perfmodel.formula import compile_py

    with trace.tracing() as t:
        v = trace.traced_inputs({"a": 7, "b": 2})
        a, b = v["a"], v["b"]
        exprs = {"fd": a // b, "mod": a % b, "div": a / b, "neg": -a, "abs": abs(b - a),
                 "ceil": math.ceil(a / b), "floor": math.floor(a / b), "pow": a ** b,
                 "mix": 3 * a - 1.5 / b + 2}
        assert [exprs[k].value for k in ("fd", "mod", "ceil", "floor")] == [3, 1, 4, 3]
        assert isinstance(exprs["fd"].value, int)
        assert max(a, b) is a  # a decision: recorded as a guard
        assert bool(b)
    assert len(t.guards) == 2 and all(ok for _, ok in t.guards[1:])
    f = compile_py(list((k, e.expr) for k, e in exprs.items()), {},
                   [(k, k) for k in exprs], floats=True)
    for x, y in ((7, 2), (9, 4), (100, 7), (5, 10)):
        out = f({"a": x, "b": y})
        want = {"fd": x // y, "mod": x % y, "div": x / y, "neg": -x, "abs": abs(y - x),
                "ceil": math.ceil(x / y), "floor": math.floor(x / y), "pow": x ** y,
                "mix": 3 * x - 1.5 / y + 2}
        assert out == pytest.approx(want, rel=1e-15)


def test_traced_value_class():
    with trace.tracing():
        x = trace.traced_inputs({"x": 2})["x"]
        assert isinstance(x, Traced) and (x * 2).value == 4


# ---- sweeps through the recording, on arrays ------------------------------------------------

def _frames_equal(a, b):
    """Equal tables up to row order (the per-configuration loop lists configuration-major,
    the array paths chip- and op-major)."""
    import pandas as pd

    assert list(a.columns) == list(b.columns)
    keys = [c for c in a.columns if a[c].dtype.kind in "iuO" or str(a[c].dtype) == "category"
            and c != "bound"]
    a, b = (pd.DataFrame({c: f[c].astype(str) if c in ("op", "hardware") else f[c]
                          for c in f.columns})
            .sort_values(keys, kind="stable").reset_index(drop=True) for f in (a, b))
    for c in a.columns:
        x, y = a[c], b[c]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            xa, ya = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            ok = (xa == ya) | (abs(xa - ya) <= 1e-12 * abs(ya)) | (pd.isna(xa) & pd.isna(ya))
            assert ok.all(), c
        else:
            assert list(x.astype(str)) == list(y.astype(str)), c


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_traced_sweep_is_the_batched_sweep_and_the_loop(name, monkeypatch):
    from perfmodel import sweeps
    from perfmodel.sweeps import parse_varies

    src = TRANSFORMERS[name]
    spec = src.ops[0]
    wl = catalog.load_workload(name)
    chips = [c for c in ("tpu-v5p", "h100") if _fits(c, src)]
    hws = [catalog.load_hardware(c) for c in chips]
    b = spec.batch
    engine.PER_CHIP.clear()
    varies = parse_varies([f"batch={b},{2 * b},{4 * b}"])
    traced = sweeps._sweep_traced(src, spec, hws, varies)
    assert traced is not None
    batched = sweeps._sweep_batched(src, spec, hws, varies)
    _frames_equal(traced, batched)
    _frames_equal(traced.attrs["totals"], batched.attrs["totals"])
    # fields the batched path cannot vary: the per-configuration loop is the reference (a
    # d_model step moves decode's compute-bound batch across a whole number: no guard flips)
    for vary in (f"seq={spec.seq},{2 * spec.seq}", f"d_model={spec.d_model},{spec.d_model + 904}"):
        varies = parse_varies([vary])
        traced = sweeps._sweep_traced(src, spec, hws, varies)
        with monkeypatch.context() as m:
            m.setattr(sweeps, "_sweep_traced", lambda *a: None)
            loop = sweeps._sweep_model(wl, hws, varies, progress=False)
        if traced is None:
            # a mixture of experts searches its compute-bound batch: the search's steps are
            # decisions on d_model, which the loop then makes for each configuration
            assert spec.experts and vary.startswith("d_model"), vary
            continue
        _frames_equal(traced, loop)
        _frames_equal(traced.attrs["totals"], loop.attrs["totals"])


def _fits(chip, src):
    try:
        results._to_json(catalog.load_hardware(chip), src)
        return True
    except SpecError:
        return False


def test_recordings_are_bounded(monkeypatch):
    # the oldest recording is forgotten beyond MAX_RECORDED: its structure evaluates again
    monkeypatch.setattr(results, "MAX_RECORDED", 1)
    results._RECORDED.clear()
    engine.PER_CHIP.clear()
    hw = catalog.load_hardware("h100")
    a, b = TRANSFORMERS["llama2-7b-decode"], TRANSFORMERS["gemma-7b-decode"]
    for src in (a, a, b, b):
        results.to_json(hw, src)
    sa, sb = (results._structure_of(hw, s)[0] for s in (a, b))
    assert not sa.variants and len(sb.variants) == 1
    assert results._same(results.to_json(hw, a), results._to_json(hw, a))


def test_a_recording_in_one_thread_leaves_other_threads_alone():
    import threading

    seen = []
    with trace.tracing():
        t = threading.Thread(target=lambda: seen.append(trace.active()))
        t.start()
        t.join()
        assert trace.active()
    assert seen == [False]


def test_traced_sweep_keeps_a_float_field_fractional():
    # capacity_factor is a float: 1.25 must not be priced as 1 (the loop is the reference)
    from perfmodel import sweeps
    from perfmodel.sweeps import parse_varies

    src = TRANSFORMERS["mixtral-8x7b-train"]
    hw = catalog.load_hardware("tpu-v5p")
    varies = parse_varies(["capacity_factor=1.0,1.25,1.5"])
    traced = sweeps._sweep_traced(src, src.ops[0], [hw], varies)
    assert traced is not None
    tot = traced.attrs["totals"]
    assert list(tot["capacity_factor"]) == [1.0, 1.25, 1.5]
    for cf, t in zip(tot["capacity_factor"], tot["t_lower"]):
        want = results._to_json(hw, _variant(src, capacity_factor=cf))["total"]["t_lower"]
        assert t == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("base,vary", [
    ({"sliding_window": 16384}, ["seq=1024,8192", "sliding_window=4096,16384"]),  # 8192 > 4096
    ({}, ["top_k=1,8", "experts=4,8"]),  # top_k 8 > experts 4
])
def test_traced_sweep_refuses_a_combination_the_op_validation_refuses(base, vary):
    # each value is valid alone (with the op's other fields); one combination is not: the
    # traced sweep must not price it (None: the loop then says what is wrong)
    from perfmodel import sweeps
    from perfmodel.sweeps import parse_varies

    src = _variant(TRANSFORMERS["mixtral-8x7b-train"], **base)
    engine.PER_CHIP.clear()
    hw = catalog.load_hardware("tpu-v5p")
    assert sweeps._sweep_traced(src, src.ops[0], [hw], parse_varies(vary)) is None


def test_a_reassigned_variable_is_read_after_its_step_as_compile_py_reads_it():
    # x = a; x = (x + 1) * 2; y = (x + 1) * 3 with the node (x + 1) shared by both steps:
    # compile_py's y reads the new x (a=5: x=12, y=39; a=7: x=16, y=51), so must the recording
    from perfmodel.formula import BinOp, Const, Ref, compile_py

    n = BinOp("+", Ref("x"), Const(1.0))
    steps = [("x", Ref("a")), ("x", BinOp("*", n, Const(2.0))), ("y", BinOp("*", n, Const(3.0)))]
    f = compile_py(steps, {}, [("y", "y")], floats=True)
    with trace.tracing() as t:
        out = trace.run(f, trace.traced_inputs({"a": 5.0}))
    g = compile_py(t.steps + [("Y", out["y"].expr)], t.consts, [("Y", "Y")], floats=True)
    assert g({"a": 7.0})["Y"] == f({"a": 7.0})["y"] == 51.0


def test_every_sweep_path_lists_rows_in_one_order(monkeypatch):
    # chip, then op, then configuration, whether the recording, the batched arrays or the
    # per-configuration loop computed them (a CSV's order does not depend on a guard)
    from perfmodel import sweeps
    from perfmodel.sweeps import parse_varies

    wl = catalog.load_workload("llama2-7b-decode")
    src = source_workload(wl)
    hws = [catalog.load_hardware(c) for c in ("h100", "tpu-v5e")]
    varies = parse_varies(["seq=1024,2048,4096"])
    traced = sweeps._sweep_traced(src, src.ops[0], hws, varies)
    monkeypatch.setattr(sweeps, "_sweep_traced", lambda *a: None)
    loop = sweeps._sweep_model(wl, hws, varies, progress=False)
    assert traced is not None

    def order(df, cols):
        return [tuple(str(x) for x in r) for r in df[cols].itertuples(index=False)]
    assert order(traced, ["hardware", "op", "seq"]) == order(loop, ["hardware", "op", "seq"])
    assert order(traced.attrs["totals"], ["hardware", "seq"]) == \
        order(loop.attrs["totals"], ["hardware", "seq"])
    assert order(loop, ["hardware"])[0] == ("h100",) and order(loop, ["seq"])[:2] == \
        [("1024",), ("2048",)]
