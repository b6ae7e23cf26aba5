"""What-if variants, compare and sweeps (issue: hardware A vs B vs a hypothetical C)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel import catalog, engine, results, whatif
from perfmodel.cli import main
from perfmodel.specs import SpecError, Workload
from perfmodel.sweeps import crossovers, parse_vary, sweep, sweep_totals

from . import lo


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("setting,field", [
    ("hbm_bandwidth=2x", "hbm_bandwidth"),
    ("onchip_memory=64MiB", "onchip_memory"),
    ("peak_flops.bf16=1.5x", "peak_flops.bf16"),
    ("interconnect.hop_latency=0.5 us", "interconnect.hop_latency"),
])
def test_set_changes_exactly_the_named_field(setting, field):
    base = catalog.load_hardware("tpu-v6e")
    path, value = setting.split("=")
    var = whatif.apply_override(base, path, value)
    a, b = _flat(base.model_dump(mode="json")), _flat(var.model_dump(mode="json"))
    changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    # the name and the citation of the overridden field record the what-if; nothing else moves
    assert changed - {"name"} - {k for k in changed if k.startswith("sources.")} == {field}
    assert var.name == f"tpu-v6e[{setting}]"


def test_set_values():
    v6e = catalog.load_hardware("tpu-v6e")
    assert whatif.apply_override(v6e, "hbm_bandwidth", "2x").hbm_bandwidth == 2 * 1.6e12
    assert whatif.apply_override(v6e, "onchip_memory", "64MiB").onchip_memory == 64 * 2**20
    # a dtype the chip lacks can be added
    assert whatif.apply_override(v6e, "peak_flops.fp8", "1.8 PFLOP/s").peak_flops["fp8"] == 1.8e15


@pytest.mark.parametrize("arg,needle", [
    ("tpu-v6e.hbm_bandwith=2x", "did you mean hbm_bandwidth"),
    ("tpu-v6e.hbm_bandwidth=3 TFLOP/s", "FLOP rate"),
    ("tpu-v6e.hbm_bandwidth=-2x", "hbm_bandwidth"),
    ("tpu-v6e.hbm_bandwidth", "CHIP.FIELD=VALUE"),
    ("h100.hbm_bandwidth=2x", "not among --hardware"),
    ("tpu-v6e.matmul_tile=2.5", "matmul_tile"),
])
def test_bad_set_is_a_clear_error(arg, needle):
    r = CliRunner().invoke(main, ["compare", "-H", "tpu-v6e", "-w", "course-big-matmul", "--set", arg])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_base_yaml_overrides_fields(tmp_path):
    p = tmp_path / "hyp.yaml"
    p.write_text("base: tpu-v6e\nname: v6e-hbm4\nhbm_bandwidth: 3.2 TB/s\n"
                 "sources: {hbm_bandwidth: hypothetical}\n")
    hw = catalog.load_hardware(p)
    assert hw.hbm_bandwidth == 3.2e12 and hw.peak_flops == catalog.load_hardware("tpu-v6e").peak_flops
    p.write_text("base: tpu-v6e\nname: bad\nhbm_bandwidth: 3.2 TB\n")
    with pytest.raises(SpecError, match="hbm_bandwidth"):
        catalog._load.cache_clear() or catalog.load_hardware(p)


@pytest.mark.parametrize("arg,needle", [
    ("m", "FIELD=LO..HI"), ("m=10..1", "above HI"), ("m=1..10:0", "positive"),
    ("m=1..x", "not a number"), ("m=0..8:log2", "LO > 0"), ("m=1..1e9:1", "more than"),
    ("q=1,2", "no op"), ("m=0,1", "invalid"), ("m=1.5,2", "invalid"),
])
def test_bad_vary_is_a_clear_error(arg, needle):
    wl = Workload.model_validate({"name": "x", "ops": [{"name": "a", "kind": "matmul", "m": 1, "k": 8, "n": 8}]})
    with pytest.raises(SpecError, match=needle):
        sweep(wl, [catalog.load_hardware("tpu-v5e")], [arg])


def test_parse_vary_forms():
    assert parse_vary("m=128..1024:log2").values == (128, 256, 512, 1024)
    assert parse_vary("m=1..10:3").values == (1, 4, 7, 10)
    assert parse_vary("impl=naive,flash").values == ("naive", "flash")


def test_sweep_agrees_with_single_evaluations_point_by_point():
    wl = catalog.load_workload("course-attention")
    hws = [catalog.load_hardware("tpu-v5e"), catalog.load_hardware("h100")]
    df = sweep(wl, hws, ["seq=512..8192:log2", "heads=1,4", "impl=naive,flash"])
    assert len(df) == 5 * 2 * 2 * len(hws) * len(wl.ops)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(df), 40, replace=False):
        row = df.iloc[i]
        hw = next(h for h in hws if h.name == row.hardware)
        base = next(o for o in wl.ops if o.name == row.op)
        kv = None if base.kv_seq is None else base.kv_seq
        op = type(base).model_validate({**base.model_dump(), "seq": int(row.seq), "heads": int(row.heads),
                                        "impl": row.impl, "kv_seq": kv})
        want = engine.evaluate_op(op, hw)
        for c in ("flops", "hbm_bytes", "t_lower", "t_upper", "intensity"):
            assert row[c] == pytest.approx(want[c], rel=1e-12), (c, row.to_dict())
        assert row.bound == want["bound"]


def test_totals_are_sums_over_ops():
    wl = catalog.load_workload("course-matmul-sweep")
    df = sweep(wl, [catalog.load_hardware("tpu-v4")], ["batch=1..8:log2"])
    tot = sweep_totals(df)
    assert len(tot) == 4
    for _, t in tot.iterrows():
        part = df[df.batch == t.batch]
        assert t.t_lower == pytest.approx(part.t_lower.sum())


def test_crossover_matches_hand_derivation():
    # bf16 [m,4096] x [4096,16384] on v5e (HBM 8.1e11 B/s, the spec's primary figure; peak
    # 1.97e14): ridge R = 1.97e14/8.1e11 = 243.2. Unpadded, AI = mkn/(mk+kn+mn) > R when
    # m > R k n / (k n - R (k + n)) = 243.2*67108864/(67108864 - 243.2*20480) = 262.7 -> m = 263.
    # The bound uses time with m padded to the 128 MXU tile: at m = 256, t_compute =
    # 2*256*4096*16384/1.97e14 = 174.4 us < t_memory = 2*(256*4096+4096*16384+256*16384)/8.1e11
    # = 178.6 us (memory); at m = 257 (padded to 384) t_compute = 261.6 us > t_memory 178.7 us.
    wl = Workload.model_validate({"name": "x", "ops": [{"name": "proj", "kind": "matmul", "m": 1,
                                                         "k": 4096, "n": 16384}]})
    v5e = catalog.load_hardware("tpu-v5e")
    df = sweep(wl, [v5e], ["m=1..1024:1"])
    lines = crossovers(df, "m")
    assert "proj on tpu-v5e: memory -> compute between m=256 and m=257" in lines
    # after 257 it stays compute-bound
    assert (df[df.m >= 257].bound == "compute").all()
    # the unpadded intensity crosses the ridge at 263, as derived
    ridge = 1.97e14 / 8.1e11
    first = int(df[df.intensity > ridge].m.min())
    assert first == 263
    assert math.isclose(df[df.m == 263].intensity.iloc[0], 263 * 4096 * 16384 /
                        (263 * 4096 + 4096 * 16384 + 263 * 16384), rel_tol=1e-12)


def test_no_overtake_when_one_chip_is_never_faster():
    wl = Workload.model_validate({"name": "x", "ops": [{"name": "p", "kind": "matmul", "m": 1,
                                                         "k": 8192, "n": 8192}]})
    hws = [catalog.load_hardware("tpu-v5e"), whatif.apply_override(catalog.load_hardware("tpu-v5e"),
                                                                   "hbm_bandwidth", "0.5x")]
    df = sweep(wl, hws, ["m=1..2048:log2"])
    lines = crossovers(df, "m")
    # half the bandwidth is slower while memory-bound, equal once compute-bound: no overtaking
    assert not any("overtakes" in x for x in lines)
    assert any("memory -> compute" in x for x in lines)


def test_chip_overtake_crossover():
    # two variants of one chip (same tile, so padding cannot decide it): A has twice the HBM
    # bandwidth, B twice the bf16 peak. With P = 1.97e14 FLOP/s, W = 8.1e11 B/s, k = n = 8192,
    # bf16 (F = 2 m 8192^2 for m >= 128, bytes = 2 x 8192 (2m + 8192)):
    #   m = 256: A max(F/P = 174.4 us, bytes/2W = 88.0 us) = 174.4 us;
    #            B max(F/2P = 87.2 us, bytes/W = 176.0 us) = 176.0 us  -> A faster
    #   m = 512: A max(348.8 us, 93.2 us) = 348.8 us; B max(174.4 us, 186.4 us) = 186.4 us -> B
    v5e = catalog.load_hardware("tpu-v5e")
    assert (v5e.peak_flops["bf16"], v5e.hbm_bandwidth) == (1.97e14, 8.1e11)
    a = whatif.apply_override(v5e, "hbm_bandwidth", "2x")
    b = whatif.apply_override(v5e, "peak_flops.bf16", "2x")
    wl = Workload.model_validate({"name": "x", "ops": [{"name": "p", "kind": "matmul", "m": 1,
                                                         "k": 8192, "n": 8192}]})
    df = sweep(wl, [a, b], ["m=1..2048:log2"])
    over = [x for x in crossovers(df, "m") if "overtakes" in x]
    assert over == [f"{b.name} overtakes {a.name} (total t_lower) between m=256 and m=512"]
    tot = sweep_totals(df)
    t = {(h, m): v for h, m, v in zip(tot.hardware, tot.m, tot.t_lower)}
    assert t[(a.name, 256)] == pytest.approx(174.4e-6, rel=1e-3)
    assert t[(b.name, 256)] == pytest.approx(176.0e-6, rel=1e-3)
    assert t[(b.name, 512)] == pytest.approx(186.4e-6, rel=1e-3)
    # the order stays flipped to the end of the range: B keeps the lead
    assert all(t[(b.name, m)] < t[(a.name, m)] for m in (512, 1024, 2048))


def test_sweep_cli_refuses_oversized_excel(tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text("name: x\nops:\n  - {name: a, kind: matmul, m: 1, k: 8, n: 8}\n")
    r = CliRunner().invoke(main, ["sweep", "-w", str(wl), "-H", "tpu-v5e", "--vary", "m=1..1100000:1",
                                  "--output", str(tmp_path / "s.xlsx"), "--csv", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and "Excel" in r.output
    # refused before anything is written: neither the workbook nor the CSV
    assert not (tmp_path / "s.xlsx").exists() and not (tmp_path / "s.csv").exists()


def test_sweep_cli_writes_csv_and_plots(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "-w", "course-matmul-sweep", "-H", "tpu-v5e,tpu-v6e",
                                  "--vary", "batch=1..16:log2", "--csv", str(tmp_path / "s.csv"),
                                  "--output", str(tmp_path / "s.xlsx")])
    assert r.exit_code == 0, r.output
    import pandas as pd

    df = pd.read_csv(tmp_path / "s.csv")
    assert list(df.columns) == ["batch", "op", "hardware", "flops", "hbm_bytes", "intensity",
                                "t_compute", "t_memory", "t_lower", "t_upper", "bound"]
    assert (tmp_path / "s-vs-batch.png").exists() and (tmp_path / "s-roofline.png").exists()


@lo.needs_lo
def test_compare_workbook_ratios_recalculate(tmp_path):
    from .test_workbook import _assert_parity

    out = tmp_path / "cmp.xlsx"
    r = CliRunner().invoke(main, ["compare", "-H", "tpu-v5e,tpu-v6e", "-w", "course-attention",
                                  "--set", "tpu-v6e.hbm_bandwidth=2x", "--output", str(out)])
    assert r.exit_code == 0, r.output
    _assert_parity(out, tmp_path, 100)
    import openpyxl

    ws = openpyxl.load_workbook(out)["Compare"]
    assert any(isinstance(c.value, str) and c.value.startswith("=") and "/" in c.value
               for row in ws.iter_rows() for c in row)


def test_chunked_totals_equal_full_sweep_totals():
    from perfmodel.sweeps import sweep_totals_chunked

    wl = catalog.load_workload("course-attention")
    hw = [catalog.load_hardware("tpu-v5e"), catalog.load_hardware("h100")]
    vary = ["seq=256..4096:256", "batch=1..3:1"]
    full = sweep_totals(sweep(wl, hw, vary))
    fast = sweep_totals_chunked(wl, hw, vary, chunk=7)  # a chunk size that splits configs
    assert len(fast) == len(full)
    for c in ("flops", "hbm_bytes", "t_lower", "t_upper"):
        np.testing.assert_allclose(fast[c].to_numpy(), full[c].to_numpy(), rtol=1e-12)


def test_transformer_sweep_varies_the_model_not_the_ledger_ops():
    # batch on a transformer means sequences per step: each configuration is expanded again, so
    # the sweep's totals equal to_json's step totals at that batch (not a batched-matmul count)
    wl = catalog.load_workload("llama2-7b-decode")
    h100 = catalog.load_hardware("h100")
    tot = sweep_totals(sweep(wl, [h100], ["batch=1,16"]))
    from perfmodel.model import expand_workload, source_workload

    for b in (1, 16):
        src = source_workload(wl)
        data = src.model_dump(exclude_none=True)
        data["ops"][0]["batch"] = b
        want = results.to_json(h100, expand_workload(Workload.model_validate(data)))["total"]
        got = tot[tot.batch == b].iloc[0]
        assert got.t_lower == pytest.approx(want["t_lower"], rel=1e-12)
        assert got.flops == pytest.approx(want["flops"], rel=1e-12)
    with pytest.raises(SpecError, match="transformer"):
        sweep(wl, [h100], ["m=1,2"])


def test_prices_give_cost_per_step_tokens_and_flop_per_dollar():
    # --set adds a price (its citation records the what-if); t_step 1 chip: $ = price/3600 x t
    base = catalog.load_hardware("h100")
    priced = whatif.apply_override(base, "price_per_hour", "3.6")
    wl = catalog.load_workload("llama2-7b-decode")
    t = results.to_json(priced, wl)["total"]
    assert t["usd_per_step"] == pytest.approx(3.6 / 3600 * t["chips"] * t["t_step"], rel=1e-12)
    assert t["usd_per_mtok"] == pytest.approx(t["usd_per_step"] / t["tokens_per_step"] * 1e6, rel=1e-12)
    unpriced = base.model_copy(update={"price_per_hour": None})
    assert "usd_per_step" not in results.to_json(unpriced, wl)["total"]  # no price, no cost
    # kernel workloads: per configuration in a sweep, from t_lower
    k = sweep_totals(sweep(catalog.load_workload("course-big-matmul"), [priced], ["batch=1,2"]))
    assert np.allclose(k.usd_per_step, 3.6 / 3600 * k.t_lower)
    assert np.allclose(k.flop_per_usd, k.flops / k.usd_per_step)


def test_transformer_sweep_says_which_configurations_do_not_fit():
    # the built-in Llama-2-7B decode (KV 2048) on one H100 (80 GiB = 85.9 GB): the KV cache is
    # 2 x 2 B x 2048 x 32 layers x 4096 = 1.07 GB per sequence, so batch 128 (137 GB, plus
    # 13.5 GB of weights) cannot fit while batch 1 does
    r = CliRunner().invoke(main, ["sweep", "-w", "llama2-7b-decode", "-H", "h100",
                                  "--vary", "batch=1,128"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(ln for ln in lines if "fits HBM" in ln)
    assert "memory/chip" in head and "tokens/s" in head
    b1 = next(ln for ln in lines if ln.split()[:2] == ["1", "h100"])
    b128 = next(ln for ln in lines if ln.split()[:2] == ["128", "h100"])
    assert " yes " in f"{b1} " and " no " in f"{b128} "
    assert "does not fit in the chip's memory" in r.output
    assert "ms" in b1 and "e-0" not in b1.split(" yes ")[0]  # times in engineering notation


def test_transformer_sweep_totals_carry_memory_and_fit():
    import perfmodel

    wl = perfmodel.load_workload("llama2-7b-decode")
    tot = perfmodel.sweep_totals(perfmodel.sweep(wl, "h100", "batch=1..128:log2"))
    assert {"memory_bytes_per_chip", "fits_memory"} <= set(tot.columns)
    # memory grows with the batch (the KV cache), and the verdict is the capacity test
    mem = tot["memory_bytes_per_chip"].to_numpy()
    assert (mem[1:] > mem[:-1]).all()
    hbm = perfmodel.load_hardware("h100").hbm_capacity
    assert (tot["fits_memory"].to_numpy(dtype=bool) == (mem <= hbm)).all()


def test_sweep_of_batches_that_do_not_divide_names_ones_that_do():
    r = CliRunner().invoke(main, ["sweep", "-w", "qwen2-7b-train-fsdp", "-H", "h100",
                                  "--vary", "batch=1..256:log2"])
    assert r.exit_code == 2
    assert "e.g. batch=8..256 (multiples of 8)" in r.output
