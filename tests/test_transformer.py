"""The transformer model: expansion into per-chip kernel ops, ``repeat``, the step summary and
the published figures it must reproduce. Expected values are written as arithmetic over the
shapes, with the derivation beside them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmodel import catalog, engine, results
from perfmodel.cli import main
from perfmodel.formula import evaluate
from perfmodel.model import expand_workload, expansion, source_workload, with_slice
from perfmodel.model.summary import bubble_fraction, model_flops
from perfmodel.model.transformer import (make_plan, memory_parts,
                                         param_ledger, params_6pt)
from perfmodel.specs import DTYPE_BYTES, TransformerOp, Workload

from .models import LLAMA2_7B, LLAMA3_70B  # noqa: E402,F401  (shared shapes)

REPO = Path(__file__).resolve().parents[1]
V4_PEAK = 2.75e14  # the HighPerfLLMs2024 course's v4 peak (github.com/rwitten/HighPerfLLMs2024)

GEMMA_7B = dict(kind="transformer", name="gemma-7b", layers=28, d_model=3072, heads=16,
                kv_heads=16, head_dim=256, d_ff=24576, vocab=256000, mlp="gated")
MIXTRAL = dict(kind="transformer", name="mixtral", layers=32, d_model=4096, heads=32,
               kv_heads=8, head_dim=128, d_ff=14336, vocab=32000, mlp="gated", experts=8,
               top_k=2)


def wl_of(op: dict, **top) -> Workload:
    return expand_workload(Workload.model_validate({"name": "t", **top, "ops": [op]}))


def rows_of(wl, chip="tpu-v5p"):
    return engine.evaluate_rows(catalog.load_hardware(chip), wl)


def by_name(wl) -> dict:
    return {op.name: op for op in wl.ops}


# ---- parameters, 6PT --------------------------------------------------------------------

def test_llama2_7b_parameter_count():
    # per layer: qkv 4096 x (32+2x32) x 128 + o 32x128x4096 = 4 x 4096^2 = 67,108,864;
    # gated MLP 3 x 4096 x 11008 = 135,266,304; two norms 2 x 4096. 32 layers, embedding and
    # output layer 32000 x 4096 each, final norm 4096: 6,738,415,616 = Llama-2-7B's published
    # count (HF safetensors metadata)
    op = TransformerOp.model_validate({**LLAMA2_7B, "mode": "train", "batch": 1, "seq": 2048})
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    total = 32 * layer + 2 * 32000 * 4096 + 4096
    assert sum(param_ledger(op).values()) == total == 6_738_415_616
    # P of 6PT: the output layer counts, the embedding lookup (a gather, no FLOPs) does not
    assert params_6pt(op) == total - 32000 * 4096


def test_training_flops_vs_6pt():
    # Llama-2-7B, 8 x 2048 tokens. 6PT counts 2 FLOPs per parameter per token forward and 4
    # backward. Our count adds what 6PT leaves out:
    #  - attention scores: forward 4 B T^2 N H x kept (QK^T and AV; flash skips masked blocks,
    #    kept = (T+1)/(2T)), backward 2.5x that (flash recomputes QK^T: 5 matmuls vs 2);
    #  - elementwise work (norms, activation, softmax per score, loss): well under 1% here.
    B, T, L, N, H = 8, 2048, 32, 32, 128
    op = {**LLAMA2_7B, "mode": "train", "batch": B, "seq": T}
    spec = TransformerOp.model_validate(op)
    ours = model_flops(catalog.load_hardware("tpu-v4"), spec)
    six_pt = 6 * params_6pt(spec) * B * T
    kept = (T + 1) / (2 * T)
    attn = (1 + 2.5) * 4 * B * T**2 * N * H * kept * L
    assert ours == pytest.approx(six_pt + attn, rel=0.01)  # elementwise: < 1% of the total
    assert 0 < ours - six_pt - attn < 0.01 * six_pt
    # so at T = 2048 our count is 6PT + 5.4% (attention), and the total says so
    assert ours / six_pt == pytest.approx(1 + attn / six_pt, abs=0.01)
    js = results.to_json(catalog.load_hardware("tpu-v4"), wl_of(op))
    assert js["total"]["flops_6pt"] == six_pt and js["total"]["flops_ledger"] == ours
    # PaLM's model FLOPs (appendix B): 6P + 12 L N H T per token, whatever the kernel
    assert js["total"]["flops_model"] == six_pt + 12 * L * N * H * T * B * T


def test_remat_adds_one_forward_but_not_model_flops():
    op = {**LLAMA2_7B, "layers": 2, "mode": "train", "batch": 2, "seq": 256}
    plain, remat = wl_of(op), wl_of({**op, "remat": "full"})
    hw = catalog.load_hardware("tpu-v4")
    rows_p, rows_r = engine.evaluate_rows(hw, plain), engine.evaluate_rows(hw, remat)
    fwd = sum(r["flops"] for r, o in zip(rows_p, plain.ops)
              if expansion(plain).roles[o.name] == "fwd" and o.name.startswith("layer/"))
    assert sum(r["flops"] for r in rows_r) == pytest.approx(sum(r["flops"] for r in rows_p) + fwd)
    assert {o.name for o in remat.ops} - {o.name for o in plain.ops} == {
        o.name + ".remat" for o in plain.ops
        if o.name.startswith("layer/") and expansion(plain).roles[o.name] == "fwd"
        and o.kind != "collective"}
    tot_p = results.to_json(hw, plain, rows_p)["total"]
    tot_r = results.to_json(hw, remat, rows_r)["total"]
    assert tot_p["flops_model"] == tot_r["flops_model"]  # MFU counts useful work only
    assert tot_r["memory_parts"]["activations"] < tot_p["memory_parts"]["activations"]


def test_flash_backward_is_2_5x_the_forward_matmuls():
    wl = wl_of({**LLAMA2_7B, "layers": 1, "mode": "train", "batch": 1, "seq": 1024})
    rows = {r["name"]: r for r in rows_of(wl)}
    S, N, H = 1024, 32, 128
    scores = N * S * S * (S + 1) / (2 * S)  # causal, masked blocks skipped
    fwd_mm = rows["layer/attn"]["flops"] - 5 * scores  # minus the softmax's 5 per score
    bwd_mm = rows["layer/attn.bwd"]["flops"] - (2 + 2) * scores  # softmax bwd + recompute
    assert fwd_mm == pytest.approx(4 * S * S * H * N * (S + 1) / (2 * S))
    assert bwd_mm / fwd_mm == pytest.approx(2.5)
    # a matmul's backward: dX and dW, each the forward's FLOPs
    assert rows["layer/mlp/up.bwd"]["flops"] == 2 * rows["layer/mlp/up"]["flops"]


# ---- the course's numbers ----------------------------------------------------------------

def test_course_70b_prefill_chip_count():
    # The course (HighPerfLLMs2024): a 70B model prefilling 1M tokens in 10 s needs
    # 2 x 70e9 x 1e6 = 1.4e17 FLOPs / (10 s x 2.75e14) = 50.9 v4 chips, so 51. Here with
    # Llama-3-70B, 1000 prompts x 1000 tokens = 1e6 tokens. Its P without the embedding lookup,
    # by hand: 80 layers x (q, o 2 x 8192^2 + k, v 2 x 8192 x 8 x 128 + gated MLP 3 x 8192 x
    # 28672 = 855.6e6) + output layer 8192 x 128256 = 1.05e9 -> 69.50e9 (norms add 1.3e6),
    # so 2PT needs 2 x 69.50e9 x 1e6 / 2.75e15 = 50.55 chips: still 51 when rounded up. Our
    # count differs from 2PT twice: prefill needs the output layer for the last position of
    # each prompt only (2PT charges it to every token: -1.5%), and it adds attention
    # (4 B T^2 N H x kept over 80 layers, +0.6% at T = 1000) and the elementwise work (norms,
    # activation: well under 0.5%)
    v4 = catalog.load_hardware("tpu-v4")
    assert v4.peak_flops["bf16"] == V4_PEAK  # the course's figure, so its answers reproduce
    wl = wl_of({**LLAMA3_70B, "mode": "prefill", "batch": 1000, "seq": 1000})
    tot = results.to_json(v4, wl)["total"]
    P = tot["params"]
    assert P == pytest.approx(69.50e9, rel=1e-4)
    assert tot["flops_2pt"] == 2 * P * 1e6
    chips_2pt = tot["flops_2pt"] / (10 * v4.peak_flops["bf16"])
    assert chips_2pt == pytest.approx(50.55, abs=0.005)
    assert math.ceil(chips_2pt) == 51
    attn = 4 * 1000 * 1000**2 * 64 * 128 * (1001 / 2000) * 80
    chips_ours = tot["flops_ledger"] / (10 * v4.peak_flops["bf16"])
    head = 8192 * 128256
    ours = 2 * (P - head) * 1e6 + 2 * head * 1000 + attn
    assert chips_ours == pytest.approx(ours / (10 * V4_PEAK), rel=0.005)
    assert chips_ours < chips_2pt  # the skipped output-layer work outweighs attention here


def test_gemma_7b_kv_cache_per_sequence():
    # the course's exercise: 2 (K and V) x 2 B (bf16) x 2048 tokens x 28 layers x 16 KV heads
    # x 256 head dim = 939,524,096 B, about 939 MB per sequence
    spec = TransformerOp.model_validate({**GEMMA_7B, "mode": "decode", "batch": 1, "seq": 2048})
    kv = memory_parts(spec, make_plan(spec, None))["kv_cache"]
    assert kv == 2 * 2 * 2048 * 28 * 16 * 256 == 939_524_096
    # it grows with the batch, and shrinks with tensor parallelism (KV heads split 8 ways)
    spec8 = TransformerOp.model_validate({**GEMMA_7B, "mode": "decode", "batch": 8, "seq": 2048,
                                          "parallelism": {"tensor": "t"}})
    assert memory_parts(spec8, make_plan(spec8, {"t": 8}))["kv_cache"] == kv


@pytest.mark.parametrize("param_dtype, optimizer, per_param", [
    ("bf16", "adam", 2 + 2 * 4),  # bf16 params + two fp32 moments = 10 bytes/param
    # fp32 master params + their bf16 cast copy for the step's matmuls + moments: 14
    ("fp32", "adam", 4 + 2 + 2 * 4),
    ("bf16", "sgd", 2),           # plain SGD keeps no state
])
def test_params_plus_optimizer_state_bytes_per_param(param_dtype, optimizer, per_param):
    spec = TransformerOp.model_validate({**LLAMA2_7B, "mode": "train", "batch": 1, "seq": 512,
                                         "param_dtype": param_dtype, "optimizer": optimizer})
    parts = memory_parts(spec, make_plan(spec, None))
    n = sum(param_ledger(spec).values())  # one chip holds every parameter
    assert parts["params"] + parts["optimizer"] == per_param * n
    assert parts["grads"] == n * DTYPE_BYTES[param_dtype]  # gradients in the parameter dtype


def test_fsdp_shards_params_grads_and_optimizer_state():
    one = TransformerOp.model_validate({**LLAMA2_7B, "mode": "train", "batch": 8, "seq": 512})
    sharded = TransformerOp.model_validate({**LLAMA2_7B, "mode": "train", "batch": 8, "seq": 512,
                                            "parallelism": {"fsdp": "f"}})
    a = memory_parts(one, make_plan(one, None))
    b = memory_parts(sharded, make_plan(sharded, {"f": 8}))
    for k in ("params", "grads", "optimizer"):  # (the final norm's 4096 stay replicated)
        assert b[k] == pytest.approx(a[k] / 8, rel=1e-5)


# ---- pipeline ------------------------------------------------------------------------------

def test_pipeline_bubble_formula():
    # p stages, m microbatches: the pipeline runs m + p - 1 microbatch slots and each stage is
    # busy in m of them, so it idles (p - 1) / (m + p - 1) of the time (GPipe)
    assert bubble_fraction(4, 8) == 3 / 11
    assert bubble_fraction(1, 8) == 0
    assert bubble_fraction(8, 1) == 7 / 8
    # in the step: every group but the optimizer is stretched by (m + p - 1) / m
    op = {**LLAMA2_7B, "layers": 8, "mode": "train", "batch": 8, "seq": 512,
          "parallelism": {"pipeline": "stage"}, "microbatches": 8}
    wl = wl_of(op, slice="4", mesh={"stage": 4})
    x = expansion(wl)
    assert (x.plan.pp, x.plan.layers, x.plan.microbatches, x.plan.micro_batch) == (4, 2, 8, 1)
    hw = catalog.load_hardware("h100")
    rows = engine.evaluate_rows(hw, wl)
    tot = results.to_json(hw, wl, rows)["total"]
    assert tot["pipeline_bubble"] == 3 / 11
    busy = {}
    for r in rows:
        g = busy.setdefault(r["name"].split("/")[0].split(".")[0], [0.0, 0.0])
        g[r["kind"] == "collective"] += r["t_lower"]
    expect = sum(max(b) * (1 if g == "optimizer" else 11 / 8) for g, b in busy.items())
    assert tot["t_lower"] == pytest.approx(expect)
    names = by_name(wl)
    # each layer op runs once per layer per microbatch on the stage: 2 layers x 8 microbatches
    assert names["layer/attn/qkv"].repeat == 2 * 8 and names["layer/attn/qkv"].m == 1 * 512
    send = names["pipeline/send"]
    assert (send.collective, send.repeat, send.v_bytes) == ("ppermute", 8, 512 * 4096 * 2)


# ---- sharding: shapes and collectives ------------------------------------------------------

def test_llama2_7b_fsdp_expansion_shapes_and_collectives():
    wl = catalog.load_workload("llama2-7b-train-fsdp")
    x = expansion(wl)
    assert x.plan.fsdp == 8 and x.plan.batch == 1 and x.plan.tokens == 4096
    ops = by_name(wl)
    up = ops["layer/mlp/up"]  # gate and up side by side: [4096, 4096] @ [4096, 2 x 11008]
    assert (up.m, up.k, up.n, up.repeat) == (4096, 4096, 2 * 11008, 32)
    layer_params = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    ag = ops["layer/fsdp/all_gather"]  # each layer's weights, gathered in bf16
    assert (ag.collective, ag.axes, ag.v_bytes, ag.repeat) == ("all_gather", ["fsdp"],
                                                                2 * layer_params, 32)
    assert ops["layer/fsdp/all_gather.bwd"].v_bytes == 2 * layer_params  # again for backward
    assert ops["layer/fsdp/reduce_scatter.bwd"].collective == "reduce_scatter"
    assert "layer/dp/all_reduce.bwd" not in ops  # no data axis: nothing to all-reduce
    rows = {r["name"]: r for r in rows_of(wl)}
    assert rows["layer/mlp/up"]["flops"] == 2 * 4096 * 4096 * (2 * 11008) * 32


def test_tensor_parallel_megatron_collectives():
    wl = catalog.load_workload("llama3-70b-prefill")
    p = expansion(wl).plan
    assert (p.tp, p.heads, p.kv_heads, p.d_ff, p.vocab) == (8, 8, 1, 3584, 16032)
    ops = by_name(wl)
    M = 8 * 8192  # 8 prompts x 8192 tokens, all on every tensor rank
    for name, coll in (("layer/tp/all_gather", "all_gather"),
                       ("layer/tp/reduce_scatter", "reduce_scatter")):
        # before (after) attention and the MLP: twice a layer, [M, D] in bf16
        assert (ops[name].collective, ops[name].v_bytes, ops[name].repeat) == (
            coll, M * 8192 * 2, 2 * 80)
    assert ops["layer/attn/qkv"].n == (8 + 2 * 1) * 128
    assert ops["layer/norm1"].shape == [M // 8, 8192]  # the residual is split along tokens
    assert ops["lm_head/proj"].m == 8  # prefill needs only the last position's logits


def test_data_and_sequence_parallel_collectives():
    op = {**LLAMA2_7B, "layers": 2, "mode": "train", "batch": 4, "seq": 1024,
          "parallelism": {"data": "d", "sequence": "s"}}
    wl = wl_of(op, slice="2x2", mesh={"d": 2, "s": 2})
    ops = by_name(wl)
    layer_params = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    ar = ops["layer/dp/all_reduce.bwd"]  # gradients summed over every replica of the weights
    assert (ar.axes, ar.v_bytes, ar.repeat) == (["d", "s"], 2 * layer_params, 2)
    sp = ops["layer/attn/sp_all_gather"]  # K and V of the whole sequence: 2 x B T K H e
    assert (sp.axes, sp.v_bytes) == (["s"], 2 * 2 * 1024 * 32 * 128 * 2)
    assert ops["layer/attn/sp_reduce_scatter.bwd"].v_bytes == sp.v_bytes
    attn = ops["layer/attn"]
    assert (attn.batch, attn.seq, attn.kv_seq) == (2, 512, 1024)


def test_moe_all_to_all_scaled_by_capacity_and_decode_reads_top_k_experts():
    op = {**MIXTRAL, "mode": "train", "batch": 4, "seq": 512, "capacity_factor": 1.25,
          "parallelism": {"expert": "e"}}
    wl = wl_of(op, slice="4", mesh={"e": 4})
    ops = by_name(wl)
    M = 1 * 512  # 4 sequences over 4 expert ranks: 1 each
    slots = math.ceil(M * 2 * 1.25)  # top-2, capacity 1.25
    a2a = ops["layer/moe/all_to_all"]
    assert (a2a.collective, a2a.v_bytes, a2a.repeat) == ("all_to_all", 4 * slots * 4096 * 2,
                                                         2 * 32)
    up = ops["layer/mlp/up"]  # 2 local experts share the slots
    assert (up.batch, up.m, up.n) == (2, slots // 2, 2 * 14336)
    dec = by_name(wl_of({**MIXTRAL, "mode": "decode", "batch": 1, "seq": 1024}))
    assert dec["layer/mlp/up"].batch == 2  # one token, top-2: 2 of the 8 experts' weights


def test_decode_is_memory_bound_and_turns_compute_bound_near_the_ridge():
    # How to Scale Your Model, inference chapter: decode ~ (param bytes + batch x KV bytes) /
    # HBM bandwidth; linear layers turn compute-bound when tokens per step > peak / HBM bandwidth (~240 on v5e)
    hw = catalog.load_hardware("tpu-v5e")
    wl = catalog.load_workload("llama2-7b-decode")
    tot = results.to_json(hw, wl)["total"]
    params = 6_738_415_616 * 2
    kv = 16 * 2 * 2 * 2048 * 32 * 32 * 128
    assert tot["t_per_token"] == pytest.approx((params + kv) / hw.hbm_bandwidth, rel=0.01)
    ridge = hw.peak_flops["bf16"] / hw.hbm_bandwidth  # 243
    assert ridge < tot["compute_bound_batch"] < 1.15 * ridge  # activations' bytes push it up
    assert tot["tokens_per_s"] == pytest.approx(16 / tot["t_per_token"])


# ---- repeat ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    {"kind": "matmul", "name": "mm", "m": 300, "k": 200, "n": 100},
    {"kind": "elementwise", "name": "ew", "shape": [64, 64], "inputs": 2},
    {"kind": "attention", "name": "at", "batch": 2, "seq": 512, "heads": 4, "head_dim": 64,
     "causal": True},
    {"kind": "attention", "name": "atb", "batch": 2, "seq": 512, "heads": 4, "head_dim": 64,
     "backward": True},
    {"kind": "collective", "name": "ag", "collective": "all_gather", "axes": ["x"],
     "bytes": 1e8},
    {"kind": "collective", "name": "ar", "collective": "all_reduce", "axes": ["x"],
     "bytes": 1e3},
])
def test_repeat_multiplies_extensive_columns_in_numbers_and_formulas(op):
    hw = catalog.load_hardware("tpu-v5e")
    top = {"slice": "4x4", "mesh": {"x": 16}}
    one = Workload.model_validate({"name": "w", **top, "ops": [op]})
    rep = Workload.model_validate({"name": "w", **top, "ops": [{**op, "repeat": 7}]})
    a = engine.evaluate_op(one.ops[0], hw, one)
    b = engine.evaluate_op(rep.ops[0], hw, rep)
    assert b["repeat"] == 7 and a["repeat"] == 1
    for k, v in a.items():
        if k in engine.REPEATED_COLUMNS or k in ("t_compute", "t_memory", "t_lower", "t_upper"):
            assert b[k] == pytest.approx(7 * v, rel=1e-12), k
        elif isinstance(v, float) and k not in ("repeat",):
            assert b[k] == pytest.approx(v, rel=1e-12), k  # intensive: per instance
    # the workbook's formulas (Refs to input cells, hardware and earlier columns) agree
    inp, cost, roof = engine.op_columns(rep.ops[0], hw, rep, symbolic=True)
    assert inp["repeat"] == 7
    env = {**engine.hw_env(hw), **inp, "peak": hw.peak_flops["bf16"]}
    for k, e in {**cost, **roof}.items():
        env[k] = evaluate(e, env)
        if isinstance(b.get(k), float):
            assert float(env[k]) == pytest.approx(b[k], rel=1e-12), k
    assert "repeat" not in engine.op_columns(one.ops[0], hw, one)[0]  # no cell when 1


# ---- the ledger and the JSON total ---------------------------------------------------------

@pytest.mark.parametrize("workload, chip", [
    ("llama2-7b-train-fsdp", "tpu-v5p"), ("llama2-7b-decode", "h100"),
    ("llama3-70b-prefill", "h100"), ("mixtral-8x7b-train", "tpu-v5p"),
    ("course-model-train", "tpu-v4"), ("gemma-7b-decode", "tpu-v5e"),
])
def test_ledger_totals_are_the_sums_of_rows_and_json_keys(workload, chip):
    res = CliRunner().invoke(main, ["roofline", "-H", chip, "-w", workload, "--json"])
    assert res.exit_code == 0, res.output
    js = json.loads(res.stdout)
    rows, tot = js["ops"], js["total"]
    for k in ("flops", "flops_exec", "hbm_bytes", "t_compute", "t_memory", "t_upper"):
        assert tot[k] == pytest.approx(sum(r[k] for r in rows), rel=1e-12), k
    assert tot["t_comm"] == pytest.approx(sum(r.get("t_comm") or 0 for r in rows))
    # t_lower overlaps each group's communication with its compute: between the largest
    # resource and the no-overlap sum
    assert tot["t_lower"] <= sum(r["t_lower"] for r in rows) * (1 + 1e-12)
    assert tot["t_lower"] >= max(tot["t_compute"], tot["t_memory"]) * (1 - 1e-12)
    for k in ("flops", "t_lower", "t_upper", "mfu", "tokens_per_s", "memory_bytes_per_chip"):
        assert isinstance(tot[k], (int, float)) and tot[k] > 0, k
    assert isinstance(tot["memory_parts"], dict) and isinstance(tot["fits_memory"], bool)
    assert tot["memory_bytes_per_chip"] == pytest.approx(sum(tot["memory_parts"].values()))
    assert set(tot["memory_parts"]) == {"params", "grads", "optimizer", "activations",
                                        "kv_cache"}
    mode = tot["mode"]
    assert ("ttft" in tot) == (mode == "prefill") and ("t_per_token" in tot) == (mode == "decode")
    assert tot["t_step"] == tot["t_lower"]  # overlap: true, uncalibrated
    hw = catalog.load_hardware(chip)
    assert tot["mfu"] == pytest.approx(tot["flops_model"] / (tot["chips"] * tot["t_step"]
                                                             * hw.peak_flops["bf16"]))
    tokens = 16 if workload == "llama2-7b-decode" else None
    if tokens:
        assert tot["tokens_per_s"] == pytest.approx(tokens / tot["t_per_token"])
    assert len(rows) < 60  # identical layers are one row each (repeat), not one per layer


def test_overlap_false_uses_t_upper_and_calibration_hook():
    op = {**LLAMA2_7B, "layers": 2, "mode": "train", "batch": 1, "seq": 256, "overlap": False}
    hw = catalog.load_hardware("tpu-v4")
    tot = results.to_json(hw, wl_of(op))["total"]
    assert tot["t_step_basis"] == "t_upper" and tot["t_step"] == tot["t_upper"]
    assert tot["tokens_per_s"] == pytest.approx(256 / tot["t_upper"])
    # rows that carry t_calibrated (a calibrated chip) set the headline time
    from perfmodel.model.summary import step_summary

    wl = wl_of(op)
    rows = engine.evaluate_rows(hw, wl)
    cal = [{**r, "t_calibrated": 2 * r["t_lower"]} for r in rows]
    s = step_summary(hw, wl, cal)
    assert s["t_step_basis"] == "t_calibrated"
    assert s["t_calibrated"] == pytest.approx(2 * s["t_lower"])
    assert s["tokens_per_s"] == pytest.approx(256 / s["t_calibrated"])


def test_memory_fit_verdict():
    # Llama-2-7B training on one v4 (32 GiB): 10 bytes/param of params and Adam state alone is
    # 67 GB: does not fit; the FSDP-over-8 built-in fits a v5p (95 GB)
    tot = results.to_json(catalog.load_hardware("tpu-v4"),
                         wl_of({**LLAMA2_7B, "mode": "train", "batch": 1, "seq": 512}))["total"]
    assert tot["fits_memory"] is False and tot["memory_bytes_per_chip"] > 67e9
    tot = results.to_json(catalog.load_hardware("tpu-v5p"),
                         catalog.load_workload("llama2-7b-train-fsdp"))["total"]
    assert tot["fits_memory"] is True


# ---- expansion plumbing --------------------------------------------------------------------

def test_expansion_is_idempotent_and_keeps_the_source():
    wl = catalog.load_workload("llama2-7b-train-fsdp")
    assert expand_workload(wl) is wl
    src = source_workload(wl)
    assert [op.kind for op in src.ops] == ["transformer"]
    assert len({op.name for op in wl.ops}) == len(wl.ops)  # ledger paths are unique
    x = expansion(wl)
    assert x.names == [op.name for op in wl.ops]
    assert set(x.roles.values()) <= {"fwd", "bwd", "remat", "optimizer"}
    assert set(x.groups.values()) <= {"embed", "layer", "lm_head", "pipeline", "optimizer"}
    # --slice re-expands from the source and keeps the expansion
    again = with_slice(wl, "2x2x2")
    assert expansion(again) is not None and [o.name for o in again.ops] == x.names
    # a workload validated in code (not expanded) evaluates the same
    raw = Workload.model_validate(src.model_dump())
    hw = catalog.load_hardware("tpu-v5p")
    assert results.to_json(hw, raw)["total"] == results.to_json(hw, wl)["total"]


def test_cli_terminal_summary_block():
    res = CliRunner().invoke(main, ["roofline", "-H", "h100", "-w", "llama2-7b-decode"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "layer/attn/qkv" in out and "step: llama2-7b decode on 1 chip(s)" in out
    assert "MFU" in out and "tokens/s" in out and "memory per chip" in out and "fits" in out
    assert "time per output token" in out and "compute-bound from batch" in out
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v5p", "-w", "llama3-70b-prefill"])
    assert "time to first token" in res.stdout
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v4", "-w", "course-attention"])
    assert "step:" not in res.stdout  # kernel workloads keep their plain table


def test_model_package_is_pure():
    res = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        for name in ["jax", "jaxlib", "openpyxl", "xlsxwriter"]:
            sys.modules[name] = None
        import perfmodel.model, perfmodel.model.summary
        from perfmodel import catalog, results
        js = results.to_json(catalog.load_hardware("tpu-v5p"),
                             catalog.load_workload("llama2-7b-train-fsdp"))
        print(js["total"]["mfu"] > 0)
    """)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


# ---- bad inputs ----------------------------------------------------------------------------

def _bad(tmp_path, text: str) -> str:
    p = tmp_path / "wl.yaml"
    p.write_text(text)
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v5p", "-w", str(p)])
    assert res.exit_code == 2, (res.output, res.exception)
    err = res.stderr.strip()
    assert err.startswith("perfmodel: error: ") and "\n" not in err and "Traceback" not in err
    return err


MODEL = dict(name="m", kind="transformer", layers=4, d_model=512, heads=8, kv_heads=8,
             head_dim=64, d_ff=2048, vocab=1024, mlp="gated", mode="train", batch=8, seq=128)


def model_line(**changes) -> str:
    """The model as one YAML flow mapping (line 3 of the file when there is no slice/mesh);
    a value None drops the key."""
    fields = {k: v for k, v in {**MODEL, **changes}.items() if v is not None}
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


@pytest.mark.parametrize("top, changes, needles", [
    ("", {"parallelism": "{tensr: t}"}, ["parallelism", "tensr", "tensor"]),
    ("slice: '8'\nmesh: {t: 8}\n", {"parallelism": "{tensor: model}"},
     ["unknown mesh axis 'model'", "the mesh has t"]),
    ("slice: '8'\nmesh: {t: 8}\n", {"heads": 12, "kv_heads": 12, "parallelism": "{tensor: t}"},
     ["heads 12", "tensor size 8"]),
    ("slice: '8'\nmesh: {d: 8}\n", {"batch": 4, "parallelism": "{data: d}"},
     ["batch 4", "data x fsdp x expert = 8"]),
    ("", {"parallelism": "{fsdp: f}"}, ["needs the workload's mesh"]),
    ("slice: 2x4\nmesh: {d: 2, t: 4}\n", {"parallelism": "{data: d}"},
     ["mesh axis 't' is in no strategy"]),
    ("slice: '8'\nmesh: {t: 8}\n", {"parallelism": "{data: t, tensor: t}"},
     ["'t' is given to both"]),
    ("", {"experts": 8}, ["needs top_k"]),
    ("", {"top_k": 2}, ["mixture of experts"]),
    ("slice: '4'\nmesh: {e: 4}\n", {"parallelism": "{expert: e}"},
     ["needs a mixture of experts"]),
    ("", {"microbatches": 4}, ["microbatches applies to pipeline"]),
    ("", {"kv_heads": 3}, ["kv_heads 3 must divide heads 8"]),
    ("", {"mode": "decode", "optimizer": "sgd"}, ["only apply to mode: train"]),
    ("", {"mlp": "gatd"}, ["mlp", "did you mean 'gated'"]),
    ("", {"layers": None, "lyers": 4}, ["unknown key", "did you mean 'layers'"]),
    ("", {"mode": None}, ["missing required field", "mode"]),
    ("slice: '4'\nmesh: {p: 4}\n", {"layers": 6, "parallelism": "{pipeline: p}"},
     ["layers 6", "pipeline size 4"]),
    ("slice: '4'\nmesh: {p: 4}\n", {"batch": 4, "microbatches": 8,
                                     "parallelism": "{pipeline: p}"},
     ["do not split into 8 microbatches"]),
])
def test_bad_transformer_inputs_are_clear_errors(tmp_path, top, changes, needles):
    err = _bad(tmp_path, f"name: w\n{top}ops:\n{model_line(**changes)}\n")
    for n in needles:
        assert n in err, (n, err)
    assert "wl.yaml line" in err  # the file and the line of the op


def test_two_transformer_ops_are_refused(tmp_path):
    err = _bad(tmp_path, f"name: w\nops:\n{model_line()}\n{model_line(name='n')}\n")
    assert "ops[1] ('n'): a workload holds at most one transformer op" in err


# ---- workbook ------------------------------------------------------------------------------

@pytest.mark.skipif(__import__("shutil").which("soffice") is None, reason="needs LibreOffice")
def test_workbook_formulas_with_repeat_recalculate_like_python(tmp_path):
    # every formula cell of a transformer workbook (repeat cells, collectives whose t_comm
    # refers to repeated cells), recalculated by LibreOffice, equals Python's value
    from perfmodel.report.workbook import write_workbook

    from .test_workbook import _assert_parity

    wls = [catalog.load_workload(w) for w in ("llama2-7b-train-fsdp", "mixtral-8x7b-train")]
    hws = [catalog.load_hardware(h) for h in ("tpu-v5p", "h100")]
    path = write_workbook(tmp_path / "model.xlsx", wls, hws, active="tpu-v5p")
    _assert_parity(path, tmp_path, 1000)
    import openpyxl

    ws = openpyxl.load_workbook(path)["Ops"]
    formulas = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert any("repeat" in f for f in formulas if f.startswith("="))


def test_data_parallel_across_slices_crosses_dcn():
    # two v5p slices of 2x2x2 joined by DCN: the outermost mesh axis (data) spans the slices,
    # so the gradient all-reduce runs over DCN (dcn_bandwidth per chip), FSDP inside a slice
    op = {**LLAMA2_7B, "layers": 2, "mode": "train", "batch": 16, "seq": 512,
          "parallelism": {"data": "data", "fsdp": "fsdp"}}
    wl = wl_of(op, slice="2x2x2", slices=2, mesh={"data": 2, "fsdp": 8})
    rows = {r["name"]: r for r in rows_of(wl, "tpu-v5p")}
    ar = rows["layer/dp/all_reduce.bwd"]
    assert ar["physical_axes"] == ["dcn:2"] and ar["axes"] == ["data"]
    # V = one layer's gradients on a chip after FSDP (1/8), bf16; all-reduce over 2 slices
    # moves 2 x V/2 per chip over DCN at 6.25 GB/s
    v = 2 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) / 8
    assert ar["t_bandwidth"] == pytest.approx(2 * 2 * (v / 2) / 6.25e9)
    assert all(p.startswith("ici") for p in rows["layer/fsdp/all_gather"]["physical_axes"])
