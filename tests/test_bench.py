"""Calibration measurement side: kernel suite, timing, bench CSV (resume) and its validation."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmodel import catalog
from perfmodel.calibrate import bench, kernels as K, timing
from perfmodel.specs import ElementwiseOp, MatmulOp, SpecError

pytest.importorskip("jax")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _keys(path: Path) -> list[tuple]:
    df = bench.read_measurements(path)
    return list(zip(df["kernel"], df["params"], df["dtype"], df["pass"]))


# ---- imports stay light -------------------------------------------------------------------

def test_cli_and_calibrate_do_not_import_jax():
    code = ("import sys, perfmodel.cli, perfmodel.calibrate, perfmodel.calibrate.bench, "
            "perfmodel.calibrate.kernels, perfmodel.calibrate.timing; "
            "perfmodel.calibrate.kernels.suite('full'); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the suite and its op models ----------------------------------------------------------

def test_suite_modes_and_op_models():
    full, quick, tiny = (K.suite(m) for m in K.MODES)
    assert {k.name for k in full} == set(K.KINDS) == {k.name for k in tiny}
    assert {k.key for k in quick} <= {k.key for k in full}
    assert not {k.key for k in tiny} & {k.key for k in full}
    for ks in (full, quick, tiny):
        assert len({k.key for k in ks}) == len(ks), "duplicate kernels"
    assert 25 <= len(quick) < len(full) <= 200  # the full bench must stay well under 15 min (~5 here)
    pallas = [k for k in full if k.name == "matmul_pallas"]
    assert pallas and all(k.params["interpret"] is True for k in pallas)
    assert all(k.params["interpret"] is False for k in K.suite("full", "tpu")
               if k.name == "matmul_pallas")
    assert {k.dtype for k in full} == {"fp32", "bf16"}


def test_op_for_models():
    hw = catalog.load_hardware("cpu-local")
    n = 1 << 20
    ew = {"shape": [n], "inputs": 3, "outputs": 1, "flops_per_element": 2}
    fused = K.op_for("ew_add_fused", ew, "fp32")
    assert isinstance(fused, ElementwiseOp)
    unfused = K.op_for("ew_add_unfused", ew, "fp32")
    assert len(unfused) == 2 and all(o.inputs == 2 for o in unfused)
    assert K.op_costs("ew_add_fused", ew, "fp32", hw)["hbm_bytes"] == 4 * 4 * n
    assert K.op_costs("ew_add_unfused", ew, "fp32", hw)["hbm_bytes"] == 6 * 4 * n
    assert K.op_costs("ew_add_unfused", ew, "fp32", hw)["flops"] == 2 * n
    soft = K.op_costs("softmax", {"shape": [64, 256], "inputs": 1, "outputs": 1,
                                  "flops_per_element": 5}, "fp32", hw)
    assert soft["flops"] == 5 * 64 * 256 and soft["hbm_bytes"] == 2 * 4 * 64 * 256
    red = K.op_costs("reduce_sum", {"shape": [64, 256], "inputs": 1, "outputs": 0,
                                    "flops_per_element": 1}, "fp32", hw)
    assert red["hbm_bytes"] == 4 * 64 * 256
    mm = K.op_for("matmul_pallas", {"m": 64, "k": 64, "n": 64, "batch": 1, "block_m": 32,
                                    "block_k": 32, "block_n": 32, "interpret": True}, "fp32")
    assert isinstance(mm, MatmulOp) and mm.m == 64
    dec = [k for k in K.suite("full") if k.name == "attention_decode"][0]
    op = dec.ops()[0]
    assert op.seq == 1 and op.kv_seq > 1000 and op.impl == "naive"
    with pytest.raises(SpecError, match="unknown kernel 'matmull'"):
        K.op_for("matmull", {}, "fp32")
    with pytest.raises(SpecError, match="not a field"):
        K.op_for("matmul", {"m": 1, "k": 1, "n": 1, "interpret": True}, "fp32")
    with pytest.raises(SpecError, match="sum chain"):
        K.op_for("ew_add_unfused", {**ew, "outputs": 2}, "fp32")


# ---- timing -------------------------------------------------------------------------------

def test_summarize_and_rse():
    t = timing.summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (t.median_s, t.min_s, t.reps) == (3.0, 1.0, 5)
    assert t.p20_s == pytest.approx(1.8)
    assert t.cv == pytest.approx(math.sqrt(2.5) / 3)
    assert timing.median_rse([1.0] * 10) == 0
    assert timing.median_rse([1.0]) == math.inf


def test_time_kernel_donates_and_feeds_back():
    import jax
    import jax.numpy as jnp

    calls = []
    f = jax.jit(lambda x: x * 0.5 + 1, donate_argnums=0)

    def fn(x):
        calls.append(x)
        return f(x)

    t = timing.time_kernel(K.Built(fn, (jnp.zeros(1024),), donate=True),
                           timing.Budget(seconds=0.01, min_reps=4, max_reps=8, warmup=1))
    assert 4 <= t.reps <= 8 and 0 < t.min_s <= t.p20_s <= t.median_s
    # every call got the previous call's output (the donated input is never reused)
    assert len({id(c) for c in calls}) == len(calls)

    bad = K.Built(jax.jit(lambda x: x.sum()), (jnp.zeros(8),), donate=True)
    with pytest.raises(ValueError, match="shaped like its first argument"):
        timing.time_kernel(bad, timing.Budget(warmup=1))


# ---- bench end to end ---------------------------------------------------------------------

def test_bench_tiny_end_to_end_and_resume(tmp_path):
    out = tmp_path / "sub" / "m.csv"  # parent dir is created
    n = len(K.suite("tiny"))
    res = bench.run_bench(out, mode="tiny", passes=2, progress=False)
    assert not res.failed, res.failed
    assert res.rows_new == 2 * n and res.rows_total == 2 * n
    rows = _rows(out)
    assert rows[0] == bench.COLUMNS == [
        "kernel", "params", "dtype", "median_s", "min_s", "p20_s", "cv", "reps", "pass",
        "backend", "device_kind", "n_devices", "jax_version", "host"]
    assert len(rows) == 1 + 2 * n
    df = bench.read_measurements(out)
    assert (df[["median_s", "min_s", "p20_s"]] > 0).all().all()
    assert (df["min_s"] <= df["median_s"]).all() and (df["reps"] >= 1).all()
    assert set(df["pass"]) == {1, 2} and set(df["backend"]) == {"cpu"}
    assert set(df["kernel"]) == set(K.KINDS)
    # passes interleave: pass 1 of every kernel before any pass 2, pass 2 in reverse
    assert list(df["pass"]) == [1] * n + [2] * n
    assert list(df["kernel"][:n]) == list(df["kernel"][n:])[::-1]

    again = bench.run_bench(out, mode="tiny", passes=2, progress=False)
    assert again.rows_new == 0 and again.rows_skipped == 2 * n
    assert len(_rows(out)) == 1 + 2 * n

    more = bench.run_bench(out, mode="tiny", passes=3, kernels="matmul*", progress=False)
    assert more.rows_new == 2  # pass 3 of matmul and matmul_pallas only
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 2 * n + 2


def test_bench_interrupt_keeps_rows_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "m.csv"
    real = bench.time_kernel
    calls = {"n": 0}

    def flaky(built, budget):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(built, budget)

    monkeypatch.setattr(bench, "time_kernel", flaky)
    with pytest.raises(bench.BenchInterrupted) as info:
        bench.run_bench(out, mode="tiny", passes=1, kernels="ew_*,matmul", progress=False)
    assert info.value.rows_kept == 3 and info.value.rows_todo == 1
    assert isinstance(info.value, KeyboardInterrupt)
    assert len(_rows(out)) == 1 + 3
    monkeypatch.setattr(bench, "time_kernel", real)

    # a write cut short leaves a partial line: it is dropped on resume
    with open(out, "a") as f:
        f.write("ew_scale,\"{\"\"sha")
    logs = []
    res = bench.run_bench(out, mode="tiny", passes=1, kernels="ew_*,matmul", progress=False,
                          log=logs.append)
    assert res.rows_new == 1 and any("partial last line" in m for m in logs)
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 4


def test_bench_retries_contended_kernels(tmp_path, monkeypatch):
    # queue: matmul (busy), ew_scale (busy), matmul (quiet), ew_scale (busy), ew_scale (busy)
    shares = iter([0.9, 0.8, 0.05, 0.7, 0.6])

    class FakeMeter:
        def start(self):
            pass

        def others(self):
            return next(shares)

    monkeypatch.setattr(bench, "CpuMeter", FakeMeter)
    out = tmp_path / "m.csv"
    res = bench.run_bench(out, mode="tiny", passes=1, kernels="matmul,ew_scale", progress=False,
                          retry_contended=True)
    assert res.rows_new == 2 and res.retried == 3
    assert [c[0].split()[0] for c in res.contended] == ["ew_scale"]
    assert res.contended[0][2] == 0.6  # the least contended of its 3 attempts
    assert list(bench.read_measurements(out)["kernel"]) == ["matmul", "ew_scale"]
    assert "repeated" in bench.summary_text(res) and "60% busy" in bench.summary_text(res)

    # a machine that stays busy: a streak of contended kernels stops the retries
    monkeypatch.setattr(FakeMeter, "others", lambda self: 0.9)
    res = bench.run_bench(tmp_path / "busy.csv", mode="tiny", passes=2, kernels="ew_*,matmul",
                          progress=False, retry_contended=True)
    assert res.rows_new == 8 and res.retried == bench.BUSY_STREAK
    assert len(res.contended) == 8


def test_cpu_meter_reads_proc_stat():
    meter = bench.CpuMeter()
    meter.start()
    import time
    time.sleep(0.25)
    share = meter.others()
    if Path("/proc/stat").exists():
        assert share is not None and 0 <= share <= 1
    else:
        assert share is None


def test_bench_failure_of_one_kernel_is_reported(tmp_path, monkeypatch):
    real = bench.time_kernel

    def broken(built, budget):
        if len(built.args) == 2:  # the matmul
            raise RuntimeError("boom")
        return real(built, budget)

    monkeypatch.setattr(bench, "time_kernel", broken)
    res = bench.run_bench(tmp_path / "m.csv", mode="tiny", passes=1, kernels="matmul,ew_scale",
                          progress=False, log=lambda m: None)
    assert res.rows_new == 1 and len(res.failed) == 1 and "boom" in res.failed[0][2]
    assert "failed" in bench.summary_text(res)


def test_select_unknown_pattern():
    with pytest.raises(SpecError, match="matches no kernel kind"):
        bench.select(K.suite("tiny"), "nope*")


def test_cli_bench(tmp_path, monkeypatch):
    from perfmodel.cli import main

    out = tmp_path / "r" / "m.csv"
    r = CliRunner().invoke(main, ["bench", "--tiny", "--kernels", "ew_scale", "--output",
                                  str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "wrote 1 rows" in r.output and len(_rows(out)) == 2

    def interrupted(path, **kw):
        raise bench.BenchInterrupted(Path(path), 7, 2, 5)

    monkeypatch.setattr(bench, "run_bench", interrupted)
    r = CliRunner().invoke(main, ["bench", "--quick", "--output", str(out)])
    assert r.exit_code == 130
    assert "kept 7 row(s)" in r.output and "perfmodel bench --quick --output" in r.output

    monkeypatch.undo()
    r = CliRunner().invoke(main, ["bench", "--tiny", "--kernels", "bogus", "--output", str(out)])
    assert r.exit_code == 2 and "matches no kernel kind" in r.output


# ---- read_measurements rejects bad CSVs ---------------------------------------------------

GOOD = ('matmul,"{""batch"":1,""k"":64,""m"":64,""n"":64}",fp32,2e-05,1e-05,1.5e-05,0.1,10,1,'
        'cpu,cpu,1,0.10.2,host')


def _write(tmp_path, header=",".join(bench.COLUMNS), rows=(GOOD,), name="bad.csv"):
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def test_read_measurements_good(tmp_path):
    df = bench.read_measurements(_write(tmp_path, name="good.csv"))
    assert list(df.columns) == bench.COLUMNS and len(df) == 1
    assert df["median_s"][0] == 2e-5 and df["reps"][0] == 10
    # column order does not matter and extra columns are ignored
    cols = bench.COLUMNS[::-1] + ["note"]
    vals = next(csv.reader([GOOD]))[::-1] + ["x"]
    line = ",".join('"' + v.replace('"', '""') + '"' for v in vals)
    df2 = bench.read_measurements(_write(tmp_path, ",".join(cols), [line], "swapped.csv"))
    assert df2.iloc[0].to_dict() == df.iloc[0].to_dict()


def _replace(col, value):
    vals = next(csv.reader([GOOD]))
    vals[bench.COLUMNS.index(col)] = value
    return ",".join('"' + v.replace('"', '""') + '"' for v in vals)


@pytest.mark.parametrize("header,rows,needles", [
    (",".join(c for c in bench.COLUMNS if c != "p20_s"), None,
     ["line 1", "missing column(s) p20_s", "perfmodel bench"]),
    (",".join(bench.COLUMNS).replace("median_s", "median"), None,
     ["missing column(s) median_s", "looks like 'median'"]),
    (None, [_replace("median_s", "-0.5")], ["line 2", "'median_s'", "negative", "Remeasure"]),
    (None, [_replace("min_s", "fast")], ["line 2", "'min_s'", "'fast' is not a number"]),
    (None, [_replace("p20_s", "0")], ["'p20_s'", "zero"]),
    (None, [_replace("median_s", "nan")], ["'median_s'", "not a finite number"]),
    (None, [_replace("kernel", "matmull")], ["line 2", "'kernel'", "unknown kernel 'matmull'",
                                             "Did you mean 'matmul'", "Known kernels"]),
    (None, [GOOD, _replace("kernel", "conv2d")], ["line 3", "unknown kernel 'conv2d'"]),
    (None, [_replace("params", "{m: 64}")], ["'params'", "not valid JSON"]),
    (None, [_replace("params", '{"m": 0, "k": 1, "n": 1}')], ["'params'", "valid matmul op"]),
    (None, [_replace("dtype", "fp64")], ["'dtype'", "unknown dtype 'fp64'", "fp32"]),
    (None, [_replace("reps", "2.5")], ["'reps'", "whole number"]),
    (None, [_replace("cv", "-1")], ["'cv'", "negative"]),
    (None, [_replace("min_s", "1")], ["out of order", "swapped"]),
    (None, [GOOD[:40]], ["line 2", "fields but the header has 14"]),
    (None, [], ["header but no measurement rows"]),
])
def test_read_measurements_rejects(tmp_path, header, rows, needles):
    path = _write(tmp_path, header or ",".join(bench.COLUMNS), (GOOD,) if rows is None else rows)
    with pytest.raises(SpecError) as info:
        bench.read_measurements(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_columns_hint_only_names_foreign_columns(tmp_path):
    # 'pass' is close to 'params', but params is a column of ours and present: no hint
    path = _write(tmp_path, "kernel,params,dtype", ['matmul,"{}",fp32'])
    with pytest.raises(SpecError) as info:
        bench.read_measurements(path)
    assert "missing column(s) median_s" in str(info.value) and "looks like" not in str(info.value)


def test_read_measurements_missing_or_empty(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        bench.read_measurements(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SpecError, match="is empty"):
        bench.read_measurements(tmp_path / "empty.csv")


def test_resume_refuses_foreign_header(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="another --output"):
        bench.run_bench(p, mode="tiny", progress=False)
