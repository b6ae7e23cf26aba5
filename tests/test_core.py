"""Hand-derived numbers for the op models and the roofline (derivations in comments)."""

import math

import pytest

from perfmodel import catalog, engine, results
from perfmodel.specs import AttentionOp, ElementwiseOp, MatmulOp, SpecError


def mm(n, **kw):
    return MatmulOp(name="mm", kind="matmul", m=n, k=n, n=n, **kw)


def attn(**kw):
    base = dict(name="a", kind="attention", batch=1, seq=2048, heads=1, head_dim=128)
    return AttentionOp(**{**base, **kw})


@pytest.mark.parametrize("n", [128, 1000, 4096])
def test_square_bf16_matmul_intensity_is_n_over_3(v4, n):
    # FLOPs 2N^3, bytes 2*(3N^2) for bf16 -> AI = 2N^3 / 6N^2 = N/3
    r = engine.evaluate_op(mm(n), v4)
    assert r["intensity"] == pytest.approx(n / 3, rel=1e-12)


def test_v4_16384_matmul_time_and_course_mfu(v4):
    # 2*16384^3 = 8.796e12 FLOPs; on v4 at 2.75e14 FLOP/s: 8.796e12/2.75e14 = 0.031986 s.
    r = engine.evaluate_op(mm(16384), v4)
    assert r["flops"] == 2 * 16384**3
    assert r["t_compute"] == pytest.approx(2 * 16384**3 / 2.75e14)
    assert r["bound"] == "compute"
    # the course measured 0.036 s: MFU = t_model / t_measured = 0.031986/0.036 = 88.8%
    assert r["t_lower"] / 0.036 == pytest.approx(0.888, abs=5e-4)


def test_padding_to_mxu_tile(v4):
    # k = 129 pads to 256 on a 128 MXU (the weight tile's side): executed 2*128*256*128,
    # useful 2*128*129*128
    r = engine.evaluate_op(MatmulOp(name="p", kind="matmul", m=128, k=129, n=128), v4)
    assert r["flops"] == 2 * 128 * 129 * 128
    assert r["flops_exec"] == 2 * 128 * 256 * 128
    assert r["mfu"] < 129 / 256 + 1e-12  # padding caps MFU at useful/padded


def test_streamed_rows_pad_only_to_the_sublane():
    # the MXU streams activation rows 8 at a time: m pads to 8, not to 128 (book, TPU chapter)
    v5e = catalog.load_hardware("tpu-v5e")
    decode = engine.evaluate_op(MatmulOp(name="d", kind="matmul", m=64, k=4096, n=16384), v5e)
    assert decode["flops_exec"] == decode["flops"]  # 64, 4096 and 16384 are whole tiles
    r = engine.evaluate_op(MatmulOp(name="r", kind="matmul", m=100, k=4096, n=4096), v5e)
    assert r["flops_exec"] == 2 * 104 * 4096 * 4096  # 100 rows -> 13 sublane groups of 8


def test_elementwise_fused_vs_unfused_bytes(v4):
    n = 1 << 20
    # A+B+C unfused: (A+B) reads 2 writes 1, (+C) reads 2 writes 1 -> 6N elements
    one = ElementwiseOp(name="x", kind="elementwise", shape=[n], inputs=2, outputs=1)
    fused = ElementwiseOp(name="f", kind="elementwise", shape=[n], inputs=3, outputs=1)
    unfused = 2 * engine.evaluate_op(one, v4)["hbm_bytes"]
    assert unfused == 2 * 6 * n  # bf16: 2 bytes * 6N
    assert engine.evaluate_op(fused, v4)["hbm_bytes"] == 2 * 4 * n


def test_fused_attention_bytes_onchip_and_fit(v4):
    # fused bf16 MHA: bytes 8*B*H*S*D = 8*2048*128 = 2 MiB; AI = 4BHS^2D/8BHSD = S/2 (+softmax)
    r = engine.evaluate_op(attn(impl="fused"), v4)
    assert r["hbm_bytes"] == 8 * 2048 * 128
    assert r["onchip_bytes"] == 2 * 2048 * 2048  # 8.39 MB, fits v4's 160 MB
    assert r["fits_onchip"] is True
    big = engine.evaluate_op(attn(impl="fused", seq=16384), v4)
    assert big["onchip_bytes"] == pytest.approx(536.9e6, rel=1e-3)  # 2*16384^2 = 537 MB
    assert big["fits_onchip"] is False
    # FLOPs: 4*S^2*D matmul + 5 per score softmax
    assert r["flops"] == 4 * 2048**2 * 128 + 5 * 2048**2


def test_naive_attention_intensity_between_d_over_2_and_d(v4):
    r = engine.evaluate_op(attn(impl="naive", seq=16384), v4)
    assert 128 / 2 <= r["intensity"] <= 128


def test_flash_equals_fused_when_block_is_whole_sequence(v4):
    # v4: Br = floor(160e6 / (4*128*2)) = 156250 >= S, so Br = S and bytes equal fused
    f = engine.evaluate_op(attn(impl="flash"), v4)
    assert f["q_block"] == 2048
    assert f["hbm_bytes"] == engine.evaluate_op(attn(impl="fused"), v4)["hbm_bytes"]


def test_flash_bytes_grow_as_onchip_shrinks():
    # H100: 228 kB shared. Br = the largest b with 4 b D e + 4 b^2 <= 228000 (Q, O, K, V tiles
    # and the fp32 b x b score tile): b = 142 gives 4*142*256 + 4*142^2 = 145408 + 80656 =
    # 226064 <= 228000; b = 143 gives 146432 + 81796 = 228228 > 228000. ceil(16384/142) = 116
    h100 = catalog.load_hardware("h100")
    r = engine.evaluate_op(attn(impl="flash", seq=16384), h100)
    assert r["q_block"] == 142
    e, S, D = 2, 16384, 128
    assert r["hbm_bytes"] == e * (2 * S * D + 2 * S * D * math.ceil(S / 142))
    assert r["onchip_bytes"] == 226064


def test_causal_fraction_and_naive_ignores_mask(v4):
    # square causal keeps (S+1)/(2S) of the scores in fused/flash; naive computes all
    full = engine.evaluate_op(attn(impl="flash"), v4)["flops"]
    causal = engine.evaluate_op(attn(impl="flash", causal=True), v4)["flops"]
    assert causal / full == pytest.approx((2048 + 1) / (2 * 2048), rel=1e-12)
    naive = engine.evaluate_op(attn(impl="naive"), v4)["flops"]
    assert engine.evaluate_op(attn(impl="naive", causal=True), v4)["flops"] == naive


def test_gqa_decode_is_memory_bound_with_intensity_about_group_size(v4):
    # decode: S=1 query, T=8192 keys; 32 query heads share 8 kv heads -> AI ~ 2*(N/K)*2/e ~ N/K
    r = engine.evaluate_op(attn(seq=1, kv_seq=8192, heads=32, kv_heads=8), v4)
    assert r["bound"] == "memory"
    assert 3 < r["intensity"] < 6


def test_ridge_v4(v4):
    # 2.75e14 / 1.23e12 = 223.6 (course: "typically ~256")
    r = engine.evaluate_op(mm(1024), v4)
    assert r["ridge"] == pytest.approx(223.577, rel=1e-4)


def test_70b_prefill_chip_count(v4):
    # the course: 2 x 70e9 params x 1e6 tokens = 1.4e17 FLOPs in 10 s at 2.75e14 -> 50.9 chips.
    # As a matmul [1e6 tokens, 8192] @ [8192, 8,544,921] (70e9 // 8192 columns):
    # 2 x 1e6 x 8192 x 8,544,921 = 1e6 x 139,999,985,664 FLOPs; n pads to 8,545,024 (128 x 66,758) on
    # v4's MXU, so the one-chip compute time is 2 x 1e6 x 8192 x 8,545,024 / 2.75e14 = 509.1 s,
    # 50.91 chips for 10 s
    op = MatmulOp(name="prefill", kind="matmul", m=1_000_000, k=8192, n=70_000_000_000 // 8192)
    r = engine.evaluate_op(op, v4)
    assert r["flops"] == 139_999_985_664 * 10**6
    assert r["bound"] == "compute"
    assert r["t_lower"] / 10 == pytest.approx(50.91, abs=0.005)


def test_a_dtype_without_its_own_peak_runs_as_the_next_wider(v4):
    # v4 lists bf16 and int8: fp8 runs as bf16 (perfmodel.precision.FALLBACK), never refused
    op = MatmulOp(name="x", kind="matmul", m=8, k=8, n=8, dtype="fp8")
    r = engine.evaluate_op(op, v4)
    assert r["peak_used"] == v4.peak_flops["bf16"] and r["runs_as"] == "MXU bf16"


def test_json_totals_are_sums(v4):
    wl = catalog.load_workload("course-attention")
    js = results.to_json(v4, wl)
    assert js["total"]["flops"] == pytest.approx(sum(o["flops"] for o in js["ops"]))
    assert js["total"]["t_lower"] == pytest.approx(sum(o["t_lower"] for o in js["ops"]))
    for o in js["ops"]:
        assert {"onchip_bytes", "fits_onchip"} <= set(o)


def test_operand_widths_render_once_factored_when_one_dtype():
    """ops.operand_bytes writes attention's and elementwise's bytes once: an op of one dtype
    keeps elem_bytes*(a+b); a KV cache or output in another dtype gets its own width cell."""
    from perfmodel.formula import to_excel

    hw = catalog.load_hardware("tpu-v5e")
    att = dict(name="a", kind="attention", impl="fused", batch=2, seq=8, heads=4, head_dim=16)

    def bytes_formula(op):
        return to_excel(engine.op_columns(op, hw, None, symbolic=True)[1]["hbm_bytes"], str)

    qo, kv = "2*batch*heads*seq*head_dim", "2*batch*kv_heads*kv_seq*head_dim"
    assert bytes_formula(AttentionOp(**att)) == f"=elem_bytes*({qo}+{kv})"
    assert bytes_formula(AttentionOp(**att, kv_dtype="int8")) == \
        f"=elem_bytes*({qo})+kv_bytes*({kv})"
    ew = dict(name="e", kind="elementwise", dtype="fp32", shape=[64], inputs=2)
    assert bytes_formula(ElementwiseOp(**ew)) == "=elem_bytes*elements*(inputs+outputs)"
    assert bytes_formula(ElementwiseOp(**ew, out_dtype="bf16")) == \
        "=elements*(elem_bytes*inputs+out_bytes*outputs)"
    # numbers: fp32 in, bf16 out: 64 x (4 x 2 + 2 x 1) = 640 bytes
    assert engine.evaluate_op(ElementwiseOp(**ew, out_dtype="bf16"), hw)["hbm_bytes"] == 640
