"""Hugging Face ``config.json`` -> the architecture fields of a ``transformer`` op.

A transformer op may say ``config: PATH`` (a model's ``config.json``; a relative path is taken
from the workload file's directory). At load (``catalog.load_workload``), before validation,
``resolve_workload`` reads it and fills every architecture field the op does not write itself:
fields written in the YAML override the config. ``perfmodel import-hf`` prints the same mapping
as an op with the source of each field (``op_yaml``).

Mapping (transformers' own config classes name the keys):

| op field | config key |
|---|---|
| layers | num_hidden_layers |
| d_model | hidden_size |
| heads | num_attention_heads |
| kv_heads | num_key_value_heads (absent: heads, the classes' default) |
| head_dim | head_dim (absent or null: hidden_size / num_attention_heads) |
| d_ff | intermediate_size (qwen3_moe: moe_intermediate_size, the experts' width) |
| vocab | vocab_size |
| mlp | gated: every supported family has a gated MLP (SwiGLU; GeGLU on gemma) |
| experts, top_k | num_local_experts (mixtral) or num_experts (qwen3_moe); num_experts_per_tok |
| tie_embeddings | tie_word_embeddings; absent: the model class's default (TIE_DEFAULT) |
| qkv_bias | qwen2 always (its q, k, v projections carry a bias); attention_bias elsewhere |
| sliding_window | sliding_window where the family uses it (mistral, mixtral, phi3, gemma2 on every other layer; qwen only with use_sliding_window) |

What is refused (exit 2, naming the key), rather than silently mis-modelled: a ``model_type``
not in ``SUPPORTED``; DeepSeek-V3's multi-head latent attention (``q_lora_rank``,
``kv_lora_rank``), shared experts (``n_shared_experts``) and dense first layers
(``first_k_dense_replace``); Qwen2-MoE's shared expert (``shared_expert_intermediate_size``);
layers that differ (qwen3_moe ``decoder_sparse_step`` > 1 or ``mlp_only_layers``); biased MLPs
(``mlp_bias``). A window shorter than ``seq`` is refused by the op itself (specs.TransformerOp).

Not counted, by design (well under 0.01% of the parameters): gemma2's extra post-attention and
post-MLP norms, qwen3's per-head q/k norms; logit soft-capping and RoPE details do not change
the roofline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..specs import SpecError, read_text

SUPPORTED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2",
             "phi3")
REFUSED = ("deepseek_v3", "qwen2_moe")  # recognised, but parts of them are not modelled

# tie_word_embeddings when the config omits it: the model class's default in transformers
# (PretrainedConfig's is true; most decoder families set false)
TIE_DEFAULT = {"llama": False, "mistral": False, "mixtral": False, "qwen2": False,
               "qwen2_moe": False, "qwen3": False, "qwen3_moe": False, "gemma": True,
               "gemma2": True, "phi3": False, "deepseek_v3": False}
BASE_TIE_DEFAULT = True

# the op fields a config fills, in the order import-hf prints them
ARCH_FIELDS = ("layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "vocab", "mlp",
               "experts", "top_k", "tie_embeddings", "qkv_bias", "sliding_window")


@dataclass(frozen=True)
class Filled:
    """One op field from a config: its value and where it came from (a comment)."""

    field: str
    value: Any
    source: str


def read_config(path: Path) -> dict:
    """The config as a dict; SpecError naming the file and the fix otherwise."""
    path = Path(path)
    text = read_text(path, "JSON", what="a Hugging Face config.json file (for a model's "
                     "directory, name the config.json inside it)",
                     missing="A transformer op's config: is a Hugging Face config.json, its "
                             "path relative to the workload file: check the path.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); "
                        f"config: needs a Hugging Face config.json.") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a JSON object (a Hugging Face "
                        f"config.json), got {type(data).__name__}.")
    return data


def _whole(cfg: dict, key: str, path: Path, field: str) -> int:
    """A positive whole number from the config, or an error naming the key and the field."""
    if key not in cfg or cfg[key] is None:
        raise SpecError(f"{path}: missing '{key}', which gives the op's {field}: add it to the "
                        f"config or write {field} in the transformer op.")
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SpecError(f"{path}: '{key}' is {v!r}; it gives the op's {field} and must be a "
                        f"positive whole number.")
    return v


def _given(op: dict, field: str) -> int | None:
    """A whole number the op writes itself (else None: the config's is used; a bad value is
    reported by the op's validation)."""
    v = op.get(field)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _refuse(path: Path, mt: str, what: list[str], extra: str = "") -> SpecError:
    return SpecError(
        f"{path}: model_type {mt!r}: {'; '.join(what)} {'is' if len(what) == 1 else 'are'} not "
        f"modelled by perfmodel's transformer op (identical layers, multi-head or grouped-query "
        f"attention, routed experts only){extra}. Write an op by hand that approximates it, or "
        f"drop config:.")


def _check_supported(cfg: dict, path: Path) -> str:
    mt = cfg.get("model_type")
    if mt is None:
        raise SpecError(f"{path}: missing 'model_type', which says the model family; supported: "
                        f"{', '.join(SUPPORTED)}.")
    if mt == "deepseek_v3":
        what = []
        if cfg.get("q_lora_rank") is not None or cfg.get("kv_lora_rank") is not None:
            what.append("multi-head latent attention (q_lora_rank, kv_lora_rank, "
                        "qk_rope_head_dim)")
        if cfg.get("n_shared_experts"):
            what.append(f"shared experts (n_shared_experts {cfg['n_shared_experts']})")
        if cfg.get("first_k_dense_replace"):
            what.append(f"dense first layers (first_k_dense_replace "
                        f"{cfg['first_k_dense_replace']} makes layers differ)")
        extra = ""
        try:
            total, active = deepseek_v3_params(cfg)
            extra = (f" (the config itself holds {total / 1e9:.1f}e9 parameters, "
                     f"{active / 1e9:.1f}e9 active per token, without the multi-token "
                     f"prediction module)")
        except (KeyError, TypeError):
            pass
        raise _refuse(path, mt, what or ["its architecture"], extra)
    if mt == "qwen2_moe":
        if cfg.get("shared_expert_intermediate_size"):
            raise _refuse(path, mt, [f"the shared expert (shared_expert_intermediate_size "
                                     f"{cfg['shared_expert_intermediate_size']})"])
        raise _refuse(path, mt, ["its architecture"])
    if mt not in SUPPORTED:
        raise SpecError(f"{path}: model_type {mt!r} is not supported; supported: "
                        f"{', '.join(SUPPORTED)} (deepseek_v3 and qwen2_moe are recognised and "
                        f"refused with the reason). Write the architecture fields in the op "
                        f"instead of config:.")
    if cfg.get("mlp_bias"):
        raise _refuse(path, mt, ["a biased MLP (mlp_bias true)"])
    if mt == "qwen3_moe":
        if cfg.get("decoder_sparse_step", 1) != 1:
            raise _refuse(path, mt, [f"decoder_sparse_step {cfg['decoder_sparse_step']} (only "
                                     f"every n-th layer is a mixture of experts: layers differ)"])
        if cfg.get("mlp_only_layers"):
            raise _refuse(path, mt, [f"mlp_only_layers {cfg['mlp_only_layers']} (dense layers "
                                     f"among the expert layers: layers differ)"])
    return mt


def from_config(cfg: dict, path: Path, given: dict | None = None) -> list[Filled]:
    """The op fields ``cfg`` gives (all of ARCH_FIELDS it can, in that order), except those
    ``given`` (written in the op, so the config is not asked for them)."""
    path = Path(path)
    given = given or {}
    skip = set(given)
    mt = _check_supported(cfg, path)
    out: list[Filled] = []

    def put(field, value, source):
        if field not in skip:
            out.append(Filled(field, value, source))

    def need(field, key):
        return None if field in skip else _whole(cfg, key, path, field)

    put("layers", need("layers", "num_hidden_layers"), "num_hidden_layers")
    put("d_model", need("d_model", "hidden_size"), "hidden_size")
    put("heads", need("heads", "num_attention_heads"), "num_attention_heads")
    if "kv_heads" not in skip:
        if cfg.get("num_key_value_heads") is not None:
            put("kv_heads", _whole(cfg, "num_key_value_heads", path, "kv_heads"),
                "num_key_value_heads")
        else:
            put("kv_heads", _given(given, "heads") or _whole(cfg, "num_attention_heads", path,
                                                              "kv_heads"),
                "num_key_value_heads absent: num_attention_heads (multi-head attention)")
    if "head_dim" not in skip:
        if cfg.get("head_dim") is not None:
            put("head_dim", _whole(cfg, "head_dim", path, "head_dim"), "head_dim")
        else:
            d = _given(given, "d_model") or _whole(cfg, "hidden_size", path, "head_dim")
            n = _given(given, "heads") or _whole(cfg, "num_attention_heads", path, "head_dim")
            if d % n:
                raise SpecError(f"{path}: no 'head_dim' and hidden_size {d} is not a multiple "
                                f"of num_attention_heads {n}: add head_dim to the config or "
                                f"write head_dim in the op.")
            put("head_dim", d // n, "hidden_size / num_attention_heads (no head_dim)")
    ff_key = "moe_intermediate_size" if mt == "qwen3_moe" else "intermediate_size"
    put("d_ff", need("d_ff", ff_key), ff_key + (" (each expert's width)" if mt in
                                                 ("mixtral", "qwen3_moe") else ""))
    put("vocab", need("vocab", "vocab_size"), "vocab_size")
    act = cfg.get("hidden_act") or cfg.get("hidden_activation") or "silu"
    put("mlp", "gated", f"{mt}'s MLP is gated ({act} on the gate times the up projection)")
    if mt in ("mixtral", "qwen3_moe"):
        key = "num_local_experts" if mt == "mixtral" else "num_experts"
        put("experts", need("experts", key), key)
        put("top_k", need("top_k", "num_experts_per_tok"), "num_experts_per_tok")
    tie = cfg.get("tie_word_embeddings")
    if tie is None:
        default = TIE_DEFAULT.get(mt, BASE_TIE_DEFAULT)
        put("tie_embeddings", default,
            f"tie_word_embeddings absent: {str(default).lower()}, the {mt} class default")
    elif isinstance(tie, bool):
        put("tie_embeddings", tie, "tie_word_embeddings")
    else:
        raise SpecError(f"{path}: 'tie_word_embeddings' is {tie!r}; it must be true or false.")
    if mt == "qwen2":
        put("qkv_bias", True, "qwen2's q, k and v projections always carry a bias")
    else:
        bias = bool(cfg.get("attention_bias", False))
        put("qkv_bias", bias, "attention_bias" if "attention_bias" in cfg else
            "attention_bias absent: false")
    window = cfg.get("sliding_window")
    if mt in ("qwen2", "qwen3", "qwen3_moe") and not cfg.get("use_sliding_window", False):
        window = None  # the key is there, but the model does not use it
    if window is not None:
        w = _whole(cfg, "sliding_window", path, "sliding_window")
        put("sliding_window", w, "sliding_window" + (" (every other layer)" if mt == "gemma2"
                                                     else ""))
    return out


def resolve_op(op: dict, base_dir: Path) -> dict:
    """A transformer op's dict with its config's fields filled in (the op's own win)."""
    ref = op.get("config")
    if ref is None:
        return op
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(f"transformer op {op.get('name')!r}: config must be the path of a "
                        f"Hugging Face config.json (relative to the workload file), got {ref!r}.")
    path = Path(ref)
    if not path.is_absolute():
        path = Path(base_dir) / path
    filled = from_config(read_config(path), path, given=op)
    return {**op, **{f.field: f.value for f in filled}}


def resolve_workload(data: dict, path: Path) -> dict:
    """The workload's data with every transformer op's ``config:`` resolved (see above)."""
    ops = data.get("ops")
    if not isinstance(ops, list):
        return data  # validation reports it
    base = Path(path).parent
    new = []
    for op in ops:
        if isinstance(op, dict) and op.get("kind") == "transformer" and "config" in op:
            try:
                op = resolve_op(op, base)
            except SpecError as e:
                raise SpecError(f"{path}: ops: transformer {op.get('name')!r}, config: {e}") from None
        new.append(op)
    return {**data, "ops": new}


DEFAULT_SEQ = 2048


def op_yaml(path: Path, mode: str = "decode", batch: int = 1, seq: int | None = None) -> str:
    """The transformer op ``config.json`` gives, as YAML with each field's source (import-hf).
    ``seq`` defaults to 2048, or the sliding window when that is shorter (a longer one is
    refused at load)."""
    path = Path(path)
    cfg = read_config(path)
    filled = from_config(cfg, path)
    window = next((f.value for f in filled if f.field == "sliding_window"), None)
    if seq is None:
        seq = min(DEFAULT_SEQ, window or DEFAULT_SEQ)
    elif window is not None and seq > window:
        raise SpecError(f"{path}: --seq {seq} is longer than the config's sliding_window "
                        f"{window}, which perfmodel does not model: use --seq {window} or less "
                        f"(or write sliding_window: null in the op to price full attention).")
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    width = max(len(f"{f.field}: {_yaml_value(f.value)}") for f in filled) + 2
    lines = [f"# from {path.name}: model_type {cfg['model_type']}; each field's comment names "
             f"its source.", "# Fields written in the op override the config (config: "
             f"{path.name}).", f"- name: {name}", "  kind: transformer"]
    for f in filled:
        lines.append(f"  {f'{f.field}: {_yaml_value(f.value)}':{width}}# {f.source}")
    lines += [f"  mode: {mode}", f"  batch: {batch}", f"  seq: {seq}"]
    return "\n".join(lines) + "\n"


def _yaml_value(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def deepseek_v3_params(cfg: dict) -> tuple[int, int]:
    """(total, active per token) parameters of a DeepSeek-V3 config, without the multi-token
    prediction module: multi-head latent attention, dense first layers, routed plus shared
    experts with a router (and its bias), untied embedding and output layer."""
    D, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    N, qr, kvr = cfg["num_attention_heads"], cfg["q_lora_rank"], cfg["kv_lora_rank"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    attn = (D * qr + qr + qr * N * (nope + rope)          # q down, its norm, q up
            + D * (kvr + rope) + kvr + kvr * N * (nope + vd)  # kv down (+ rope key), norm, up
            + N * vd * D)                                  # output
    norms = 2 * D
    dense_mlp = 3 * D * cfg["intermediate_size"]
    expert = 3 * D * cfg["moe_intermediate_size"]
    E, S, k = cfg["n_routed_experts"], cfg.get("n_shared_experts") or 0, cfg["num_experts_per_tok"]
    router = D * E + E
    k_dense = cfg.get("first_k_dense_replace") or 0
    head = (1 if cfg.get("tie_word_embeddings") else 2) * V * D + D
    total = (k_dense * (attn + norms + dense_mlp)
             + (L - k_dense) * (attn + norms + (E + S) * expert + router) + head)
    active = (k_dense * (attn + norms + dense_mlp)
              + (L - k_dense) * (attn + norms + (k + S) * expert + router) + head)
    return total, active
