"""Newer chips (AMD Instinct full mesh, TPU7x Ironwood, GB200 NVL72) and Hugging Face
config.json import. The configs in tests/data/hf are the published configs' architecture fields;
the expected parameter counts are the published ones, with the arithmetic beside them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from perfmodel import api, catalog
from perfmodel.cli import main
from perfmodel.model import expansion
from perfmodel.model.hf_config import SUPPORTED, deepseek_v3_params, from_config, read_config
from perfmodel.model.transformer import (make_plan, memory_parts, param_ledger, params_6pt,
                                         params_active)
from perfmodel.model import with_slice
from perfmodel.specs import SpecError
from perfmodel.topology import group

HF = Path(__file__).parent / "data" / "hf"
NEW_CHIPS = ("mi300x", "mi325x", "mi355x", "tpu-v7", "gb200")


def load(tmp_path, config: str, name="wl", top="", **op) -> object:
    """A workload whose transformer op takes its architecture from tests/data/hf/<config>."""
    fields = {"mode": "decode", "batch": 1, "seq": 1024, **op}
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in fields.items())
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\n{top}ops:\n  - name: m\n    kind: transformer\n"
                 f"    config: {HF / config}\n{body}\n")
    return catalog.load_workload(p)


def spec_of(tmp_path, config, **op):
    return expansion(load(tmp_path, config, **op)).spec


def total(spec) -> int:
    return sum(param_ledger(spec).values())


def cli(*args):
    return CliRunner().invoke(main, list(args))


# ---- parameter counts against the published ones ------------------------------------------

def test_llama2_7b_exact(tmp_path):
    s = spec_of(tmp_path, "llama-2-7b.json")
    # meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters (untied; head_dim 4096/32 = 128)
    assert total(s) == 6_738_415_616
    assert s.head_dim == 128 and s.tie_embeddings is False


def test_mistral_7b_exact_within_its_window(tmp_path):
    s = spec_of(tmp_path, "mistral-7b-v0.1.json", seq=4096)
    # 32 x (4096*(4096 + 2*1024) + 4096*4096 + 3*4096*14336 + 2*4096) + 2*32000*4096 + 4096
    # = 7,241,732,096 (mistralai/Mistral-7B-v0.1's safetensors count)
    assert total(s) == 7_241_732_096
    assert s.sliding_window == 4096


def test_mixtral_total_and_active(tmp_path):
    s = spec_of(tmp_path, "mixtral-8x7b-v0.1.json")
    # published: 46.7e9 total, 12.9e9 active (Jiang et al. 2024, Mixtral of Experts)
    assert total(s) == pytest.approx(46.7e9, rel=0.005)
    assert params_active(s) == pytest.approx(12.9e9, rel=0.005)
    # active = 6PT's P plus the embedding: 12,879,925,248 = P + 32000*4096
    assert params_active(s) == params_6pt(s) + 32000 * 4096


def test_qwen2_7b_exact_with_qkv_bias(tmp_path):
    s = spec_of(tmp_path, "qwen2-7b.json")
    # Qwen/Qwen2-7B: 7,615,616,512; the q, k, v biases are 28 x (3584 + 2*512) = 129,024 of it
    assert total(s) == 7_615_616_512
    assert s.qkv_bias is True
    assert s.sliding_window is None  # use_sliding_window: false


def test_qwen3_8b(tmp_path):
    s = spec_of(tmp_path, "qwen3-8b.json")
    # model card: 8.2B parameters, 6.95B non-embedding; the per-head q/k norms (36 x 2 x 128)
    # are not counted (documented in hf_config)
    assert total(s) == pytest.approx(8.2e9, rel=0.005)
    assert total(s) - 2 * 151936 * 4096 == pytest.approx(6.95e9, rel=0.005)


def test_qwen3_moe_total_and_active(tmp_path):
    s = spec_of(tmp_path, "qwen3-30b-a3b.json")
    # model card: 30.5B total, 3.3B activated. Ours: 30,532,110,336 and 3,353,020,416; the card
    # rounds the active count down (3.35e9), so 2% here
    assert total(s) == pytest.approx(30.5e9, rel=0.005)
    assert params_active(s) == pytest.approx(3.3e9, rel=0.02)
    assert (s.experts, s.top_k, s.d_ff) == (128, 8, 768)  # moe_intermediate_size


def test_gemma_7b_tied_by_class_default(tmp_path):
    cfg = read_config(HF / "gemma-7b.json")
    assert "tie_word_embeddings" not in cfg  # the class default decides
    s = spec_of(tmp_path, "gemma-7b.json")
    assert s.tie_embeddings is True
    # 28 x (3072*4096*4 + 3*3072*24576 + 2*3072) + 256000*3072 + 3072 = 8,537,680,896 (8.54e9)
    assert total(s) == 8_537_680_896
    assert total(s) == pytest.approx(8.54e9, rel=0.005)


def test_gemma2_9b(tmp_path):
    s = spec_of(tmp_path, "gemma-2-9b.json", seq=4096)
    # google/gemma-2-9b: 9,241,705,984; its two extra norms per layer (42 x 2 x 3584 = 301,056)
    # are not counted
    assert total(s) == 9_241_705_984 - 301_056
    assert s.tie_embeddings is True and s.kv_heads == 8 and s.head_dim == 256


def test_phi3_mini(tmp_path):
    s = spec_of(tmp_path, "phi-3-mini-4k.json", seq=2047)
    # microsoft/Phi-3-mini-4k-instruct: 3,821,079,552 (head_dim 3072/32 = 96)
    assert total(s) == 3_821_079_552
    assert s.head_dim == 96


def test_deepseek_v3_refused_with_its_own_count(tmp_path):
    with pytest.raises(SpecError) as e:
        load(tmp_path, "deepseek-v3.json")
    msg = str(e.value)
    for key in ("q_lora_rank", "kv_lora_rank", "n_shared_experts", "first_k_dense_replace",
                "deepseek_v3"):
        assert key in msg
    tot, act = deepseek_v3_params(read_config(HF / "deepseek-v3.json"))
    # DeepSeek-V3 report: 671e9 total, 37e9 activated, without the 14e9 MTP module. Ours:
    # 671,026,434,048 and 37,552,297,472 (37e9 is rounded down by the report: 1.5%)
    assert tot == pytest.approx(671e9, rel=0.01)
    assert act == pytest.approx(37e9, rel=0.02)


def test_qwen2_moe_refused_naming_the_shared_expert(tmp_path):
    res = cli("import-hf", str(HF / "qwen1.5-moe-a2.7b.json"))
    assert res.exit_code == 2
    assert "shared_expert_intermediate_size" in res.output and "Traceback" not in res.output


def test_every_supported_type_has_a_config():
    have = {read_config(p)["model_type"] for p in HF.glob("*.json")}
    assert set(SUPPORTED) <= have


# ---- the config route: overrides, errors, sliding window, import-hf ----------------------

def test_yaml_fields_override_the_config(tmp_path):
    s = spec_of(tmp_path, "llama-2-7b.json", layers=2, tie_embeddings=True)
    assert s.layers == 2 and s.tie_embeddings is True and s.d_model == 4096


def test_config_path_is_relative_to_the_workload(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((HF / "qwen2-7b.json").read_text())
    p = tmp_path / "w.yaml"
    p.write_text("name: w\nops:\n  - {name: q, kind: transformer, config: m/config.json, "
                 "mode: decode, batch: 1, seq: 128}\n")
    assert expansion(catalog.load_workload(p)).spec.d_model == 3584


@pytest.mark.parametrize("edit, names", [
    ({"model_type": "falcon"}, ["model_type 'falcon'", "llama"]),
    ({"hidden_size": None}, ["hidden_size", "d_model"]),
    ({"num_hidden_layers": 2.5}, ["num_hidden_layers", "layers"]),
])
def test_bad_config_is_exit_2_naming_the_field(tmp_path, edit, names):
    cfg = {**read_config(HF / "llama-2-7b.json"), **edit}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    wl = tmp_path / "w.yaml"
    wl.write_text("name: w\nops:\n  - {name: x, kind: transformer, config: c.json, mode: decode, "
                  "batch: 1, seq: 64}\n")
    for res in (cli("roofline", "-H", "h100", "-w", str(wl)),
                cli("import-hf", str(tmp_path / "c.json"))):
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output
        for n in names:
            assert n in res.output


def test_missing_config_file_is_exit_2(tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text("name: w\nops:\n  - {name: x, kind: transformer, config: nope.json, "
                  "mode: decode, batch: 1, seq: 64}\n")
    res = cli("roofline", "-H", "h100", "-w", str(wl))
    assert res.exit_code == 2 and "nope.json" in res.output


def test_sliding_window_refused_beyond_seq_or_priced_full_when_null(tmp_path):
    with pytest.raises(SpecError, match="sliding_window 4096"):
        load(tmp_path, "mistral-7b-v0.1.json", seq=8192)
    s = spec_of(tmp_path, "mistral-7b-v0.1.json", seq=8192, sliding_window=None)
    assert s.sliding_window is None and s.seq == 8192


def test_import_hf_prints_an_op_that_loads_to_the_same_model(tmp_path):
    res = cli("import-hf", str(HF / "mixtral-8x7b-v0.1.json"), "--mode", "train", "--batch", "2",
              "--seq", "512")
    assert res.exit_code == 0, res.output
    assert "# num_local_experts" in res.output and "# tie_word_embeddings" in res.output
    ops = yaml.safe_load(res.output)
    p = tmp_path / "w.yaml"
    p.write_text(yaml.safe_dump({"name": "w", "ops": ops}))
    via_yaml = expansion(catalog.load_workload(p)).spec
    via_config = spec_of(tmp_path, "mixtral-8x7b-v0.1.json", mode="train", batch=2, seq=512)
    assert param_ledger(via_yaml) == param_ledger(via_config)
    assert via_yaml.mode == "train" and via_yaml.batch == 2


# ---- tied embeddings ----------------------------------------------------------------------

def test_tied_embeddings_count_once_in_params_and_memory_not_in_flops(tmp_path):
    tied = load(tmp_path, "gemma-7b.json", name="tied")
    untied = load(tmp_path, "gemma-7b.json", name="untied", tie_embeddings=False)
    st, su = expansion(tied).spec, expansion(untied).spec
    table = 256000 * 3072
    assert total(su) - total(st) == table
    pt, pu = make_plan(st, None), make_plan(su, None)
    # params in bf16 (2 bytes): one table less
    assert memory_parts(su, pu)["params"] - memory_parts(st, pt)["params"] == 2 * table
    hw = api.load_hardware("h100")
    ft = api.to_json(hw, tied)["total"]
    fu = api.to_json(hw, untied)["total"]
    assert ft["flops"] == fu["flops"]  # the output matmul is still done
    assert ft["params_active"] == ft["params"]  # tied: the embedding is the output layer
    assert fu["params_active"] == fu["params"] + table


# ---- chips --------------------------------------------------------------------------------

def test_aliases_resolve_and_list_once():
    for name in ("ironwood", "tpu7x", "TPU7x", "tpu-v7"):
        assert catalog.load_hardware(name).name == "tpu-v7"
    names = catalog.builtin_names("hardware")
    assert names.count("tpu-v7") == 1 and "ironwood" not in names and "tpu7x" not in names
    res = cli("hardware")
    assert res.exit_code == 0
    assert sum(line.split()[0] == "tpu-v7" for line in res.output.splitlines()) == 1
    assert cli("hardware", "show", "ironwood").exit_code == 0
    assert [h.name for h in api.select_hardware("tpu-v7,ironwood,h100,tpu7x")] == ["tpu-v7", "h100"]


@pytest.mark.parametrize("name", NEW_CHIPS)
def test_new_chips_cite_every_field(name):
    hw = catalog.load_hardware(name)
    present = [f for f in ("peak_flops", "vector_flops", "hbm_capacity", "hbm_bandwidth",
                           "onchip_memory", "matmul_tile", "interconnect")
               if getattr(hw, f) is not None]
    for f in present:
        assert len(hw.sources[f]) > 20, f
    assert hw.vector_flops["fp32"] > 0
    res = cli("hardware", "show", name)
    assert res.exit_code == 0 and "sources:" in res.output


def test_tpu_v7_per_chip_and_ici():
    hw = catalog.load_hardware("tpu-v7")
    assert "PER CHIP" in hw.description and "2 devices" in hw.description
    # Cloud TPU docs: 1200 GBps bidirectional ICI per chip = 6 links x 100 GB/s each way
    ic = hw.interconnect
    assert ic.links_per_chip * ic.link_bandwidth * 2 == pytest.approx(1.2e12)
    assert "int8" not in hw.peak_flops  # no published rate: left out, said in sources
    assert "int8" in hw.sources["peak_flops"].lower()
    # whole 4x4x4 cubes wrap (like v5p); 2x2x4 does not
    assert all(a.wraps for a in group(hw, "4x4x8", {"d": 128}, ["d"]).axes)
    assert not any(a.wraps for a in group(hw, "2x2x4", {"d": 16}, ["d"]).axes)
    # Google's TPU7x topologies: 2x2x1, 2x2x2, 2x2x4, 2x4x4 or whole cubes, 9216 chips a pod
    for ok in ("2x2x1", "2x2", "2x4x4", "4x8x12", "16x24x24"):
        group(hw, ok, {"d": eval(ok.replace("x", "*"))}, ["d"])
    for bad, words in (("8", "2x2x2"), ("4x4x6", "whole 4x4x4 cubes"), ("32x32x32", "9216")):
        with pytest.raises(SpecError, match=words):
            group(hw, bad, {"d": eval(bad.replace("x", "*"))}, ["d"])


def test_gb200_nvl72_slices():
    hw = catalog.load_hardware("gb200")
    assert hw.interconnect.domain_size == 72
    g = group(hw, "72", {"tp": 72}, ["tp"])
    assert g.n_link == 72 and g.ring_links == 18
    assert group(hw, "2x72", {"dp": 2, "tp": 72}, ["dp", "tp"]).n_scale_out == 2
    with pytest.raises(SpecError, match="2x72"):
        group(hw, "144", {"tp": 144}, ["tp"])
    assert "domain_size: 72" in cli("hardware", "show", "gb200").output
    with pytest.raises(SpecError, match="domain_size"):  # b200 stays an 8-GPU node
        group(catalog.load_hardware("b200"), "72", {"tp": 72}, ["tp"])


# ---- full mesh collectives ----------------------------------------------------------------

def _coll(tmp_path, chip, slice_, mesh, collective, axes, nbytes):
    p = tmp_path / f"{collective}.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: c
        slice: "{slice_}"
        mesh: {json.dumps(mesh)}
        ops:
          - {{name: c, kind: collective, collective: {collective}, axes: {json.dumps(axes)},
              bytes: {nbytes}}}
        """))
    hw = catalog.load_hardware(chip)
    return api.evaluate_rows(hw, catalog.load_workload(p))[0], hw


def test_full_mesh_all_gather_is_direct_over_n_minus_1_links(tmp_path):
    V = 1 << 30
    row, hw = _coll(tmp_path, "mi300x", "8", {"tp": 8}, "all_gather", ["tp"], V)
    L = hw.interconnect.link_bandwidth  # 64e9 B/s one way
    # each GPU receives V (n-1)/n over its 7 links at once: V * 7/8 / (7 * 64e9)
    assert row["t_bandwidth"] == pytest.approx(V * 7 / 8 / (7 * L))
    assert row["hops"] == 1  # direct: one step, not a ring's 7
    assert row["t_latency"] == pytest.approx(hw.interconnect.hop_latency)


def test_full_mesh_group_smaller_than_the_node_uses_fewer_links(tmp_path):
    V = 1 << 30
    row, hw = _coll(tmp_path, "mi300x", "2x4", {"dp": 2, "tp": 4}, "all_gather", ["tp"], V)
    L = hw.interconnect.link_bandwidth
    assert row["t_bandwidth"] == pytest.approx(V * 3 / 4 / (3 * L))  # 3 links to 3 peers
    with pytest.raises(SpecError, match="domain_size"):
        group(hw, "16", {"tp": 16}, ["tp"])


def test_full_mesh_all_to_all_and_ppermute(tmp_path):
    V = 1 << 30
    row, hw = _coll(tmp_path, "mi355x", "8", {"ep": 8}, "all_to_all", ["ep"], V)
    L = hw.interconnect.link_bandwidth
    # each GPU sends V/n^2 to each peer, each over its own link: V/64 / L; the bisection (4 x 4
    # links for 1/4 of V) gives the same
    assert row["t_link"] == pytest.approx(V / 64 / L)
    row, hw = _coll(tmp_path, "mi355x", "8", {"pp": 8}, "ppermute", ["pp"], V)
    assert row["t_link"] == pytest.approx(V / L)  # one peer, one link


# ---- CLI ----------------------------------------------------------------------------------

def test_compare_new_chips_runs():
    res = cli("compare", "-H", "mi300x,h100,tpu-v7,gb200", "-w", "llama2-7b-decode")
    assert res.exit_code == 0, res.output
    for chip in ("mi300x", "h100", "tpu-v7", "gb200"):
        assert chip in res.output


@pytest.mark.parametrize("wl", ["qwen2-7b-train-fsdp", "qwen3-30b-a3b-decode"])
def test_builtin_config_workloads_run_on_new_chips(wl):
    w = catalog.load_workload(wl)
    assert expansion(w).spec.config is not None
    for chip in NEW_CHIPS:
        on = with_slice(w, "2x2x2") if chip == "tpu-v7" and w.slice else w  # TPU7x: 8 = 2x2x2
        t = api.to_json(catalog.load_hardware(chip), on)["total"]
        assert t["t_step"] > 0 and t["params_active"] >= t["params"]


def test_workload_schema_accepts_config_or_fields():
    jsonschema = pytest.importorskip("jsonschema")
    schema = api.json_schema("workload")
    v = jsonschema.Draft202012Validator(schema)
    op = {"name": "m", "kind": "transformer", "mode": "decode", "batch": 1, "seq": 64}
    assert not list(v.iter_errors({"name": "w", "ops": [{**op, "config": "c.json"}]}))
    assert list(v.iter_errors({"name": "w", "ops": [op]}))  # neither a config nor the fields
