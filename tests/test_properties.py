"""Properties of the roofline model (Hypothesis) and of the shipped spec files.

Hardware variants are always re-validated: ``Hardware.model_validate({**hw.model_dump(), ...})``
(python-mode dumps keep units, e.g. "1230000000000.0 B/s"); never ``model_copy(update=...)``,
which would skip validation.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel import catalog, engine
from perfmodel.cli import main
from perfmodel.specs import (DTYPE_BYTES, AttentionOp, ElementwiseOp, Hardware, MatmulOp, SpecError,
                             Workload, load_model, read_yaml)

REPO = Path(__file__).resolve().parents[1]
CHIPS = catalog.builtin_names("hardware")
HW = {n: catalog.load_hardware(n) for n in CHIPS}
TIMES = ("t_compute", "t_memory", "t_lower", "t_upper")

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- strategies ---------------------------------------------------------------------------

@st.composite
def chip_and_op(draw, batch: int | None = None):
    """A built-in chip and an op in any dtype (every dtype runs on every chip: precision.py)."""
    hw = HW[draw(st.sampled_from(CHIPS))]
    dtype = draw(st.sampled_from(sorted(DTYPE_BYTES)))
    kind = draw(st.sampled_from(["matmul", "elementwise", "attention"]))
    dim = st.integers(1, 16384)
    if kind == "matmul":
        op = MatmulOp(name="mm", kind="matmul", dtype=dtype, m=draw(dim), k=draw(dim),
                      n=draw(dim), batch=batch or draw(st.integers(1, 64)))
    elif kind == "elementwise":
        ins = draw(st.integers(0, 4))
        op = ElementwiseOp(name="ew", kind="elementwise", dtype=dtype,
                           shape=draw(st.lists(st.integers(1, 4096), min_size=1, max_size=3)),
                           inputs=ins, outputs=draw(st.integers(0 if ins else 1, 3)),
                           flops_per_element=draw(st.floats(0, 100)))
    else:
        op = attention(draw, dtype, batch)
    return hw, op


def attention(draw, dtype="bf16", batch=None, impl=None):
    kv_heads = draw(st.integers(1, 8))
    seq, causal = draw(st.integers(1, 16384)), draw(st.booleans())
    # causal queries are the last seq of kv_seq positions, so causal needs kv_seq >= seq
    kv_seq = draw(st.none() | st.integers(seq if causal else 1, 16384 + seq))
    return AttentionOp(
        name="at", kind="attention", dtype=dtype, batch=batch or draw(st.integers(1, 8)),
        seq=seq, kv_seq=kv_seq, heads=kv_heads * draw(st.integers(1, 8)), kv_heads=kv_heads,
        head_dim=draw(st.sampled_from([32, 64, 80, 128, 256])), causal=causal,
        impl=impl or draw(st.sampled_from(["naive", "fused", "flash"])))


def variant(hw: Hardware, **fields) -> Hardware:
    return Hardware.model_validate({**hw.model_dump(), **fields})


def scale_rates(d, k: float):
    """The dump with every rate (B/s and FLOP/s strings, as the dump writes them) times k."""
    if isinstance(d, dict):  # citations are text, not rates
        return {key: v if key in ("sources", "alternatives") else scale_rates(v, k)
                for key, v in d.items()}
    if isinstance(d, list):
        return [scale_rates(v, k) for v in d]
    m = re.fullmatch(r"(\S+) (B/s|FLOP/s)", d) if isinstance(d, str) else None
    return f"{float(m[1]) * k!r} {m[2]}" if m else d


# ---- roofline properties ------------------------------------------------------------------

@FAST
@given(chip_and_op(), st.floats(1, 100), st.floats(1, 100))
def test_more_bandwidth_or_flops_never_slower(case, more_bw, more_flops):
    hw, op = case
    base = engine.evaluate_op(op, hw)
    for faster in (
        variant(hw, hbm_bandwidth=f"{hw.hbm_bandwidth * more_bw!r} B/s"),
        variant(hw, peak_flops={d: f"{v * more_flops!r} FLOP/s" for d, v in hw.peak_flops.items()}),
    ):
        r = engine.evaluate_op(op, faster)
        for t in TIMES:
            assert r[t] <= base[t], (t, r[t], base[t])


@FAST
@given(st.sampled_from(CHIPS), st.data(), st.floats(1, 1000))
def test_more_onchip_memory_never_adds_flash_traffic(chip, data, more):
    hw = HW[chip]
    op = attention(data.draw, dtype=sorted(hw.peak_flops)[0], impl="flash")
    bigger = variant(hw, onchip_memory=hw.onchip_memory * more)
    small, big = engine.evaluate_op(op, hw), engine.evaluate_op(op, bigger)
    assert big["q_block"] >= small["q_block"]
    assert big["hbm_bytes"] <= small["hbm_bytes"]
    assert big["t_lower"] <= small["t_lower"]


@FAST
@given(chip_and_op())
def test_lower_le_upper_le_terms_times_lower(case):
    hw, op = case
    r = engine.evaluate_op(op, hw)
    terms = [c for c in r if c.startswith("t_") and c not in ("t_lower", "t_upper")]
    assert terms == ["t_compute", "t_memory"]  # compute ops: two time terms, k = 2
    k = len(terms)
    assert 0 < r["t_lower"] <= r["t_upper"] <= k * r["t_lower"]
    assert r["t_lower"] == max(r[t] for t in terms)
    assert r["bound"] == ("compute" if r["t_compute"] >= r["t_memory"] else "memory")


@FAST
@given(st.data(), st.integers(2, 64))
def test_flops_and_bytes_linear_in_batch(data, b):
    hw, one = data.draw(chip_and_op(batch=1).filter(lambda c: c[1].kind != "elementwise"))
    many = one.model_validate({**one.model_dump(), "batch": b})
    r1, rb = engine.evaluate_op(one, hw), engine.evaluate_op(many, hw)
    for col in ("flops", "flops_exec", "hbm_bytes"):
        assert rb[col] == pytest.approx(b * r1[col], rel=1e-12), col
    if one.kind == "attention":  # on-chip working set is per (example, head): batch-free
        assert rb["onchip_bytes"] == r1["onchip_bytes"]


@FAST
@given(chip_and_op(), st.floats(1e-3, 1e3))
def test_scaling_every_rate_scales_every_time(case, k):
    hw, op = case
    scaled = Hardware.model_validate(scale_rates(hw.model_dump(), k))
    assert scaled.hbm_bandwidth == pytest.approx(k * hw.hbm_bandwidth, rel=1e-15)
    base, r = engine.evaluate_op(op, hw), engine.evaluate_op(op, scaled)
    for t in TIMES:
        assert r[t] == pytest.approx(base[t] / k, rel=1e-12), t
    for unchanged in ("flops", "hbm_bytes", "intensity", "ridge", "mfu", "mbu"):
        assert r[unchanged] == pytest.approx(base[unchanged], rel=1e-12), unchanged
    if not math.isclose(base["t_compute"], base["t_memory"], rel_tol=1e-9):
        assert r["bound"] == base["bound"]


# ---- shipped files ------------------------------------------------------------------------

HW_FILES = sorted((REPO / "hardware").glob("*.yaml"))
WL_FILES = sorted((REPO / "workloads").glob("*.yaml"))


def test_shipped_files_are_found():
    assert {p.stem for p in HW_FILES} >= {"tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "a100",
                                          "h100", "h200", "b200"}
    assert {p.stem for p in WL_FILES} >= {"course-attention", "course-matmul-sweep",
                                          "course-elementwise", "course-big-matmul"}
    # the package ships the same files (name lookup works from an installed wheel)
    assert catalog.builtin_names("hardware") == [p.stem for p in HW_FILES]
    assert catalog.builtin_names("workloads") == [p.stem for p in WL_FILES]


@pytest.mark.parametrize("path", HW_FILES, ids=lambda p: p.name)
def test_shipped_hardware_validates(path):
    hw = load_model(path, Hardware)
    assert hw.name == path.stem
    assert hw.hbm_bandwidth > 0 and all(v > 0 for v in hw.peak_flops.values())
    # the python-mode dump re-validates to the same spec (what-if variants rely on it)
    assert Hardware.model_validate(hw.model_dump()) == hw


@pytest.mark.parametrize("path", WL_FILES, ids=lambda p: p.name)
def test_shipped_workload_validates_and_evaluates(path):
    from perfmodel.model.hf_config import resolve_workload

    data, node = read_yaml(path)  # a transformer's config: is resolved at load, as catalog does
    wl = load_model(path, Workload, resolve_workload(data, path), node)
    assert wl.name == path.stem
    ran = 0
    for hw in HW.values():
        try:
            rows = engine.evaluate_rows(hw, wl)
        except SpecError as e:  # e.g. collectives on a chip without that interconnect
            assert repr(hw.name) in str(e)  # a clear refusal that names the chip
            continue
        ran += 1
        for row in rows:
            assert math.isfinite(row["t_lower"]) and row["t_lower"] > 0, (hw.name, row["name"])
    assert ran >= 1


@pytest.mark.parametrize("what, files", [("hardware", HW_FILES), ("workload", WL_FILES)])
def test_schema_command_prints_json_schema(what, files):
    res = CliRunner().invoke(main, ["schema", what])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert "name" in schema["required"]
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator
    validator.check_schema(schema)
    # the schema describes the files as written (unit strings such as "1.23 TB/s"), so an
    # editor using it accepts every shipped file
    for path in files:
        data, _ = read_yaml(path)
        errors = [f"{list(e.path)}: {e.message}" for e in validator(schema).iter_errors(data)]
        assert not errors, (path.name, errors[:3])
