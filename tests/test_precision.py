"""Precision, the vector unit and quantization (issue #11): every dtype on every chip, priced as
the hardware runs it; the scaling book's inference answers reproduced."""

import pytest

from perfmodel import catalog, engine, precision, results
from perfmodel.cli import main
from perfmodel.specs import DTYPE_BYTES, ElementwiseOp, MatmulOp, SpecError, Workload
from perfmodel.whatif import apply_override

from .models import LLAMA2_7B, LLAMA2_13B, LLAMA3_70B

CHIPS = catalog.builtin_names("hardware")
HW = {n: catalog.load_hardware(n) for n in CHIPS}


def total(hw, op, **wl):
    return results.to_json(hw, Workload.model_validate({"name": "w", **wl, "ops": [op]}))["total"]


# ---- the vector unit ----------------------------------------------------------------------

@pytest.mark.parametrize("chip", CHIPS)
def test_fp32_elementwise_runs_on_every_chip_and_is_memory_bound(chip):
    hw = HW[chip]
    r = engine.evaluate_op(ElementwiseOp(name="add", kind="elementwise", dtype="fp32",
                                         shape=[4096, 4096], inputs=2, outputs=1), hw)
    assert r["bound"] == "memory"
    # 1 FLOP per 12 bytes: far below any chip's vector ridge
    assert r["t_lower"] == pytest.approx(4096 * 4096 * 12 / hw.hbm_bandwidth, rel=1e-12)


@pytest.mark.parametrize("chip", CHIPS)
def test_heavy_elementwise_is_priced_at_the_vector_rate(chip):
    hw = HW[chip]
    r = engine.evaluate_op(ElementwiseOp(name="x", kind="elementwise", dtype="fp32",
                                         shape=[1 << 20], flops_per_element=1000), hw)
    vec = (hw.vector_flops or {}).get("fp32") or hw.peak_flops["fp32"]  # a CPU: its SIMD rate
    assert r["peak_used"] == vec
    assert r["t_compute"] == pytest.approx(1000 * (1 << 20) / vec, rel=1e-12)


def test_vector_unit_is_far_slower_than_the_matrix_unit_on_v5p():
    # book: the VPU does about 1.4e13 FLOP/s on v5p against 4.59e14 on the MXU
    v5p = HW["tpu-v5p"]
    assert v5p.vector_flops["fp32"] == pytest.approx(1.4e13, rel=0.05)
    r = engine.evaluate_op(ElementwiseOp(name="x", kind="elementwise", dtype="bf16",
                                         shape=[1 << 20], flops_per_element=1000), v5p)
    assert r["peak_used"] == v5p.vector_flops["fp32"]  # no bf16 vector rate: fp32's


def test_attention_softmax_runs_on_the_vector_unit():
    from perfmodel.specs import AttentionOp
    h100 = HW["h100"]
    r = engine.evaluate_op(AttentionOp(name="a", kind="attention", batch=1, seq=4096, heads=32,
                                       head_dim=128, impl="flash"), h100)
    scores = 32 * 4096 * 4096
    assert r["flops_vector"] == 5 * scores and r["flops_transcendental"] == scores
    # QK^T and AV (4 D FLOPs per score) on the tensor cores, 4 softmax FLOPs per score on the
    # CUDA cores and its exp on the SFU (3.9e12/s, FlashAttention-3): the exps alone take half
    # as long as the products (1/3.9e12 vs 512/990e12 per score)
    assert r["t_compute"] == pytest.approx(
        4 * 128 * scores / 990e12 + 4 * scores / 67e12 + scores / 3.9e12, rel=1e-12)
    # a chip with no transcendental figure prices the exp as one vector FLOP
    a100 = HW["a100"]
    r = engine.evaluate_op(AttentionOp(name="a", kind="attention", batch=1, seq=4096, heads=32,
                                       head_dim=128, impl="flash"), a100)
    assert r["t_compute"] == pytest.approx(4 * 128 * scores / 312e12 + 5 * scores / 19.5e12,
                                           rel=1e-12)


# ---- matmul precision ---------------------------------------------------------------------

def mm(dtype="fp32", precision="default", **kw):
    return MatmulOp(name="m", kind="matmul", m=4096, k=4096, n=4096, dtype=dtype,
                    precision=precision, **kw)


@pytest.mark.parametrize("prec, passes", [("default", 1), ("high", 3), ("highest", 6)])
@pytest.mark.parametrize("chip", ["tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e"])
def test_tpu_fp32_matmul_takes_bf16_passes(chip, prec, passes):
    hw = HW[chip]
    r = engine.evaluate_op(mm(precision=prec), hw)
    assert r["peak_used"] == pytest.approx(hw.peak_flops["bf16"] / passes, rel=1e-15)
    assert r["hbm_bytes"] == 4 * 3 * 4096 ** 2  # bytes always at the operands' dtype


@pytest.mark.parametrize("chip, default, highest", [
    ("a100", 156e12, 19.5e12), ("h100", 494.5e12, 67e12), ("h200", 494.5e12, 67e12),
    ("b200", 1.125e15, 80e12)])
def test_gpu_fp32_matmul_uses_tf32_unless_highest(chip, default, highest):
    hw = HW[chip]
    assert engine.evaluate_op(mm(), hw)["peak_used"] == default
    assert engine.evaluate_op(mm(precision="high"), hw)["peak_used"] == default
    r = engine.evaluate_op(mm(precision="highest"), hw)
    assert r["peak_used"] == highest and r["runs_as"] == "vector fp32"


def test_jax_precision_names_are_accepted():
    assert mm(precision="HIGHEST").precision == "highest"
    assert mm(precision="bfloat16_3x").precision == "high"
    assert mm(precision="tensorfloat32").precision == "high"
    with pytest.raises(Exception, match="'default', 'high' or 'highest'"):
        mm(precision="fastestest")


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", sorted(DTYPE_BYTES))
def test_every_dtype_runs_on_every_chip(chip, dtype):
    r = engine.evaluate_op(mm(dtype=dtype), HW[chip])
    assert r["t_lower"] > 0 and r["peak_used"] > 0


def test_rate_decision_is_one_function_for_engine_and_json():
    v5e = HW["tpu-v5e"]
    op = mm(dtype="int8", compute_dtype="int8")
    assert precision.rate(v5e, op).key == "peak_flops_int8"
    assert engine.evaluate_op(op, v5e)["peak_used"] == 394e12
    # W8A16: int8 weights dequantized to bf16, the product runs at the bf16 peak
    w8 = mm(dtype="bf16", weight_dtype="int8")
    r = engine.evaluate_op(w8, v5e)
    assert r["peak_used"] == 197e12
    assert r["hbm_bytes"] == 2 * 4096 ** 2 * 2 + 1 * 4096 ** 2  # x and y in bf16, W in int8


def test_int4_weights_take_half_a_byte():
    r = engine.evaluate_op(MatmulOp(name="m", kind="matmul", m=1, k=4096, n=4096,
                                    weight_dtype="int4"), HW["h100"])
    assert r["hbm_bytes"] == 2 * (4096 + 4096) + 0.5 * 4096 * 4096


# ---- the scaling book's inference answers --------------------------------------------------

# How to Scale Your Model, inference chapter, "Modeling throughput and latency for LLaMA 2-13B":
# 8 TPU v5e (tensor parallel), KV length 8192, the book's HBM bandwidth 8.2e11 B/s per chip.
BOOK_13B_MS = {1: 4.98, 8: 12.13, 16: 20.30, 32: 36.65, 64: 69.33, 240: 249.09}


@pytest.mark.parametrize("batch, book_ms", sorted(BOOK_13B_MS.items()))
def test_llama2_13b_decode_on_v5e_2x4_matches_the_book(batch, book_ms):
    v5e = apply_override(HW["tpu-v5e"], "hbm_bandwidth", "820 GB/s")
    t = total(v5e, {**LLAMA2_13B, "mode": "decode", "batch": batch, "seq": 8192,
                    "parallelism": {"tensor": "model"}}, slice="2x4", mesh={"model": 8})
    assert t["t_step"] * 1e3 == pytest.approx(book_ms, rel=0.03)


def test_llama3_70b_int8_decode_on_v5e_4x2():
    # applied-inference chapter: batch 32, KV 8192, params and KV in int8, 8 v5e:
    # (KV + params) / (8 x 8.1e11) = 112e9 / 6.48e12 = 17.3 ms ("about 17 ms"). Our ledger
    # counts exact sizes (the 69.5e9 weights a step reads: 10.73 ms; 163,840 B of KV per token,
    # not 160e3: 6.63 ms) and the activations' HBM round trips the book leaves out: each
    # matmul's bf16 input and output (about 0.28 ms over 80 layers), the MLP activation
    # (0.07 ms) and the norms, which run on the 32/8 = 4 rows of the tensor-split residual on
    # each chip (0.05 ms).
    v5e = HW["tpu-v5e"]
    op = {**LLAMA3_70B, "mode": "decode", "batch": 32, "seq": 8192, "param_dtype": "int8",
          "kv_dtype": "int8", "parallelism": {"tensor": "model"}}
    t = total(v5e, op, slice="4x2", mesh={"model": 8})
    kv = 2 * 1 * 8 * 128 * 80 * 8192 * 32   # 2 (K, V) x 1 byte x K x H x L x T x batch
    book_rule = (t["params_total"] * 1 + kv) / (8 * 8.1e11)
    assert t["t_step"] == pytest.approx(book_rule, rel=0.05)
    assert t["t_step"] == pytest.approx(17e-3, rel=0.05)  # the criterion
    assert t["fits_memory"]
    bf16 = total(v5e, {**op, "param_dtype": "bf16", "kv_dtype": "bf16"}, slice="4x2",
                 mesh={"model": 8})
    assert not bf16["fits_memory"]  # 141e9 + 86e9 bytes do not fit 8 x 16 GiB


def test_llama3_70b_tensor_16_replicates_the_kv_heads():
    # book: Llama-3-70B (8 KV heads) with TP 16 on a v5e 4x4; each KV head on 2 chips
    op = {**LLAMA3_70B, "mode": "decode", "batch": 32, "seq": 8192, "param_dtype": "int8",
          "kv_dtype": "int8", "parallelism": {"tensor": "model"}}
    t16 = total(HW["tpu-v5e"], op, slice="4x4", mesh={"model": 16})
    t8 = total(HW["tpu-v5e"], op, slice="4x2", mesh={"model": 8})
    # the KV cache per chip does not halve from 8 to 16 chips: one (replicated) head each
    assert t16["memory_parts"]["kv_cache"] == t8["memory_parts"]["kv_cache"]
    assert t16["t_step"] < t8["t_step"]
    from perfmodel.model.transformer import make_plan
    from perfmodel.specs import TransformerOp
    odd = TransformerOp.model_validate({**op, "heads": 24, "d_ff": 12288})
    with pytest.raises(SpecError, match="kv_heads 8 and the tensor size 12"):
        make_plan(odd, {"model": 12})  # 8 KV heads on 12 chips: neither divides the other


def test_weight_only_quantization_speeds_up_batch_1_decode():
    h100 = HW["h100"]
    op = {**LLAMA2_7B, "mode": "decode", "batch": 1, "seq": 640}
    bf16 = total(h100, op)["t_step"]
    w8 = total(h100, {**op, "param_dtype": "int8"})
    w4 = total(h100, {**op, "param_dtype": "int4"})
    assert w8["t_step"] <= 0.6 * bf16   # weights dominate: about half
    assert w4["t_step"] <= 0.35 * bf16  # about a quarter
    assert w8["memory_parts"]["params"] == pytest.approx(w8["params_total"], rel=0.01)


def test_int4_params_are_inference_only():
    with pytest.raises(Exception, match="inference only"):
        total(HW["h100"], {**LLAMA2_7B, "mode": "train", "batch": 8, "seq": 512,
                           "param_dtype": "int4"})


@pytest.mark.parametrize("mode", ["train", "prefill", "decode"])
def test_mfu_counts_model_flops_whatever_the_attention_kernel(mode):
    v5e = HW["tpu-v5p"]
    seen = set()
    for impl in ("naive", "fused", "flash"):
        for causal in (True, False):
            t = total(v5e, {**LLAMA2_7B, "mode": mode, "batch": 8, "seq": 2048,
                            "attention": impl, "causal": causal})
            seen.add(t["flops_model"])
            assert t["hfu"] >= t["mfu"] * 0.5  # executed FLOPs are of the same order
    assert len(seen) == 1  # identical to the last bit across kernels and masking


def test_mixed_precision_training_casts_the_master_copy_once():
    h100 = HW["h100"]
    op = {**LLAMA2_7B, "mode": "train", "batch": 8, "seq": 512, "param_dtype": "fp32"}
    js = results.to_json(h100, Workload.model_validate({"name": "w", "ops": [op]}))
    rows = {r["name"]: r for r in js["ops"]}
    cast = rows["optimizer/cast"]
    n = js["total"]["params_total"]
    assert cast["hbm_bytes"] == pytest.approx(n * (4 + 2), rel=0.001)  # read fp32, write bf16
    assert rows["layer/mlp/up"]["dtype"] == "bf16" and "weight_dtype" not in rows["layer/mlp/up"]
    assert rows["optimizer/adam"]["peak_used"] == 67e12  # fp32 on the CUDA cores


def test_hardware_show_prints_the_new_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(["hardware", "show", "h100"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for field in ("vector_flops", "transcendental_flops", "tf32", "matmul_tile"):
        assert field in out
    for chip in CHIPS:
        hw = HW[chip]
        for f in ("vector_flops", "transcendental_flops", "matmul_tile", "flash_block_q"):
            if getattr(hw, f) is not None:
                assert f in hw.sources, (chip, f)


# ---- the roof a chart draws ----------------------------------------------------------------

@pytest.mark.parametrize("chip", ["tpu-v5e", "h100", "tpu-v4"])
def test_roof_is_the_rate_each_op_is_priced_at(chip):
    """precision.roof (the rule of the PNG roofline, the sweep roofline and the workbook's
    Roofline sheet) names the rate the engine priced the op at, from the op or its row."""
    hw = HW[chip]
    env = engine.hw_env(hw)
    wl = catalog.load_workload("precision-mix")
    rows = engine.evaluate_rows(hw, wl)
    for op, row in zip(wl.ops, rows):
        rf = precision.roof(hw, op)
        assert precision.roof(hw, row) == rf
        assert (rf.label, env[rf.name]) == (row["runs_as"], row["peak_used"]), op.name
    labels = {precision.roof(hw, op).label for op in wl.ops}
    assert any(s.startswith("vector") for s in labels) and len(labels) >= 3


def test_workbook_roofs_are_the_rates_the_charted_ops_run_at(tmp_path):
    """The Roofline sheet's fp32 chart on a TPU draws a roof for each rate its ops run at:
    1, 3 and 6 bf16 MXU passes (precision default, high, highest) and the vector unit (adam,
    the cast), not the fp32 matmul rate alone; each peak cell refers to that rate's row."""
    import openpyxl

    from perfmodel.report.workbook import write_workbook

    hw = HW["tpu-v5e"]
    path = write_workbook(tmp_path / "b.xlsx", [catalog.load_workload("precision-mix")], [hw],
                          active=hw.name)
    ws = openpyxl.load_workbook(path)["Roofline"]
    env = engine.hw_env(hw)
    hw_ws = openpyxl.load_workbook(path, data_only=True)["Hardware"]
    head = next(r for r in ws.iter_rows() if r[0].value == "chip" and r[2].value == "roof")
    roofs = {}
    for r in ws.iter_rows(min_row=head[0].row + 1):
        if r[0].value != hw.name:
            break
        if r[1].value == "fp32":
            cell = r[3].value.split("!")[1].replace("$", "")
            roofs[r[2].value] = hw_ws[cell].value
    hbm = {k.split(", ", 1)[1]: v for k, v in roofs.items() if k.startswith("HBM, ")}
    assert hbm == {"MXU bf16": env["matrix_rate_fp32_default"],
                   "MXU bf16 x3 (fp32 high: 3 passes)": env["matrix_rate_fp32_high"],
                   "MXU bf16 x6 (fp32 highest: 6 passes)": env["matrix_rate_fp32_highest"],
                   "vector fp32": env["vector_rate_fp32"]}


@pytest.mark.parametrize("chip", ["mi300x", "mi325x", "mi355x", "h200", "h100", "tpu-v5e"])
def test_rate_labels_name_no_other_vendors_unit_and_explain_passes(chip):
    """An fp32 product at precision highest on a GPU is labelled "vector fp32" on every vendor's
    chip (it said "CUDA-core fp32" on AMD's too); a TPU's multi-pass label says which precision
    and how many passes; the rates themselves are unchanged."""
    hw = HW.get(chip) or catalog.load_hardware(chip)
    env = engine.hw_env(hw)
    labels = {p: precision.matrix_rate(hw, "fp32", p) for p in ("default", "high", "highest")}
    assert all("CUDA" not in r.runs_as for r in labels.values())
    if hw.kind == "gpu":
        r = labels["highest"]
        assert r.runs_as == "vector fp32"
        # the number: peak_flops.fp32 where listed (MI300X 163.4 TFLOP/s), else vector_flops.fp32
        want = hw.peak_flops.get("fp32") or hw.vector_flops["fp32"]
        assert env[r.key] / r.passes == want
    else:
        assert labels["high"].runs_as == "MXU bf16 x3 (fp32 high: 3 passes)"
        assert labels["highest"].runs_as == "MXU bf16 x6 (fp32 highest: 6 passes)"
        # 3 and 6 bf16 passes: a third and a sixth of the bf16 rate
        assert env["matrix_rate_fp32_high"] == hw.peak_flops["bf16"] / 3
        assert env["matrix_rate_fp32_highest"] == hw.peak_flops["bf16"] / 6
