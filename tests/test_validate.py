"""perfmodel validate: the reference transformer against the model.

Pure tests (no jax in this process): the configs expand and predict, the in-step and attention
backward rules of the calibrated model, the profile attribution (HLO op_name -> ledger row,
overlapping kernels), the report. One subprocess runs the tiny reference models on 1 and on 8
host devices (XLA cost_analysis FLOPs vs ours, the profile breakdown) and XLA's per-element
FLOP conventions of the model's pieces, which explain the remaining FLOP difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel import calibrated, catalog, engine
from perfmodel.calibrate import validate as V
from perfmodel.cli import main
from perfmodel.formula import NS
from perfmodel.model import expand_workload
from perfmodel.ops import REGISTRY, OpContext
from perfmodel.specs import AttentionOp, ElementwiseOp, Hardware


def _calibrated(attention_groups: bool = True) -> Hardware:
    """cpu-local with a made-up calibration of every group a transformer step uses."""
    d = catalog.load_hardware("cpu-local").model_dump(exclude_none=True)
    kinds = {"matmul": {"peak_flops": "300 GFLOP/s", "bandwidth": "20 GB/s", "overhead": "2 us"},
             "elementwise": {"peak_flops": "20 GFLOP/s", "bandwidth": "40 GB/s",
                             "overhead": "80 us", "combine": "max"},
             "softmax": {"peak_flops": "15 GFLOP/s", "bandwidth": "6 GB/s",
                         "overhead": "150 us"}}
    if attention_groups:
        kinds["attention_naive"] = {"peak_flops": "170 GFLOP/s", "bandwidth": "4 GB/s"}
        kinds["attention_decode"] = {"peak_flops": "20 GFLOP/s", "bandwidth": "10 GB/s",
                                     "overhead": "1 ms", "combine": "max"}
    d["name"] = "cpu-test-calibrated"
    d["calibration"] = {"kinds": kinds}
    return Hardware.model_validate(d)


# ---- configs and predictions --------------------------------------------------------------

def test_configs_expand_and_predict():
    hw = _calibrated()
    names = [c.name for c in V.CONFIGS + V.TEST_CONFIGS]
    assert len(names) == len(set(names))
    one = V.configs(quick=True, devices=1)
    assert len(one) >= 4 and {c.fields["mode"] for c in one} == {"train", "decode"}
    assert {c.strategy for c in V.configs(devices=8)} == {"fsdp", "tensor"}
    for c in V.CONFIGS + V.TEST_CONFIGS:
        op = c.op()
        assert op.dtype == op.param_dtype == "fp32" and op.attention == "naive"
        p = V.predict(c, hw)
        assert p["t_lower"] > 0 and p["t_calibrated"] >= p["t_lower"] * 0.1
        assert p["uncalibrated_rows"] == [], c.name  # every kernel row has a fitted formula
        assert 0 < p["flops"]["forward_matmul"] <= p["flops"]["forward"] <= p["flops"]["step"]
        if c.devices > 1:
            assert p["hardware"].endswith("8-host-devices")
    # the 8 host devices share the machine: every rate divided by 8
    hw8 = V.host_devices_hardware(hw)
    assert hw8.peak_flops["fp32"] == pytest.approx(hw.peak_flops["fp32"] / 8)
    assert hw8.calibration.kinds["matmul"].bandwidth == pytest.approx(20e9 / 8)
    assert hw8.interconnect.topology == "switched"


def test_matmul_flops_split():
    """Products of the ledger: every matmul, attention's but its softmax."""
    p = V.predict(V.config("tiny-train"), _calibrated())
    rows = p["rows"]
    attn, attn_b = rows["layer/attn"], rows["layer/attn.bwd"]
    c = V.config("tiny-train").fields
    scores = c["batch"] * c["heads"] * c["seq"] ** 2 * c["layers"]
    assert attn["flops"] == (4 * c["head_dim"] + 5) * scores
    assert attn_b["flops"] == (8 * c["head_dim"] + 2) * scores
    matmuls = sum(r["flops"] for r in rows.values() if r["kind"] == "matmul")
    assert p["flops"]["step_matmul"] == matmuls + 4 * c["head_dim"] * scores * 3


# ---- the calibrated model: kernels inside a step, attention backward ----------------------

def test_in_step_kernels_pay_no_per_call_overhead():
    hw = _calibrated()
    base = dict(name="ew", kind="elementwise", dtype="fp32", shape=[1 << 16], inputs=2,
                outputs=1, flops_per_element=1, repeat=3)
    alone = engine.evaluate_op(ElementwiseOp(**base), hw)["t_calibrated"]
    inside = engine.evaluate_op(ElementwiseOp(**base, in_step=True), hw)["t_calibrated"]
    assert alone - inside == pytest.approx(3 * 80e-6)  # the fitted overhead, per instance
    # a transformer's kernels are marked, its collectives (not calibrated) are not
    wl = expand_workload(V.config("tiny-train-fsdp8").workload())
    kinds = {op.kind: op.in_step for op in wl.ops}
    assert all(op.in_step for op in wl.ops if op.kind != "collective")
    assert kinds["collective"] is False


def _naive(backward: bool, **kw):
    f = dict(name="a", kind="attention", dtype="fp32", batch=2, seq=64, kv_seq=96, heads=8,
             kv_heads=2, head_dim=32, causal=True, impl="naive", backward=backward)
    return AttentionOp(**{**f, **kw})


def test_naive_attention_backward_parts_add_up():
    """dV, dP, softmax backward, dQ, dK: exactly the backward model's FLOPs and bytes."""
    hw = _calibrated()
    op = _naive(True)
    row = engine.evaluate_op(op, hw)
    e = NS({k: np.float64(v) for k, v in REGISTRY["attention"].inputs(op, OpContext(None, hw))
            .items()})
    parts = calibrated.naive_attention_bwd_parts(e)
    assert [g for g, *_ in parts] == ["matmul", "matmul", "softmax", "matmul", "matmul"]
    assert sum(float(f) for _, f, _, _ in parts) == pytest.approx(row["flops"])
    assert sum(float(b) for _, _, b, _ in parts) == pytest.approx(row["hbm_bytes"])


def test_attention_backward_calibration():
    """With an attention group the backward takes it on its own FLOPs and bytes; without,
    naive attention's backward is the sum of its parts; either way it has a t_calibrated."""
    fwd, bwd = _naive(False), _naive(True)
    hw = _calibrated()
    k = hw.calibration.kinds["attention_naive"]
    r = engine.evaluate_op(bwd, hw)
    assert r["t_calibrated"] == pytest.approx(k.overhead + r["flops"] / k.peak_flops
                                              + r["hbm_bytes"] / k.bandwidth)
    f = engine.evaluate_op(fwd, hw)
    assert r["t_calibrated"] > f["t_calibrated"]
    plain = _calibrated(attention_groups=False)
    rb = engine.evaluate_op(bwd, plain)["t_calibrated"]
    mm, sm = plain.calibration.kinds["matmul"], plain.calibration.kinds["softmax"]
    e = NS({k: np.float64(v) for k, v in REGISTRY["attention"].inputs(bwd, OpContext(None, plain))
            .items()})
    expect = sum(float(f) / mm.peak_flops + float(b) / mm.bandwidth + mm.overhead
                 if g == "matmul" else
                 float(f) / sm.peak_flops + float(b) / sm.bandwidth + sm.overhead
                 for g, f, b, _ in calibrated.naive_attention_bwd_parts(e))
    assert rb == pytest.approx(expect)
    assert engine.evaluate_op(bwd, catalog.load_hardware("cpu-local")).get("t_calibrated") is None


# ---- profile attribution ------------------------------------------------------------------

def test_share_time_splits_overlaps_evenly():
    ev = [(0, 10, "a"), (5, 15, "b"), (20, 30, "a")]
    t = V.share_time(ev)
    assert t == {"a": pytest.approx(5 + 2.5 + 10), "b": pytest.approx(2.5 + 5)}
    assert sum(t.values()) == pytest.approx(25)  # the busy wall time, not 30
    assert V.share_time([]) == {}


def test_ledger_row_from_op_name():
    paths = {"layer/attn", "layer/attn/qkv", "layer/mlp/up", "optimizer/adam", "embed/lookup"}
    f = V.ledger_row
    assert f("jit(step)/jvp(layer/attn/qkv)/dot_general", paths) == "layer/attn/qkv"
    assert f("jit(step)/transpose(jvp(layer/attn))/jit(_where)/select_n", paths) == \
        "layer/attn.bwd"
    assert f("jit(step)/layer/mlp/up/dot_general", paths) == "layer/mlp/up"
    assert f("jit(step)/optimizer/adam/sqrt", paths) == "optimizer/adam"
    assert f("jit(step)/transpose(jvp(embed/lookup))/scatter-add", paths) == "embed/lookup.bwd"
    assert f("jit(step)/layer/attnx/add", paths) == "(unscoped)"
    assert f("", paths) == "(unscoped)"


HLO = """HloModule jit_step

%fused_computation (p: f32[4,8]) -> f32[4,8] {
  ROOT %p = f32[4,8]{1,0} parameter(0)
}

ENTRY %main (p__layers___0___wqkv__.1: f32[8,24], x.1: f32[4,8]) -> f32[4,8] {
  %p__layers___0___wqkv__.1 = f32[8,24]{1,0} parameter(0), metadata={op_name="p[\\'layers\\'][0][\\'wqkv\\']"}
  %x.1 = f32[4,8]{1,0} parameter(1), metadata={op_name="x"}
  %norm_fusion = f32[4,8]{1,0} fusion(%x.1), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(step)/layer/norm1/mul"}
  %dot.3 = f32[4,24]{1,0} dot(%norm_fusion, %p__layers___0___wqkv__.1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %bitcast.1 = f32[4,3,8]{2,1,0} bitcast(%dot.3)
  %dot.4 = f32[4,8]{1,0} dot(%bitcast.1, %bitcast.1), lhs_batch_dims={0}
  %select_fusion = f32[4,8]{1,0} fusion(%dot.4), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(step)/layer/attn/select_n"}
  ROOT %copy.1 = f32[4,8]{1,0} copy(%select_fusion)
}
"""


class _Compiled:
    def as_text(self):
        return HLO


def test_hlo_names_fill_in_missing_metadata():
    names = V.hlo_op_names(_Compiled())
    paths = {"layer/norm1", "layer/attn/qkv", "layer/attn"}
    rows = {k: V.ledger_row(v, paths) for k, v in names.items()}
    assert rows["norm_fusion"] == "layer/norm1"
    assert rows["dot.3"] == "layer/attn/qkv"      # reads the wqkv parameter
    assert rows["dot.4"] == "layer/attn"          # nearest neighbour with a ledger path
    assert rows["copy.1"] == "layer/attn"
    assert "fused_computation" not in names and "p" not in names  # entry computation only


# ---- report and command line --------------------------------------------------------------

def _report():
    m = {"median_s": 0.2, "min_s": 0.19, "p20_s": 0.195, "cv": 0.02, "reps": 9, "others": 0.0}
    rec = {"config": "tiny-train", "devices": 1, "measured": m,
           "xla": {"forward": {"flops": 6.7e6, "bytes": 1e6, "transcendentals": 0.0},
                   "step": {"flops": 2.14e7, "bytes": 3e6, "transcendentals": 0.0}},
           "breakdown": {"(others)": 0.0, "layer/attn": {"t": 0.05, "kernels": {"k1": 0.05}},
                         "layer/norm1": {"t": 0.0, "kernels": {}}}}
    c = V.compare(V.config("tiny-train"), rec, _calibrated())
    return {"hardware": "cpu-test-calibrated", "hardware_path": "x", "mode": "quick",
            "jax_version": "0", "backend": "cpu", "configs": [c],
            "summary": {"configs": 1, "median_abs_err_calibrated": abs(c["err_calibrated"]),
                        "median_abs_err_roofline": abs(c["err_roofline"]),
                        "median_cv": 0.02, "max_others": 0.0},
            "conventions": {"matmul (2MNK)": {"xla": 1.0, "perfmodel": 1.0}}}


def test_report_text():
    rep = _report()
    c = rep["configs"][0]
    assert c["err_calibrated"] == pytest.approx(c["t_calibrated"] / 0.2 - 1)
    assert c["flops"][1]["diff"] == pytest.approx(c["flops"][1]["flops"] / 2.14e7 - 1)
    text = V.report_text(rep)
    for s in ("Step time, 1 device", "median |error| over 1 configs", "layer/attn",
              "none: fused into neighbouring rows", "FLOPs per device", "matmul (2MNK)"):
        assert s in text, s


def test_validate_needs_a_spec():
    r = CliRunner().invoke(main, ["validate", "--hardware", "no-such-chip"])
    assert r.exit_code == 2 and "unknown hardware" in r.output


# ---- the reference model in JAX (one subprocess, 1 and 8 host devices) -------------------

@pytest.fixture(scope="module")
def measured():
    pytest.importorskip("jax")
    names = [c.name for c in V.TEST_CONFIGS]
    return {r["config"]: r for r in V.in_subprocess("measure", names=names, mode="tiny")}


def test_reference_model_flops_match_ours(measured):
    """XLA cost_analysis of the compiled forward and step vs our FLOPs (per device). Products
    are counted alike; the rest is the elementwise conventions (test_xla_conventions), about
    1-2% of these tiny models (d_model 64) and under 0.2% of the validate configs."""
    hw = _calibrated()
    for name, rec in measured.items():
        c = V.compare(V.config(name), rec, hw)
        progs = {f["program"]: f for f in c["flops"]}
        assert set(progs) == ({"forward", "step"} if "train" in name else {"step"})
        for f in progs.values():
            assert abs(f["diff"]) <= 0.025, (name, f)
            # the whole difference is within the non-product FLOPs
            assert abs(f["xla_flops"] - f["flops"]) <= max(f["other_flops"],
                                                           f["xla_other_flops"])
    tr = V.compare(V.config("tiny-train"), measured["tiny-train"], hw)["flops"]
    assert all(abs(f["diff"]) <= 0.02 for f in tr)


def test_reference_model_runs_and_profiles(measured):
    for name, rec in measured.items():
        m = rec["measured"]
        assert m["median_s"] > 0 and m["reps"] >= 2
        if rec["devices"] == 1:
            b = dict(rec["breakdown"])
            b.pop("(others)")
            paths = V.ledger_paths(V.config(name))
            rows = {r.split(".")[0] for r in b} - {"(unscoped)"}
            assert rows <= paths
            total = sum(r["t"] for r in b.values())
            assert b.get("(unscoped)", {"t": 0})["t"] <= 0.1 * total
            assert {"layer/attn/qkv", "layer/mlp/down"} <= rows
        else:
            assert "breakdown" not in rec  # profiled on one device only


def test_xla_conventions():
    """XLA's FLOPs per element of the reference's pieces: products exactly 2MNK, the norm and
    SiLU as the ledger counts them; the ledger's ReLU (4, for gelu/relu), softmax (5 per score,
    no scale or mask), its backward (2) and Adam (12) are conventions, pinned here."""
    pytest.importorskip("jax")
    c = V.in_subprocess("xla_conventions")
    x = {k: v["xla"] for k, v in c.items()}
    assert x["matmul (2MNK)"] == 1.0
    assert x["attention QK^T (2 per score per head_dim)"] == 1.0
    assert x["residual add + RMSNorm"] == pytest.approx(5.0, abs=0.05)
    assert x["SiLU gate"] == 5.0 and x["SiLU gate backward"] == 10.0
    assert x["ReLU"] == 1.0 and x["ReLU backward"] == 2.0
    assert x["scale + mask + softmax (per score)"] == pytest.approx(6.1, abs=0.2)
    assert x["Adam (per parameter)"] == pytest.approx(13.0, abs=0.01)
    assert all(v["perfmodel"] > 0 for v in c.values())


def test_wait_for_a_quiet_machine_says_what_it_waits_for(monkeypatch):
    from perfmodel.calibrate import bench

    shares = iter([0.55, 0.40, 0.05])  # busy, still busy, quiet
    monkeypatch.setattr(bench.CpuMeter, "others", lambda self: next(shares))
    said = []
    got = V.wait_quiet(5.0, window_s=0.01, log=said.append)
    assert got == 0.05
    assert len(said) == 1  # one line when the wait begins, not one per window
    assert "quiet machine" in said[0] and "55%" in said[0] and "20%" in said[0]
    shares = iter([0.0])
    said.clear()
    assert V.wait_quiet(5.0, window_s=0.01, log=said.append) == 0.0 and said == []
