"""Benchmark: perfmodel side by side with llm-analysis on Llama-2-7B inference, and the speed of
perfmodel's public API (issue 14: ``to_json``, ``perfmodel.sweep`` over a transformer, a
``perfmodel plan`` search).

One run evaluates the same configuration in both tools (Llama-2-7B, one H100 SXM 80GB, bf16
weights and activations, tp=1, prompt 512 tokens, 128 generated tokens, batch 1, 4, 16, 64, 128;
llm-analysis's efficiency knobs all set to 1.0 so both are pure rooflines) and prints

- the time per configuration of each tool (median of many repetitions): llm-analysis
  ``infer()``; perfmodel through its public API: ``Workload.model_validate`` + ``to_json`` of
  the prefill and of the decode workload (target <= 300 us for the pair), ``evaluate_rows``
  alone, and ``perfmodel.sweep`` over batch 1..4096 of the prefill and the decode workload (the
  transformer recorded once and evaluated on arrays; target <= 3 us per configuration, >= 100x
  llm-analysis), checked point by point against ``to_json``. perfmodel's caches are per
  formula *structure*: an op's compiled formulas per kind, structural fields and chip; the
  step's per ledger shape; and a transformer's whole ``to_json`` per structure (chip, mesh,
  strategies, dtypes: every field but the numbers), recorded over traced numbers the second
  time that structure is evaluated and compiled into one function of the numbers
  (perfmodel/trace.py). So they are warm after the first calls, as in any session that
  evaluates more than one configuration. Each timed call computes its result from its own
  numbers (the batches alternate); no result or validated op is cached by its numbers;
- the wall time of a ``perfmodel plan`` search of more than 100,000 configurations (target
  under 10 s);
- how far the two tools agree on FLOPs (prefill, one decode step), memory (weights, KV cache)
  and latency (TTFT = prefill time, time per output token), with per-component breakdowns at
  batch 1 and a note on every difference.

It prints figures and asserts nothing. llm-analysis is not a dependency of perfmodel: install
it beside perfmodel in the environment that runs the benchmark, from the repository root:

    python3 -m venv .bench-venv                     # from the repository root
    .bench-venv/bin/pip install -e . llm-analysis
    .bench-venv/bin/python benchmarks/bench_llm_analysis.py [REPS]

(REPS, default 200: llm-analysis calls per batch, spread over REPS/10 interleaved rounds so that
load from other processes hits every tool alike; perfmodel's single evaluations a quarter as
many, the sweeps once per round. Pinned to one core where the OS allows. Well under a minute (a
plan search of about 220,000 configurations is most of it); an earlier version took about 29
minutes, nearly all in a transformer sweep that expanded every configuration again.)
llm-analysis 0.2.2 installs and runs as is with Python 3.11, numpy 2 and pandas 3: nothing had
to be pinned. Its command line gives the same figures as ``infer()`` here:
``python -m llm_analysis.analysis infer --model_name NousResearch_Llama-2-7b-hf --gpu_name
h100-sxm-80gb --dtype_name w16a16e16 --seq_len 512 --num_tokens_to_generate 128
--batch_size_per_gpu 1 --flops_efficiency 1 --hbm_memory_efficiency 1``.

How the configurations are matched. perfmodel's transformer op is built from llm-analysis's own
model config (``NousResearch_Llama-2-7b-hf``: 32 layers, d_model 4096, 32 heads, 32 KV heads,
vocab 32000, ffn_embed_dim 16384). llm-analysis models the MLP as two matrices of d x 16384
(not Llama's SwiGLU, three matrices of d x 11008: the same size within 0.8%), so the matched
perfmodel op uses ``mlp: plain, d_ff: 16384``; the real SwiGLU shape is printed beside it.
llm-analysis evaluates every decode step with the KV cache of its final length (prompt +
generated = 640 tokens), so perfmodel's decode op uses ``seq: 640`` (decode: seq = KV length);
the mean over the real KV lengths 513..640 is printed as well.
"""

from __future__ import annotations

import os

# one core: keep BLAS/OpenMP pools to one thread; quiet the transformers import llm-analysis does
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import statistics  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

try:
    from llm_analysis import analysis as la  # noqa: E402
    from llm_analysis.config import (get_dtype_config_by_name, get_gpu_config_by_name,  # noqa: E402
                                     get_model_config_by_name)
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("llm-analysis is not installed in this interpreter. Create the benchmark venv, from "
             "the repository root:\n  python3 -m venv .bench-venv && .bench-venv/bin/pip install "
             "-e . llm-analysis\nthen run this script with .bench-venv/bin/python.")

from benchutil import pin_one_core, timed  # noqa: E402
from perfmodel import (Workload, evaluate_rows, load_hardware, sweep, sweep_totals,  # noqa: E402
                       to_json)
from perfmodel import plan as pm_plan  # noqa: E402
from perfmodel.model import expand_workload  # noqa: E402
from perfmodel.model.summary import decode_compute_bound_batch  # noqa: E402

LA_MODEL = "NousResearch_Llama-2-7b-hf"
LA_GPU = "h100-sxm-80gb"
LA_DTYPE = "w16a16e16"  # 16-bit weights, activations, embeddings (bf16 and fp16 alike)
PM_CHIP = "h100"
PROMPT, GEN = 512, 128
KV_FINAL = PROMPT + GEN  # llm-analysis's KV length for every decode step
BATCHES = (1, 4, 16, 64, 128)
PINNED = "not pinned"
SWEEP_MAX = 4096
LLAMA_REAL_MLP = {"mlp": "gated", "d_ff": 11008}  # Llama-2-7B as published (SwiGLU)


# ---- llm-analysis ---------------------------------------------------------------------------

def la_kwargs(batch: int) -> dict:
    return dict(model_name=LA_MODEL, gpu_name=LA_GPU, dtype_name=LA_DTYPE, log_level="ERROR",
                batch_size_per_gpu=batch, tp_size=1, pp_size=1, dp_size=1, seq_len=PROMPT,
                num_tokens_to_generate=GEN, use_kv_cache=True,
                flops_efficiency=1.0, hbm_memory_efficiency=1.0,
                intra_node_memory_efficiency=1.0, inter_node_memory_efficiency=1.0)


def la_infer(batch: int) -> dict:
    return la.infer(**la_kwargs(batch))


def la_object() -> la.LLMAnalysis:
    """An LLMAnalysis object with the same knobs, for its per-component FLOP formulas."""
    return la.LLMAnalysis(get_model_config_by_name(LA_MODEL), get_gpu_config_by_name(LA_GPU),
                          get_dtype_config_by_name(LA_DTYPE),
                          la.ParallelismConfig(tp_size=1, pp_size=1, dp_size=1, sp_size=1),
                          flops_efficiency=1.0, hbm_memory_efficiency=1.0)


# ---- perfmodel ------------------------------------------------------------------------------

def pm_op(mode: str, batch: int, seq: int, **over) -> dict:
    """perfmodel's transformer op, built from llm-analysis's model config."""
    mc = get_model_config_by_name(LA_MODEL)
    op = {"name": "llama2-7b", "kind": "transformer", "layers": mc.num_layers,
          "d_model": mc.hidden_dim, "heads": mc.n_head, "kv_heads": mc.num_key_value_heads,
          "head_dim": mc.hidden_dim // mc.n_head, "d_ff": mc.ffn_embed_dim, "vocab": mc.vocab_size,
          "mlp": "plain", "dtype": "bf16", "param_dtype": "bf16", "mode": mode, "batch": batch,
          "seq": seq, "attention": "flash", "causal": True}
    op.update(over)
    return op


def pm_workload(mode: str, batch: int, seq: int, **over) -> Workload:
    return Workload.model_validate({"name": f"llama2-7b-{mode}",
                                    "ops": [pm_op(mode, batch, seq, **over)]})


def pm_single(hw, batch: int, **over) -> tuple[dict, dict]:
    """One configuration through the public API: validate + to_json, prefill and decode."""
    return (to_json(hw, pm_workload("prefill", batch, PROMPT, **over)),
            to_json(hw, pm_workload("decode", batch, KV_FINAL, **over)))


def pm_rows_only(hw, batch: int) -> tuple[list, list]:
    return (evaluate_rows(hw, pm_workload("prefill", batch, PROMPT)),
            evaluate_rows(hw, pm_workload("decode", batch, KV_FINAL)))


# ---- timing and formatting ------------------------------------------------------------------


def fmt_t(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.2f} us"
    return f"{s * 1e9:.1f} ns"


def fmt_n(x: float, unit: str = "") -> str:
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.4g} {p}{unit}"
    return f"{x:.4g} {unit}".rstrip()


def rel(pm, ref) -> str:
    if pm is None or ref is None or ref == 0:
        return ""
    x = (pm - ref) / ref
    return f"{pm / ref:6.0f}x" if abs(x) >= 10 else f"{x:+7.2%}"


def line(label: str, ref, pm, unit: str, width: int = 44) -> None:
    """One comparison row; None = the tool has no such term."""
    f = fmt_t if unit == "s" else (lambda v: fmt_n(v, unit))
    show = lambda v: "-" if v is None else f(v)  # noqa: E731
    print(f"  {label:<{width}} {show(ref):>14} {show(pm):>14}  {rel(pm, ref)}")


def group_sum(rows: list[dict], names: tuple[str, ...], col: str) -> float:
    return sum(r[col] for r in rows if r["name"] in names)


# ---- sections -------------------------------------------------------------------------------

def print_setup(hw) -> None:
    mc, gc = get_model_config_by_name(LA_MODEL), get_gpu_config_by_name(LA_GPU)
    op = pm_op("decode", 1, KV_FINAL)
    print("Configuration (llm-analysis model config -> perfmodel transformer op)")
    print(f"  layers {mc.num_layers} -> {op['layers']}, d_model {mc.hidden_dim} -> "
          f"{op['d_model']}, heads {mc.n_head} -> {op['heads']}, kv_heads "
          f"{mc.num_key_value_heads} -> {op['kv_heads']}, head_dim {mc.hidden_dim // mc.n_head}"
          f" -> {op['head_dim']}, vocab {mc.vocab_size} -> {op['vocab']}")
    print(f"  MLP: llm-analysis ffn_embed_dim {mc.ffn_embed_dim}, 2 matrices -> perfmodel "
          f"mlp: {op['mlp']}, d_ff {op['d_ff']} (Llama's real SwiGLU: gated, d_ff 11008, "
          f"printed separately)")
    print(f"  dtype: llm-analysis {LA_DTYPE} (16-bit weights/activations/embeddings/KV, "
          f"layernorm 2 B) -> perfmodel dtype bf16, param_dtype bf16; tp=pp=dp=1, one chip")
    print(f"  prompt {PROMPT}, generated {GEN}; decode evaluated at KV length {KV_FINAL} in "
          f"both; attention: flash, causal (perfmodel)")
    r = la_infer(1)
    print(f"  efficiency knobs (llm-analysis, as its result reports them): flops_efficiency="
          f"{r['flops_efficiency']}, hbm_memory_efficiency={r['hbm_memory_efficiency']} (intra/"
          f"inter-node 1.0, unused at tp=1)")
    print(f"  hardware: llm-analysis {gc.name}: {gc.peak_fp16_TFLOPS} TFLOP/s 16-bit, HBM "
          f"{gc.hbm_bandwidth_in_GB_per_sec} GB/s, memory {gc.mem_per_GPU_in_GB} x 2^30 B")
    print(f"            perfmodel {hw.name}: {hw.peak_flops['bf16'] / 1e12:g} TFLOP/s bf16, HBM "
          f"{hw.hbm_bandwidth / 1e9:g} GB/s, capacity {hw.hbm_capacity / 2**30:g} GiB "
          f"({hw.hbm_capacity / 1e9:.2f} GB)")


def print_speed(hw, reps: int) -> None:
    print("\nSpeed per configuration (one configuration = one batch size: prefill and decode "
          "figures)")
    vary = f"batch=1..{SWEEP_MAX}:1"
    wl_p = expand_workload(pm_workload("prefill", 1, PROMPT))
    wl_d = expand_workload(pm_workload("decode", 1, KV_FINAL))
    dwl = pm_workload("decode", 1, KV_FINAL)

    def public_sweep():  # perfmodel.sweep of the prefill and the decode workload, with totals
        return (sweep_totals(sweep(wl_p, hw, vary)), sweep_totals(sweep(wl_d, hw, vary)))

    # interleaved rounds, so that load from other processes hits every tool alike
    rounds = max(reps // 10, 5)
    per = max(reps // rounds, 1)
    la_t, pm_t, rows_t, cbb_t, sw_t = [], [], [], [], []
    for _ in range(rounds):
        for b in BATCHES:
            la_t += timed(lambda b=b: la_infer(b), per)
            pm_t += timed(lambda b=b: pm_single(hw, b), max(per // 4, 1))
            rows_t += timed(lambda b=b: pm_rows_only(hw, b), max(per // 4, 1))
        cbb_t += timed(lambda: decode_compute_bound_batch(hw, dwl.ops[0], None), max(per // 4, 1))
        sw_t += timed(public_sweep, 1)

    la_med = statistics.median(la_t)
    pm_med = statistics.median(pm_t)
    rows_med = statistics.median(rows_t)
    sw_cfg = statistics.median(sw_t) / SWEEP_MAX
    print(f"  ({PINNED}; medians over {rounds} interleaved rounds x {len(BATCHES)} batches; "
          f"ratio = llm-analysis time / perfmodel time)")
    w = 62
    print(f"  {'llm-analysis infer() (prefill + decode in one call)':<{w}} {fmt_t(la_med):>11}"
          f"  ({len(la_t)} calls)")
    print(f"  {'perfmodel to_json, prefill + decode (public API, validated)':<{w}} "
          f"{fmt_t(pm_med):>11}  ratio {la_med / pm_med:8.2f}x  ({len(pm_t)} calls)  "
          f"target <= 300 us")
    print(f"  {'  decode compute_bound_batch alone (closed form; expands the op)':<{w}} "
          f"{fmt_t(statistics.median(cbb_t)):>11}")
    print(f"  {'perfmodel evaluate_rows, prefill + decode (no step summary)':<{w}} "
          f"{fmt_t(rows_med):>11}  ratio {la_med / rows_med:8.2f}x  ({len(rows_t)} calls)")
    print(f"  {f'perfmodel.sweep + sweep_totals, {vary}, prefill + decode':<{w}} "
          f"{fmt_t(sw_cfg):>11}  ratio {la_med / sw_cfg:8.0f}x  (both sweeps "
          f"{fmt_t(statistics.median(sw_t))}, {len(sw_t)} runs)  target <= 3 us, >= 100x")

    # the public sweep agrees with single evaluations point by point
    p, d = public_sweep()
    worst = 0.0
    for b in BATCHES:
        jp, jd = pm_single(hw, b)
        for tot, j in ((p, jp), (d, jd)):
            row = tot[tot["batch"] == b].iloc[0]
            for c in ("flops", "hbm_bytes", "t_lower", "tokens_per_s"):
                worst = max(worst, abs(row[c] - j["total"][c]) / j["total"][c])
    print(f"  perfmodel.sweep vs to_json at batch {', '.join(map(str, BATCHES))} (flops, "
          f"hbm_bytes, t_lower, tokens_per_s; prefill and decode): max relative difference "
          f"{worst:.1e}")

    # a plan search: every sold slice of two chips for Llama-3-70B training
    req = pm_plan.load_request("llama3-70b", mode="train")
    chips = [load_hardware("tpu-v5p"), load_hardware("tpu-v5e")]
    res = pm_plan.search(req, chips)
    print(f"  perfmodel plan -w llama3-70b -H tpu-v5p,tpu-v5e --mode train: "
          f"{res.searched:,} configurations in {res.seconds:.2f} s "
          f"({res.seconds / res.searched * 1e6:.1f} us each; {len(res.table):,} evaluated, "
          f"the rest refused on divisibility before evaluation; {len(res.feasible):,} "
          f"feasible)  target >= 100,000 in < 10 s")


def print_agreement(hw) -> None:
    print("\nAgreement (perfmodel vs llm-analysis; diff = perfmodel / llm-analysis - 1)")
    print(f"  {'quantity':<44} {'llm-analysis':>14} {'perfmodel':>14}  {'diff':>7}")
    kv_lengths = np.arange(PROMPT + 1, KV_FINAL + 1, dtype=float)
    for b in BATCHES:
        r = la_infer(b)
        jp, jd = pm_single(hw, b)
        tp, td = jp["total"], jd["total"]
        print(f" batch {b}")
        line("prefill FLOPs", r["prefill_num_flops_fwd_total"], tp["flops"], "FLOP")
        line("decode FLOPs per step (KV 640)", r["decode_num_flops_fwd_total"], td["flops"],
             "FLOP")
        line("weights bytes", r["weight_memory_per_gpu"], td["memory_parts"]["params"], "B")
        line("KV cache bytes (KV 640)", r["kv_cache_memory_per_gpu"],
             td["memory_parts"]["kv_cache"], "B")
        line("weights + KV + decode activations", r["weight_memory_per_gpu"]
             + r["kv_cache_memory_per_gpu"] + r["decode_activation_memory_per_gpu"],
             td["memory_bytes_per_chip"], "B")
        line("TTFT = prefill time", r["prefill_latency"], tp["ttft"], "s")
        line("time per output token (KV 640)", r["decode_latency"], td["t_per_token"], "s")
        grow = np.array([to_json(hw, pm_workload("decode", b, int(kv)))["total"]["t_lower"]
                         for kv in kv_lengths])
        line("  perfmodel mean over KV 513..640", r["decode_latency"], float(grow.mean()), "s")
        line(f"prefill + {GEN} decode steps (pm: KV 513..640)", r["total_latency"],
             tp["ttft"] + float(grow.sum()), "s")


def print_breakdown(hw) -> None:
    A = la_object()
    mc = A.model_config
    L, d, V, g = mc.num_layers, mc.hidden_dim, mc.vocab_size, mc.num_key_value_groups
    b = 1
    r = la_infer(b)
    jp, jd = pm_single(hw, b)
    print("\nBreakdown (llm-analysis: its own per-component formulas and summary keys; "
          "perfmodel: its ledger rows; '-' = the tool has no such term)")
    for phase, S, j in (("prefill", PROMPT, jp), ("decode", 1, jd)):
        rows = j["ops"]
        print(f" batch {b}, {phase} FLOPs" + (" (llm-analysis: a 1-token forward; perfmodel: 1 "
                                             "query over KV 640)" if phase == "decode" else ""))
        proj = L * (4 * b * S * d * d + 4 * b * S * d * d / g)
        core = L * 4 * b * S * S * d
        mlp = L * A.get_num_flops_fwd_per_layer_mlp(b, S)
        logits = 2 * b * S * d * V
        line("q, k, v, o projections", proj,
             group_sum(rows, ("layer/attn/qkv", "layer/attn/o"), "flops"), "FLOP")
        line("attention core (QK^T, softmax, AV)", core, group_sum(rows, ("layer/attn",), "flops"),
             "FLOP")
        line("MLP matmuls", mlp, group_sum(rows, ("layer/mlp/up", "layer/mlp/down"), "flops"),
             "FLOP")
        line("elementwise (norms, activation)", None,
             group_sum(rows, ("layer/norm1", "layer/norm2", "layer/mlp/act", "lm_head/norm"),
                       "flops"), "FLOP")
        line("logits (output layer)", logits, group_sum(rows, ("lm_head/proj",), "flops"), "FLOP")
        line("total", proj + core + mlp + logits, j["total"]["flops"], "FLOP")
    nc = pm_single(hw, b, causal=False)[0]["ops"]
    print(f"  perfmodel's prefill attention core with causal: false would be "
          f"{fmt_n(group_sum(nc, ('layer/attn',), 'flops'), 'FLOP')}")

    for bb in (1, BATCHES[-1]):
        r = la_infer(bb)
        pair = pm_single(hw, bb)
        for phase, j, pre in (("prefill (TTFT)", pair[0], "prefill_"),
                              ("decode (per token, KV 640)", pair[1], "decode_")):
            rows = j["ops"]
            print(f" batch {bb}, {phase} time per component")
            line("attention block (qkv, core, o)", r[pre + "latency_fwd_attn"],
                 group_sum(rows, ("layer/attn/qkv", "layer/attn", "layer/attn/o"), "t_lower"),
                 "s")
            line("  of which attention core (perfmodel)", None,
                 group_sum(rows, ("layer/attn",), "t_lower"), "s")
            line("MLP block (up, activation, down)", r[pre + "latency_fwd_mlp"],
                 group_sum(rows, ("layer/mlp/up", "layer/mlp/act", "layer/mlp/down"), "t_lower"),
                 "s")
            line("norms", r[pre + "latency_fwd_layernorm"],
                 group_sum(rows, ("layer/norm1", "layer/norm2", "lm_head/norm"), "t_lower"), "s")
            line("input embedding", r[pre + "latency_fwd_input_embedding"],
                 group_sum(rows, ("embed/lookup",), "t_lower"), "s")
            line("output layer (logits)", r[pre + "latency_fwd_output_embedding_loss"],
                 group_sum(rows, ("lm_head/proj",), "t_lower"), "s")
            if pre == "decode_":
                line("KV cache load + store (llm-analysis)", r["kv_cache_latency"], None, "s")
            line("total", r[pre + "latency"], j["total"]["t_lower"], "s")

    r = la_infer(b)
    mp_p, mp_d = jp["total"]["memory_parts"], jd["total"]["memory_parts"]
    print(f" batch {b}, memory")
    emb = r["weight_memory_embedding_per_gpu"]
    line("weights: embedding (+ output layer)", emb, 2 * V * d * 2, "B")
    line("weights: layers + final norm", r["weight_memory_per_gpu"] - emb,
         mp_d["params"] - 2 * V * d * 2, "B")
    line("weights total", r["weight_memory_per_gpu"], mp_d["params"], "B")
    line("KV cache (KV 640)", r["kv_cache_memory_per_gpu"], mp_d["kv_cache"], "B")
    line("prefill activations", r["prefill_activation_memory_per_gpu"], mp_p["activations"], "B")
    line("decode activations", r["decode_activation_memory_per_gpu"], mp_d["activations"], "B")
    print(f"  (llm-analysis logs bytes in binary units labelled 'GB': weights "
          f"{r['weight_memory_per_gpu'] / 2**30:.2f} 'GB' = {r['weight_memory_per_gpu'] / 1e9:.2f}"
          f" GB; every figure here is bytes with SI prefixes)")

    real_p, real_d = pm_single(hw, b, **LLAMA_REAL_MLP)
    print(f" batch {b}, perfmodel with Llama-2-7B's real MLP (SwiGLU: gated, d_ff 11008) vs the "
          f"same llm-analysis run")
    line("weights bytes", r["weight_memory_per_gpu"], real_d["total"]["memory_parts"]["params"],
         "B")
    line("prefill FLOPs", r["prefill_num_flops_fwd_total"], real_p["total"]["flops"], "FLOP")
    line("decode FLOPs per step (KV 640)", r["decode_num_flops_fwd_total"],
         real_d["total"]["flops"], "FLOP")
    line("TTFT", r["prefill_latency"], real_p["total"]["ttft"], "s")
    line("time per output token (KV 640)", r["decode_latency"], real_d["total"]["t_per_token"],
         "s")
    line("parameters", A.total_num_params, real_d["total"]["params_total"], "")


NOTES = """
Why they differ (see the breakdowns above)
- Peak and bandwidth: llm-analysis 989 TFLOP/s, perfmodel 990 (0.1%); both 3.35e12 B/s HBM with
  efficiencies at 1.0 (genz-llm's 3.4 TB/s is only a recorded alternative in hardware/h100.yaml).
  Capacity is 80 x 2^30 B in both; llm-analysis prints binary units with a 'GB' label.
- Projections and MLP matmul FLOPs agree exactly: llm-analysis counts its MLP as 16 B S d^2
  (a 4d two-matrix MLP, whatever ffn_embed_dim says), which the matched plain d_ff 16384 op
  reproduces; Llama's SwiGLU (3 x d x 11008) is 0.8% more.
- Attention core, prefill: llm-analysis counts 4 B S^2 d, every score of the S x S matrix, no
  causal mask and no softmax; perfmodel keeps (S+1)/(2S) of the scores (causal) and adds
  5 FLOPs per score for the softmax (with causal: false it is 1% above llm-analysis's count).
- Logits, prefill: llm-analysis computes logits at all S positions (2 B S d V, 134 GFLOP at
  batch 1, timed as compute); perfmodel only at the last position (inference needs one token),
  which is memory-bound on reading the d x V output matrix. Net: prefill FLOPs -2.9% in perfmodel.
- Attention core, decode: llm-analysis's decode FLOPs are a 1-token forward, so the new token
  attends to itself only (4 B d per layer); perfmodel attends over the KV cache
  ((4 head_dim + 5) B heads T per layer, 339 MFLOP per sequence at T=640): +2.6%.
- Norms and activation: llm-analysis counts no FLOPs for them and charges each norm one
  [tokens, d] tensor at 4 B (its latency path ignores layernorm_dtype_bytes=2 and uses fp32);
  perfmodel counts 4-5 FLOPs per element and moves four bf16 [tokens, d] tensors per norm (reads
  the residual and the block output, writes the sum and the normalised input): 2x the bytes.
  perfmodel also runs the MLP activation as its own memory-bound elementwise kernel, which
  llm-analysis folds into the MLP block.
- Kernel granularity: llm-analysis takes max(compute, memory) per block (attention, MLP), so
  the attention core's and the activation's traffic hide under the block's matmul compute;
  perfmodel takes it per kernel and adds them. Its flash attention core is memory-bound at
  S=512: a 228 kB SM holds query blocks of 142 rows (the Q, O, K, V tiles and the fp32 score
  tile), so K and V are read from HBM 4 times (on an H100 those re-reads would mostly hit the
  50 MB L2), and its softmax exps run on the SFU (3.9e12/s). Attention core, MLP activation and
  norms add to TTFT; llm-analysis's whole-table embedding read and all-position logits take a
  little back: TTFT is several percent above llm-analysis's at every batch (the table above).
- Embedding and output layer: llm-analysis assumes them tied (one V x d matrix: weights 262 MB
  less, exactly the gap in 'weights bytes'; Llama-2 does not tie them, perfmodel counts both).
  Its input-embedding time reads the whole table every step (78 us) and its decode logits are
  compute-only (0.3 us); perfmodel reads B x S rows for the lookup and the whole output matrix
  for the logits (78 us). At decode the two bookkeepings cancel.
- KV cache: same bytes (2 B T layers kv_heads head_dim x 2 B, T = 640 in both). llm-analysis
  charges every decode step 2 x the whole cache (load and store) at the final length; perfmodel
  reads K and V once per step (flash decode) and writes only the new token's K, V (in the qkv
  output). That is the decode gap: -2.4% at batch 1 (the weights dominate) growing to -42% at
  batch 128, where the KV cache is 43 GB; over the real KV lengths 513..640 perfmodel is lower
  still (llm-analysis uses 640 for every step).
- Activations: both are a working set, not a sum over layers, and defined differently:
  llm-analysis the largest single tensor (all-position logits in prefill, B S V x 2 B);
  perfmodel one layer's tensors plus the last-position logits.
"""


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    import llm_analysis
    from importlib.metadata import version

    global PINNED
    PINNED = pin_one_core()
    hw = load_hardware(PM_CHIP)
    print(f"perfmodel vs llm-analysis {version('llm-analysis')} "
          f"({os.path.dirname(llm_analysis.__file__)}), numpy {np.__version__}, "
          f"Python {sys.version.split()[0]}\n")
    print_setup(hw)
    print_speed(hw, reps)
    print_agreement(hw)
    print_breakdown(hw)
    print(NOTES.rstrip())


if __name__ == "__main__":
    main()
