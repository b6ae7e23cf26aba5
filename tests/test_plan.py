"""perfmodel plan: the search, its agreement with `roofline` on the equivalent workload, the
issue's acceptance cases (small searches), remat dots, grad_accum and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from perfmodel import api, plan
from perfmodel.cli import main
from perfmodel.results import to_json
from perfmodel.model import expand_workload, source_workload
from perfmodel.model.batched import Structure
from perfmodel.report.plots import pareto_front
from perfmodel.specs import SpecError, Workload

TINY = {"name": "tiny", "kind": "transformer", "layers": 4, "d_model": 512, "heads": 8,
        "kv_heads": 2, "head_dim": 64, "d_ff": 1536, "vocab": 4096, "mlp": "gated", "seq": 512}
COMPARED = ("t_step", "tokens_per_s", "mfu", "memory_bytes_per_chip")


def model_file(tmp_path, op=TINY, name="tiny", **top):
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, **top, "ops": [dict(op)]}, sort_keys=False))
    return str(p)


def run(args):
    return CliRunner().invoke(main, ["plan", *args])


def agree(result, rows):
    """Each row's figures against to_json of its explain YAML (the roofline path)."""
    worst = 0.0
    for _, row in rows.iterrows():
        wl = expand_workload(Workload.model_validate(yaml.safe_load(
            plan.candidate_yaml(result, row))))
        hw = result.hardware[int(row["hi"])]
        tot = to_json(hw, wl)["total"]
        for c in COMPARED:
            worst = max(worst, abs(row[c] - tot[c]) / abs(tot[c]))
    return worst


@pytest.mark.parametrize("mode,chips,extra", [
    ("train", [8], {}), ("prefill", [4], {}), ("decode", [8], {}),
    ("train", [8], {"attention": "naive", "optimizer": "sgd", "param_dtype": "fp32"}),
    ("train", [8], {"experts": 4, "top_k": 2}), ("decode", [8], {"experts": 4, "top_k": 2})])
def test_every_sampled_candidate_is_the_roofline_model(tmp_path, mode, chips, extra):
    """A sample of configurations (feasible or not, every strategy layout, remat, grad_accum,
    pipeline microbatches) equals perfmodel roofline's to_json on the explain YAML to 1e-12."""
    path = model_file(tmp_path, {**TINY, **extra})
    req = plan.load_request(path, mode=mode, batches=[8, 32])
    res = plan.search(req, [api.load_hardware("tpu-v5p")], chips)
    t = res.table
    assert len(t) > 20
    sample = t.sample(n=min(25, len(t)), random_state=0)
    # the sample covers pipeline microbatches and (in training) remat dots and grad_accum
    if mode == "train":
        assert {"none", "dots", "full"} <= set(t["remat"]) and t["grad_accum"].max() > 1
    assert t["microbatches"].max() > 1
    assert agree(res, sample) < 1e-12
    piped = t[t["microbatches"] > 1].head(3)
    assert agree(res, piped) < 1e-12


def test_structure_matches_to_json_on_gpu_nodes():
    """Two H100 nodes (NVLink + scale-out), the batched evaluation of the hand-written
    workload's structure at several batches equals to_json at each."""
    hw = api.load_hardware("h100")
    src = source_workload(api.load_workload("llama2-7b-train-fsdp")).model_dump()
    src.update(slice="2x8", mesh={"data": 2, "fsdp": 8})
    src["ops"][0]["parallelism"] = {"data": "data", "fsdp": "fsdp"}
    src["ops"][0]["batch"] = 16
    wl = Workload.model_validate(src)
    out = Structure(hw, wl).evaluate(np.array([16, 32, 64]), 1, np.array([1, 2, 4]))
    for i, (b, g) in enumerate([(16, 1), (32, 2), (64, 4)]):
        d = json.loads(json.dumps(src))
        d["ops"][0].update(batch=b, grad_accum=g)
        tot = to_json(hw, Workload.model_validate(d))["total"]
        for c in COMPARED:
            assert out[c][i] == pytest.approx(tot[c], rel=1e-12)


def test_llama2_7b_train_on_8_v5p_matches_or_beats_the_hand_written_fsdp():
    """Acceptance: the best of the search at the hand-written workload's batch (8) is at least
    as fast as llama2-7b-train-fsdp (FSDP 8, remat none), which is itself among the candidates;
    pure data parallelism on 8 v5e does not fit (6.74B params x (2 + 2 + 8) bytes = 81 GB)."""
    hw = api.load_hardware("tpu-v5p")
    hand = to_json(hw, api.load_workload("llama2-7b-train-fsdp"))["total"]
    req = plan.load_request("llama2-7b", mode="train", batches=[8])
    res = plan.search(req, [hw], [8])
    best = res.ranked().iloc[0]
    assert best["tokens_per_s"] >= hand["tokens_per_s"] * (1 - 1e-12)
    fsdp = [i for i, lay in enumerate(res.layouts) if lay.sizes() == {"fsdp": 8}]
    t = res.table
    mine = t[t["layout_id"].isin(fsdp) & (t["remat"] == "none") & (t["grad_accum"] == 1)]
    assert mine["t_step"].iloc[0] == pytest.approx(hand["t_step"], rel=1e-12)
    text = plan.explain_text(res, 1)
    assert "why:" in text and "layer" in text

    v5e = plan.search(req, [api.load_hardware("tpu-v5e")], [8])
    dp = [i for i, lay in enumerate(v5e.layouts) if lay.sizes() == {"data": 8}]
    rows = v5e.table[v5e.table["layout_id"].isin(dp)]
    assert len(rows) and set(rows["reason"]) == {"memory"}
    assert rows["memory_bytes_per_chip"].min() > 6.7e9 * 12  # params + grads + Adam
    assert any(line.startswith("data 8") and "memory" in line
               for line in plan.single_strategy_lines(v5e))


def test_llama3_70b_decode_on_v5e_smallest_slice_and_int8(tmp_path):
    """Acceptance: at 50 ms per token the smallest v5e slice that serves Llama-3-70B in bf16
    has 16 chips (140 GB of weights need > 8 x 15.5 GB), the smaller ones fail on memory; with
    int8 weights (70 GB) 8 chips do."""
    hw = api.load_hardware("tpu-v5e")
    req = plan.load_request("llama3-70b", mode="decode", max_tpot=0.05,
                            batches=[1, 8, 32])
    res = plan.search(req, [hw])
    feas = res.feasible
    smallest = int(feas["chips"].min())
    assert smallest == 16
    assert (feas["t_step"] <= 0.05).all()
    lines = plan.why_lines(res)
    for n in (1, 4, 8):
        line = next(s for s in lines if s.startswith(f"tpu-v5e x{n} "))
        assert "none feasible: memory" in line
    assert "the smallest feasible slice has 16 chips" in "\n".join(lines)

    src = yaml.safe_load(open(plan.resolve_workload("llama3-70b")))
    src["ops"][0]["param_dtype"] = "int8"
    p = tmp_path / "l70-int8.yaml"
    p.write_text(yaml.safe_dump(src))
    req8 = plan.load_request(str(p), mode="decode", max_tpot=0.05, batches=[1, 8, 32])
    res8 = plan.search(req8, [hw])
    assert int(res8.feasible["chips"].min()) < smallest


def test_remat_dots_lies_between_none_and_full():
    """dots keeps the matmul outputs: less memory than none, more than full; it recomputes the
    norms, activation and attention (more FLOPs than none, fewer than full)."""
    hw = api.load_hardware("tpu-v5p")
    base = source_workload(api.load_workload("llama2-7b-train-fsdp")).model_dump()
    tot = {}
    for r in ("none", "dots", "full"):
        d = json.loads(json.dumps(base))
        d["ops"][0]["remat"] = r
        wl = expand_workload(Workload.model_validate(d))
        tot[r] = to_json(hw, wl)["total"]
        if r == "dots":
            names = {op.name for op in wl.ops if op.name.endswith(".remat")}
            assert "layer/attn.remat" in names and "layer/mlp/act.remat" in names
            assert not any("qkv" in n or "mlp/up" in n for n in names)
    act = {r: t["memory_parts"]["activations"] for r, t in tot.items()}
    assert act["full"] < act["dots"] < act["none"]
    fl = {r: t["flops"] for r, t in tot.items()}
    assert fl["none"] < fl["dots"] < fl["full"]
    assert tot["dots"]["mfu"] < tot["none"]["mfu"]  # same model FLOPs, longer step


def test_grad_accum_splits_the_batch_and_counts_passes():
    """grad_accum g: rows per pass are batch / (shards x g); activations shrink by g; the
    forward runs g times (repeat), gradients accumulate in fp32; batch must divide."""
    base = source_workload(api.load_workload("llama2-7b-train-fsdp")).model_dump()
    hw = api.load_hardware("tpu-v5p")
    d = json.loads(json.dumps(base))
    d["ops"][0].update(batch=16, grad_accum=2)
    wl = expand_workload(Workload.model_validate(d))
    up = next(op for op in wl.ops if op.name == "layer/mlp/up")
    # 16 sequences / 8 fsdp shards / 2 accumulation steps = 1 sequence of 4096 tokens per pass
    assert up.m == 4096 and up.repeat == 32 * 2
    one = json.loads(json.dumps(base))
    one["ops"][0].update(batch=16)
    m1 = to_json(hw, Workload.model_validate(one))["total"]["memory_parts"]
    m2 = to_json(hw, wl)["total"]["memory_parts"]
    assert m2["activations"] == pytest.approx(m1["activations"] / 2, rel=0.02)
    assert m2["grads"] == 2 * m1["grads"]  # bf16 gradients summed in fp32
    bad = json.loads(json.dumps(base))
    bad["ops"][0].update(batch=8, grad_accum=2)  # 1 sequence per chip cannot split in 2
    with pytest.raises(Exception, match="grad_accum"):
        expand_workload(Workload.model_validate(bad))


def test_slice_shapes():
    assert plan.slice_shapes(api.load_hardware("tpu-v5e"), 8) == ["2x4", "4x2"]
    assert plan.slice_shapes(api.load_hardware("tpu-v5p"), 8) == ["2x2x2"]
    assert plan.slice_shapes(api.load_hardware("h100"), 16) == ["2x8"]
    assert plan.slice_shapes(api.load_hardware("h100"), 4) == ["4"]
    with pytest.raises(SpecError, match="not sold in a slice of 12"):
        plan.slice_shapes(api.load_hardware("tpu-v5e"), 12)
    # no slices: list: every factorisation into the torus's axes the chip's rules allow
    assert "1x2x4" in plan.slice_shapes(api.load_hardware("tpu-v4"), 8)
    # TPU7x (slice_shapes: cubes_4): 32 chips are 2x4x4 in its three orders, never 1x4x8
    assert plan.slice_shapes(api.load_hardware("tpu-v7"), 32) == ["2x4x4", "4x2x4", "4x4x2"]
    assert plan.slice_shapes(api.load_hardware("mi300x"), 16) == ["2x8"]  # full-mesh nodes


def test_identical_axes_are_searched_once():
    """On a 2x2x2 cube the three axes are alike: (data, fsdp, fsdp) and (fsdp, data, fsdp) are
    one layout; 5 strategies over 3 alike axes give C(5+2, 3) = 35 multisets."""
    req = plan.load_request("llama2-7b", mode="train", batches=[8])
    lays = plan.layouts(api.load_hardware("tpu-v5p"), 8, req)
    assert len(lays) == 35


def test_pareto_front():
    x = np.array([1.0, 2.0, 3.0, 1.5, 2.5])
    y = np.array([1.0, 3.0, 2.0, 0.5, 4.0])
    # (1,1) best at x=1; (2,3) beats (1.5,0.5); (2.5,4) beats (3,2)
    assert list(pareto_front(x, y)) == [0, 1, 4]


def test_cli_json_csv_and_workbook(tmp_path):
    path = model_file(tmp_path)
    out = tmp_path / "plan.xlsx"
    res = run(["-w", path, "-H", "tpu-v5e", "--chips", "4", "--mode", "decode",
               "--batch", "4,8", "--top", "3", "--json", "--csv", str(tmp_path / "p.csv"),
               "-o", str(out)])
    assert res.exit_code == 0, res.output
    js = json.loads(res.stdout)
    assert set(js) >= {"schema_version", "searched", "feasible", "infeasible_by_reason",
                       "candidates"}
    assert js["searched"] == js["feasible"] + sum(js["infeasible_by_reason"].values())
    c = js["candidates"][0]
    for k in ("chip", "chips", "slice", "mesh", "parallelism", "microbatches", "remat",
              "grad_accum", "batch", "t_step", "tokens_per_s", "tokens_per_s_per_chip", "mfu",
              "memory_bytes_per_chip", "fits_memory", "t_per_token", "usd_per_mtok"):
        assert k in c, k
    assert c["t_per_token"] == c["t_step"]
    # $ per million tokens = price x chips x step / tokens: 1.2 USD per chip-hour on v5e
    assert c["usd_per_mtok"] == pytest.approx(1.2 / 3600 * 4 * c["t_step"] / c["batch"] * 1e6,
                                              rel=1e-12)
    assert (tmp_path / "p.csv").read_text().startswith("rank,chip,chips,slice")
    assert out.exists() and (tmp_path / "plan-pareto.png").exists()
    from openpyxl import load_workbook

    ws = load_workbook(out)["Plan"]
    heads = [str(c.value).split("\n")[0] for c in ws[3]]  # the name, above its unit
    col = heads.index("tokens_per_s_per_chip") + 1
    assert ws.cell(3, col).value == "tokens_per_s_per_chip\n[tokens/s]"
    assert str(ws.cell(4, col).value).startswith("=")


def test_cli_explain_prints_a_workload_roofline_accepts(tmp_path):
    path = model_file(tmp_path)
    res = run(["-w", path, "-H", "tpu-v5e", "--chips", "4", "--mode", "prefill",
               "--batch", "4", "--explain", "2"])
    assert res.exit_code == 0, res.output
    body = res.stdout.split("\nwhy:")[0]
    f = tmp_path / "cand.yaml"
    f.write_text(body)
    r2 = CliRunner().invoke(main, ["roofline", "-H", "tpu-v5e", "-w", str(f), "--json"])
    assert r2.exit_code == 0, r2.output


@pytest.mark.parametrize("args,needle", [
    (["--mode", "train", "--max-tpot", "0.05"], "--max-tpot limits decode"),
    (["--mode", "decode", "--chips", "12"], "not sold in a slice of 12"),
    ([], "mode is not stated"),
    (["--mode", "decode", "--batch", "0"], "--batch"),
    (["--mode", "decode", "--batch", "x"], "not a whole number"),
    (["--mode", "decode", "--hbm-fraction", "1.5"], "--hbm-fraction"),
    (["--mode", "decode", "--chips", "4", "--explain", "999"], "--explain 999"),
])
def test_bad_input_exits_2_with_one_paragraph(tmp_path, args, needle):
    res = run(["-w", model_file(tmp_path), "-H", "tpu-v5e", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_bad_field_in_the_model_names_file_and_line(tmp_path):
    path = model_file(tmp_path, {**TINY, "heads": 7})
    res = run(["-w", path, "-H", "tpu-v5e", "--mode", "decode"])
    assert res.exit_code == 2
    assert "tiny.yaml" in res.output and "kv_heads" in res.output


def test_transformer_sweep_over_batch_is_vectorised_and_equals_the_loop():
    """perfmodel.sweep over batch and grad_accum of a transformer takes the batched path; its
    totals and per-op rows equal the per-configuration loop (to_json of each) exactly."""
    import perfmodel.sweeps as sw

    wl = api.load_workload("llama2-7b-train-fsdp")
    hw = api.load_hardware("tpu-v5p")
    vary = ["batch=16..64:16", "grad_accum=1,2"]
    fast = api.sweep(wl, hw, vary)
    saved, sw.BATCHED_FIELDS = sw.BATCHED_FIELDS, ()
    try:
        slow = api.sweep(wl, hw, vary)
    finally:
        sw.BATCHED_FIELDS = saved
    keys = ["batch", "grad_accum", "hardware"]
    a = api.sweep_totals(fast).sort_values(keys).reset_index(drop=True)
    b = api.sweep_totals(slow).sort_values(keys).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if c in ("hardware", "bound"):
            assert (a[c] == b[c]).all(), c
        else:
            assert np.allclose(a[c], b[c], rtol=1e-12, atol=0), c
    fast.attrs.clear()  # the totals (compared above) ride along as a DataFrame attribute
    slow.attrs.clear()
    # the batched table holds op, chip and bound as categories (ledger order): compare as text
    ka = fast.astype({"op": str, "hardware": str, "bound": str}).sort_values(
        keys + ["op"]).reset_index(drop=True)
    kb = slow.assign(i=0).sort_values(keys + ["op"]).reset_index(drop=True)
    assert (ka["op"] == kb["op"]).all() and (ka["bound"] == kb["bound"]).all()
    assert np.allclose(ka["t_lower"], kb["t_lower"], rtol=1e-12, atol=0)
    with pytest.raises(SpecError, match="does not split"):
        api.sweep(wl, hw, ["batch=8..16:8", "grad_accum=2"])


def _cbb_search(hw, spec, mesh):
    """The doubling-and-bisection search the closed form replaced (the definition)."""
    from perfmodel.model import summary as S
    from perfmodel.model.transformer import expand_op, make_plan

    base = make_plan(spec, mesh)
    step = base.batch_shards * base.microbatches
    peak = S.matmul_peak(hw, spec)

    def bound(k):
        s = spec.model_copy(update={"batch": k * step})
        flops = tm = 0.0
        for op, _ in S._ops([(d, r) for d, r in expand_op(s, make_plan(s, mesh))
                             if d["kind"] == "matmul" and d["name"].startswith("layer/")]):
            cost, roof = S.op_columns(op, hw)[1:]
            flops += float(cost["flops"])
            tm += float(roof["t_memory"])
        return flops / peak >= tm

    hi = 1
    while not bound(hi):
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        hi, lo = (mid, lo) if bound(mid) else (hi, mid)
    return hi * step


@pytest.mark.parametrize("chip", ["h100", "tpu-v5e", "tpu-v6e"])
@pytest.mark.parametrize("extra", [{}, {"param_dtype": "int8"},
                                   {"param_dtype": "int8", "compute_dtype": "int8"}])
def test_compute_bound_batch_closed_form_equals_the_search(chip, extra):
    from perfmodel.model.summary import decode_compute_bound_batch

    hw = api.load_hardware(chip)
    wl = source_workload(api.load_workload("llama2-7b-decode"))
    spec = wl.ops[0].model_copy(update=extra)
    assert decode_compute_bound_batch(hw, spec, wl.mesh) == _cbb_search(hw, spec, wl.mesh)


def test_calibrated_chip_prices_one_row_products_as_gemv_in_the_batched_path():
    """On a calibrated chip a product of one row is priced by the fitted gemv group, of more
    rows by the matmul group: the batched evaluation splits the configurations so that each
    equals to_json (decode at batch 8 has one row per chip, at 16 two)."""
    from perfmodel.specs import Calibration, KindCalibration

    base = api.load_hardware("h100")
    kinds = {"gemv_bf16": KindCalibration(peak_flops="1 TFLOP/s", bandwidth="1 TB/s",
                                          overhead="1 us"),
             "matmul_bf16": KindCalibration(peak_flops="500 TFLOP/s", bandwidth="3 TB/s",
                                            overhead="2 us")}
    hw = base.model_copy(update={"calibration": Calibration(kinds=kinds)})
    src = source_workload(api.load_workload("llama2-7b-decode")).model_dump()
    src.update(slice="8", mesh={"data": 8})
    src["ops"][0].update(parallelism={"data": "data"}, batch=8)
    wl = Workload.model_validate(src)
    out = Structure(hw, wl).evaluate(np.array([8, 16, 64]), 1, 1)
    assert out["t_step_basis"] == "t_calibrated"
    for i, b in enumerate([8, 16, 64]):
        d = json.loads(json.dumps(src))
        d["ops"][0]["batch"] = b
        tot = to_json(hw, Workload.model_validate(d))["total"]
        assert out["t_step"][i] == pytest.approx(tot["t_step"], rel=1e-12)
        assert out["t_calibrated"][i] == pytest.approx(tot["t_calibrated"], rel=1e-12)


def test_hbm_fraction_decides_fits_memory_and_the_memory_count(tmp_path):
    """One rule (plan.FITS_MEMORY) marks fits_memory and counts the 'memory' reason. The best
    configuration at --hbm-fraction 0.9, on a chip whose HBM is made 1/0.6 of its need, uses 60%
    of HBM: it fits at 0.9 but not at 0.5, in the table, the JSON and the counts."""
    req = plan.load_request(model_file(tmp_path), mode="decode", batches=[4, 8])
    hw = api.load_hardware("tpu-v5e")
    need = plan.search(req, [hw], [4]).ranked().iloc[0]
    hw = hw.model_copy(update={"hbm_capacity": need["memory_bytes_per_chip"] / 0.6})
    key = ["layout_id", "remat", "batch", "microbatches", "grad_accum"]
    for frac, fits in ((0.9, True), (0.5, False)):
        req.hbm_fraction = frac
        res = plan.search(req, [hw], [4])
        t = res.table
        row = t[(t[key] == need[key]).all(axis=1)]
        assert len(row) == 1 and bool(row["fits_memory"].iloc[0]) is fits
        assert (row["reason"].iloc[0] == "") is fits
        over = t["memory_bytes_per_chip"] > frac * hw.hbm_capacity
        assert list(t["fits_memory"]) == list(~over)
        js = plan.to_json(res, 1000)
        assert js["infeasible_by_reason"]["memory"] == int(over.sum()) > 0
        assert all(c["fits_memory"] and c["memory_bytes_per_chip"] <= frac * hw.hbm_capacity
                   for c in js["candidates"])
        assert js["feasible"] == len(js["candidates"])
        assert any(c["memory_bytes_per_chip"] == need["memory_bytes_per_chip"]
                   for c in js["candidates"]) is fits


def test_derived_columns_are_the_plan_formulas(tmp_path):
    """tokens_per_s_per_chip in the table (JSON, CSV) is PLAN_FORMULAS' expression evaluated."""
    from perfmodel.formula import evaluate

    res = plan.search(plan.load_request(model_file(tmp_path), mode="decode", batches=[4, 8]),
                      [api.load_hardware("tpu-v5e")], [4])
    for col, f in plan.PLAN_FORMULAS.items():
        want = evaluate(f, {c: res.table[c].to_numpy() for c in res.table})
        assert np.array_equal(res.table[col].to_numpy(), want)


def test_layouts_that_do_not_divide_the_model_are_refused_by_make_plan(tmp_path):
    """A layout is skipped for divisibility with make_plan's own message: tensor 4 over
    kv_heads 3 (neither divides the other) on 4 chips."""
    path = model_file(tmp_path, {**TINY, "heads": 12, "kv_heads": 3})
    res = plan.search(plan.load_request(path, mode="decode", batches=[4]),
                      [api.load_hardware("tpu-v5e")], [4])
    why = {res.layouts[li].describe(): w for _, _, li, w in res.not_evaluated}
    assert "kv_heads 3 and the tensor size 4 (mesh axes tensor) do not divide one another" \
        in why["tensor=4"]
    lines = plan.single_strategy_lines(res)
    assert any(s.startswith("tensor 4") and "kv_heads 3 and the tensor size 4" in s
               for s in lines), lines


def test_plan_reads_a_workloads_hugging_face_config():
    # qwen2-7b-train-fsdp takes its architecture from config: hf/qwen2-7b.json (28 layers,
    # d_model 3584); plan fills it as every other command does, and --explain's YAML stands
    # alone (the filled fields, no config: path relative to the built-in workload)
    args = ["plan", "-w", "qwen2-7b-train-fsdp", "-H", "tpu-v5p", "--chips", "8", "--batch", "8"]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["feasible"] > 0
    r = CliRunner().invoke(main, [*args, "--explain", "1"])
    assert r.exit_code == 0, r.output
    text = r.output.split("\nwhy:")[0]
    op = yaml.safe_load(text)["ops"][0]
    assert "config" not in op and op["layers"] == 28 and op["d_model"] == 3584
