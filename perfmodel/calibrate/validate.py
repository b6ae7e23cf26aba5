"""``perfmodel validate``: a reference transformer in plain JAX, measured against the model.

The reference model is built from a ``TransformerOp`` (no flax, no optax): token embedding,
pre-norm blocks (RMSNorm), naive attention (explicit QK^T, causal mask, softmax, AV) with
grouped-query heads, a gated (SiLU) or plain (ReLU) MLP, a final norm, the output layer and a
softmax cross-entropy. Layouts follow the ledger (transformer.py): the residual stream is
[tokens, D] (tokens as rows, like the ledger's matmuls; a [B, T, D] layout makes XLA's CPU
backend transpose activations for the weight gradients), one fused QKV projection
``wqkv [D, K (G+2) H]`` (per KV head its G query heads, then K and V), ``wo [N H, D]``,
``w_up``, ``w_gate`` (gated) ``[D, F]``, ``w_down [F, D]``. Every op runs in a
``jax.named_scope`` named as its ledger row (``layer/attn/qkv``). Layers are a Python loop
(unrolled in the HLO), so XLA's cost analysis counts every layer (it counts a while/scan body
once). fp32 throughout: bf16 on the XLA CPU backend is emulated through fp32 converts, slower
and with inflated FLOP counts.

Programs:
- train step: loss, ``jax.value_and_grad``, Adam written out (fp32 moments, bias correction),
  jitted with the parameters and optimizer state donated;
- decode step: one new token per sequence over a KV cache of ``seq`` positions ([B, K, T, H] per
  layer, written in place at position seq-1, the cache donated), the last position's logits and
  an argmax.

On 8 host devices (a subprocess: XLA_FLAGS must be set before jax starts) the same programs run
under ``jax.jit`` with NamedSharding in/out shardings on a one-axis mesh: FSDP (every parameter
and the Adam moments sharded, gathered inside each layer by a sharding constraint, the batch
split over the same axis) or tensor parallelism (Megatron column/row splits of QKV, O, up and
down over KV heads and d_ff, vocab-split embedding and output layer, the residual split over
tokens between blocks in training, replicated in decode).

Measured: the step's median time (timing.time_kernel, retried while other processes load the
machine). Predicted: perfmodel's ``to_json`` of a workload holding the same TransformerOp, on the
calibrated spec (``total.t_calibrated``) and as the spec-sheet roofline (``total.t_lower``); the
8-device configs on ``host_devices_hardware`` (every rate shared by the 8 devices). Per-op
breakdown (one device): a jax.profiler trace of the step; each XLA kernel (thunk) is mapped to
the ledger row of its named scope through the compiled HLO's op_name metadata (a fused kernel
counts to the row of its root op; kernels running at once share the time evenly). FLOPs: XLA's
cost_analysis of the compiled forward and step vs the ledger's, products apart
(``xla_conventions`` explains the rest).

jax is imported only inside functions.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from ..specs import TransformerOp, Workload

N_HOST_DEVICES = 8
EPS_NORM = 1e-6
ADAM = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8)

# ---- configurations -----------------------------------------------------------------------

COMMON = dict(dtype="fp32", param_dtype="fp32", attention="naive", causal=True)
# the course's small model (HighPerfLLMs2024 s01: 4 layers, d_model 512, 4 heads x 128, FF 2048
# with relu, byte vocabulary of 256)
SMALL = dict(layers=4, d_model=512, heads=4, kv_heads=4, head_dim=128, d_ff=2048, vocab=256,
             mlp="plain")
# a grouped-query, gated-MLP variant of it (Llama-style blocks at the same width)
GQA = dict(layers=4, d_model=512, heads=8, kv_heads=2, head_dim=64, d_ff=1536, vocab=256,
           mlp="gated")
# the course's larger model (8 layers, d_model 2048, 8 heads x 256, FF 8192)
BIG = dict(layers=8, d_model=2048, heads=8, kv_heads=8, head_dim=256, d_ff=8192, vocab=256,
           mlp="plain")


@dataclass(frozen=True)
class Config:
    name: str
    fields: dict = field(hash=False)
    mesh: dict | None = field(default=None, hash=False)     # e.g. {"fsdp": 8}
    quick: bool = True                                       # part of --quick

    @property
    def devices(self) -> int:
        return math.prod(self.mesh.values()) if self.mesh else 1

    @property
    def strategy(self) -> str:
        return next(iter(self.mesh)) if self.mesh else "single"

    def op(self) -> TransformerOp:
        par = {s: s for s in self.mesh} if self.mesh else {}
        return TransformerOp(kind="transformer", name=self.name, **{**COMMON, **self.fields},
                             parallelism=par)

    def workload(self) -> Workload:
        extra = {"slice": str(self.devices), "mesh": dict(self.mesh)} if self.mesh else {}
        return Workload(name=f"validate-{self.name}", ops=[self.op().model_dump(
            exclude_none=True)], **extra)


def _cfg(name, base, mesh=None, quick=True, **kw):
    return Config(name, {**base, **kw}, mesh, quick)


CONFIGS: list[Config] = [
    _cfg("small-train", SMALL, mode="train", batch=4, seq=128),
    _cfg("gqa-gated-train", GQA, mode="train", batch=4, seq=256),
    _cfg("small-train-b16", SMALL, mode="train", batch=16, seq=128, quick=False),
    _cfg("small-decode", SMALL, mode="decode", batch=16, seq=512),
    _cfg("gqa-gated-decode", GQA, mode="decode", batch=8, seq=2048),
    _cfg("big-decode", BIG, mode="decode", batch=1, seq=128),
    _cfg("big-decode-b8", BIG, mode="decode", batch=8, seq=1024, quick=False),
    # 8 host devices (one subprocess)
    _cfg("small-train-fsdp8", SMALL, {"fsdp": 8}, mode="train", batch=8, seq=128),
    _cfg("tp-train-tp8", SMALL, {"tensor": 8}, heads=8, kv_heads=8, head_dim=64, mode="train",
         batch=4, seq=128),
    _cfg("big-decode-tp8", BIG, {"tensor": 8}, mode="decode", batch=1, seq=128),
    _cfg("small-decode-fsdp8", SMALL, {"fsdp": 8}, mode="decode", batch=16, seq=512,
         quick=False),
]


# tiny models for the tests (seconds to compile and run); not part of perfmodel validate
TINY = dict(layers=2, d_model=64, heads=8, kv_heads=2, head_dim=16, d_ff=128, vocab=64,
            mlp="gated")
TEST_CONFIGS: list[Config] = [
    _cfg("tiny-train", TINY, mode="train", batch=2, seq=16),
    _cfg("tiny-decode", TINY, mode="decode", batch=2, seq=32),
    _cfg("tiny-train-fsdp8", TINY, {"fsdp": 8}, mode="train", batch=8, seq=16),
    _cfg("tiny-train-tp8", TINY, {"tensor": 8}, kv_heads=8, mode="train", batch=2, seq=16),
    _cfg("tiny-decode-tp8", TINY, {"tensor": 8}, kv_heads=8, mode="decode", batch=8, seq=32),
    _cfg("tiny-decode-fsdp8", TINY, {"fsdp": 8}, mode="decode", batch=8, seq=32),
]


def configs(quick: bool = False, devices: int | None = None) -> list[Config]:
    return [c for c in CONFIGS if (c.quick or not quick)
            and (devices is None or c.devices == devices)]


def config(name: str) -> Config:
    for c in CONFIGS + TEST_CONFIGS:
        if c.name == name:
            return c
    raise KeyError(name)


# ---- the reference model (jax inside functions) -------------------------------------------

@dataclass(frozen=True)
class Dims:
    """The op's sizes under short names (see transformer.py's notation)."""

    L: int
    D: int
    N: int
    K: int
    G: int
    H: int
    F: int
    V: int
    g: int          # 2 for a gated MLP (gate and up projections), else 1
    B: int
    T: int
    train: bool

    @classmethod
    def of(cls, op: TransformerOp) -> "Dims":
        return cls(op.layers, op.d_model, op.heads, op.kv_heads, op.heads // op.kv_heads,
                   op.head_dim, op.d_ff, op.vocab, 2 if op.mlp == "gated" else 1, op.batch,
                   op.seq, op.mode == "train")


def init_params(d: Dims, seed: int = 0) -> dict:
    """Parameters with deterministic values of the right scale (a hash fill, not jax.random:
    timing needs ordinary finite values, and the fill is fast for a 1.6 GB model)."""
    import jax.numpy as jnp

    from .kernels import _data

    counter = [seed]

    def w(shape, fan_in):
        counter[0] += 1
        return _data(shape, "fp32", counter[0]) * jnp.float32(1.0 / math.sqrt(fan_in))

    def layer():
        gate = {"w_gate": w((d.D, d.F), d.D)} if d.g == 2 else {}
        return {**gate, "norm1": jnp.ones((d.D,), jnp.float32),
                "wqkv": w((d.D, d.K * (d.G + 2) * d.H), d.D),
                "wo": w((d.N * d.H, d.D), d.N * d.H),
                "norm2": jnp.ones((d.D,), jnp.float32),
                "w_up": w((d.D, d.F), d.D),
                "w_down": w((d.F, d.D), d.F)}

    return {"embed": w((d.V, d.D), 1), "layers": [layer() for _ in range(d.L)],
            "norm_f": jnp.ones((d.D,), jnp.float32), "head": w((d.D, d.V), d.D)}


def _scope(path: str):
    """A jax.named_scope named as the ledger path of the op inside it (layer/attn/qkv): the
    compiled HLO's op_name metadata carries it (backward ops as transpose(jvp(path))), which
    is how the profile breakdown maps XLA's fused kernels back to ledger rows."""
    import jax

    return jax.named_scope(path)


def _rms(x, g):
    import jax
    import jax.numpy as jnp

    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + EPS_NORM) * g


def _mlp(d: Dims, lp, h):
    import jax

    with _scope("layer/mlp/up"):  # gated: the gate and up projections (one row, n = 2F)
        u = h @ lp["w_up"]
        g = h @ lp["w_gate"] if d.g == 2 else None
    with _scope("layer/mlp/act"):
        a = jax.nn.silu(g) * u if d.g == 2 else jax.nn.relu(u)
    with _scope("layer/mlp/down"):
        return a @ lp["w_down"]


class Sharder:
    """Sharding constraints of one strategy (identity on one device)."""

    def __init__(self, mesh=None, strategy: str = "single"):
        self.mesh, self.strategy = mesh, strategy

    def _c(self, x, *spec):
        if self.mesh is None:
            return x
        import jax
        from jax.sharding import NamedSharding, PartitionSpec as P

        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P(*spec)))

    def weights(self, lp):
        """FSDP: gather a layer's weights (an all-gather per weight) before use."""
        if self.strategy != "fsdp":
            return lp
        import jax

        with _scope("layer/fsdp/all_gather"):
            return jax.tree.map(lambda w: self._c(w), lp)

    def residual(self, x, train: bool):
        """The residual stream [tokens, D] between blocks: split over tokens, which is over the
        batch with FSDP (rows are sequence-major) and over positions with TP in training, over
        the batch's rows with TP in decode (fewer rows than devices: XLA pads to one each)."""
        if self.strategy in ("fsdp", "tensor"):
            return self._c(x, self.strategy)
        return x


def _attention(d: Dims, qkv, B: int):
    """Naive causal attention over qkv [B T, K (G+2) H] (per KV head its G query heads, then K
    and V) -> [B T, N H]: explicit QK^T, mask, softmax, AV."""
    import jax
    import jax.numpy as jnp

    with _scope("layer/attn"):
        # heads to the front before the products (moving q, k, v is cheap; XLA would otherwise
        # transpose the score matrix)
        qkv = qkv.reshape(B, -1, d.K, d.G + 2, d.H).transpose(0, 2, 3, 1, 4)
        q, k, v = qkv[:, :, :d.G], qkv[:, :, d.G], qkv[:, :, d.G + 1]  # [B, K, (G,) T, H]
        S = T = qkv.shape[3]
        s = jnp.einsum("bkgsh,bkth->bkgst", q, k) * (1.0 / math.sqrt(d.H))
        keep = jnp.arange(S)[:, None] + (T - S) >= jnp.arange(T)[None, :]
        s = jnp.where(keep, s, jnp.finfo(s.dtype).min)
        o = jnp.einsum("bkgst,bkth->bkgsh", jax.nn.softmax(s, axis=-1), v)
        return o.transpose(0, 3, 1, 2, 4).reshape(B * S, -1)


def layer_fwd(d: Dims, lp, x, sh: Sharder | None = None):
    """One pre-norm block over the residual x [B T, D] (tokens as rows, as the ledger's
    matmuls have them: a [B, T, D] layout makes XLA's CPU backend transpose activations for the
    weight gradients). Each op runs in the named scope of its ledger row; the residual adds sit
    with the norm that follows them, as the ledger counts them."""
    sh = sh or Sharder()
    lp = sh.weights(lp)
    with _scope("layer/norm1"):
        h = _rms(x, lp["norm1"])
    with _scope("layer/attn/qkv"):
        qkv = h @ lp["wqkv"]
    o = _attention(d, qkv, x.shape[0] // d.T)
    with _scope("layer/attn/o"):
        a = o @ lp["wo"]
    with _scope("layer/norm2"):
        x = sh.residual(x + a, d.train)
        h = _rms(x, lp["norm2"])
    y = _mlp(d, lp, h)
    with _scope("layer/norm1"):
        return sh.residual(x + y, d.train)


def head_loss(d: Dims, norm_f, head, x, targets):
    """Final norm, output layer and mean softmax cross-entropy."""
    import jax
    import jax.numpy as jnp

    with _scope("lm_head/norm"):
        h = _rms(x, norm_f)
    with _scope("lm_head/proj"):
        logits = h @ head
    with _scope("lm_head/loss"):
        lse = jax.nn.logsumexp(logits, axis=-1)
        tgt = jnp.take_along_axis(logits, targets.reshape(-1, 1), axis=-1)[:, 0]
        return jnp.mean(lse - tgt)


def loss_fn(d: Dims, params, tokens, targets, sh: Sharder | None = None):
    sh = sh or Sharder()
    with _scope("embed/lookup"):
        x = sh.residual(params["embed"][tokens.reshape(-1)], d.train)
    for lp in params["layers"]:
        x = layer_fwd(d, lp, x, sh)
    return head_loss(d, params["norm_f"], params["head"], x, targets)


def adam_init(params) -> dict:
    import jax
    import jax.numpy as jnp

    z = lambda p: jnp.zeros_like(p)  # noqa: E731
    return {"m": jax.tree.map(z, params), "v": jax.tree.map(z, params),
            "t": jnp.zeros((), jnp.float32)}


def adam_update(params, grads, opt):
    """Adam with bias correction, written out: m, v in fp32."""
    import jax
    import jax.numpy as jnp

    lr, b1, b2, eps = ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"]
    with _scope("optimizer/adam"):
        t = opt["t"] + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        new = jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                           params, m, v)
        return new, {"m": m, "v": v, "t": t}


def train_step(d: Dims, params, opt, tokens, targets, sh: Sharder | None = None):
    import jax

    loss, grads = jax.value_and_grad(lambda p: loss_fn(d, p, tokens, targets, sh))(params)
    params, opt = adam_update(params, grads, opt)
    return params, opt, loss


def decode_layer(d: Dims, lp, x, ck, cv, pos, sh: Sharder | None = None):
    """One block for one new token per sequence: x [B, D], cache ck, cv [B, K, T, H]; the new
    K and V are written at ``pos`` and the query attends to positions <= pos."""
    import jax
    import jax.numpy as jnp

    sh = sh or Sharder()
    lp = sh.weights(lp)
    B = x.shape[0]
    with _scope("layer/norm1"):
        h = _rms(x, lp["norm1"])
    with _scope("layer/attn/qkv"):
        qkv = (h @ lp["wqkv"]).reshape(B, -1, d.G + 2, d.H)
    q, k, v = qkv[:, :, :d.G, :], qkv[:, :, d.G:d.G + 1, :], qkv[:, :, d.G + 1:, :]
    with _scope("layer/attn"):
        # the new K and V written in place (the cache is donated)
        ck = jax.lax.dynamic_update_slice(ck, k, (0, 0, pos, 0))
        cv = jax.lax.dynamic_update_slice(cv, v, (0, 0, pos, 0))
        s = jnp.einsum("bkgh,bkth->bkgt", q, ck) * (1.0 / math.sqrt(d.H))
        s = jnp.where(jnp.arange(ck.shape[2]) <= pos, s, jnp.finfo(s.dtype).min)
        o = jnp.einsum("bkgt,bkth->bkgh", jax.nn.softmax(s, axis=-1), cv).reshape(B, -1)
    with _scope("layer/attn/o"):
        a = o @ lp["wo"]
    with _scope("layer/norm2"):
        x = sh.residual(x + a, False)
        h = _rms(x, lp["norm2"])
    y = _mlp(d, lp, h)
    with _scope("layer/norm1"):
        return sh.residual(x + y, False), ck, cv


def decode_head(d: Dims, norm_f, head, x):
    import jax.numpy as jnp

    with _scope("lm_head/norm"):
        h = _rms(x, norm_f)
    with _scope("lm_head/proj"):
        return jnp.argmax(h @ head, axis=-1).astype(jnp.int32)


def decode_step(d: Dims, params, cache, tokens, pos, sh: Sharder | None = None):
    """cache: a list of (k, v) per layer. Returns the updated cache and the next tokens."""
    sh = sh or Sharder()
    with _scope("embed/lookup"):
        x = sh.residual(params["embed"][tokens], False)
    out = []
    for lp, (ck, cv) in zip(params["layers"], cache):
        x, ck, cv = decode_layer(d, lp, x, ck, cv, pos, sh)
        out.append((ck, cv))
    return out, decode_head(d, params["norm_f"], params["head"], x)


def init_cache(d: Dims) -> list:
    import jax.numpy as jnp

    return [(jnp.zeros((d.B, d.K, d.T, d.H), jnp.float32),
             jnp.zeros((d.B, d.K, d.T, d.H), jnp.float32)) for _ in range(d.L)]


def tokens_for(d: Dims, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (d.B, d.T) if d.train else (d.B,)
    return (rng.integers(0, d.V, shape).astype(np.int32),
            rng.integers(0, d.V, shape).astype(np.int32))


# ---- sharding on a mesh -------------------------------------------------------------------

def param_specs(params, strategy: str, n: int):
    """PartitionSpecs of the parameters (and, by the same tree, the Adam moments)."""
    import jax
    from jax.sharding import PartitionSpec as P

    if strategy == "fsdp":  # the first dimension the mesh divides (all of them here)
        def spec(w):
            for i, s in enumerate(w.shape):
                if s % n == 0:
                    return P(*([None] * i + ["fsdp"]))
            return P()
        return jax.tree.map(spec, params)
    if strategy == "tensor":  # Megatron: column-parallel QKV and up, row-parallel O and down
        layer = {"norm1": P(), "wqkv": P(None, "tensor"), "wo": P("tensor"), "norm2": P(),
                 "w_up": P(None, "tensor"), "w_gate": P(None, "tensor"), "w_down": P("tensor")}
        layers = [{k: layer[k] for k in lp} for lp in params["layers"]]
        return {"embed": P("tensor"), "layers": layers,
                "norm_f": P(), "head": P(None, "tensor")}
    return jax.tree.map(lambda w: P(), params)


@dataclass
class Program:
    """A compiled step and what it needs to run: ``run()`` does one step in place."""

    compiled: object
    state: list
    inputs: tuple
    train: bool

    def run(self):
        out = self.compiled(*self.state, *self.inputs)
        if self.train:
            p, o, loss = out
            self.state[:] = [p, o]
            return loss, p, o
        cache, tok = out
        self.state[1] = cache
        return tok, cache


def _compiled_flops(compiled) -> dict:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax: one dict per program
        ca = ca[0] if ca else {}
    ca = ca or {}
    get = lambda k: None if ca.get(k) is None else float(ca[k])  # noqa: E731
    return {"flops": get("flops"), "bytes": get("bytes accessed"),
            "transcendentals": get("transcendentals")}


def build_step(cfg: Config, forward_cost: bool = True) -> tuple[Program, dict]:
    """The config's train or decode step, placed on its devices and compiled; with XLA's cost
    analysis of the compiled step (and of the forward alone, for training)."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    op = cfg.op()
    d = Dims.of(op)
    n = cfg.devices
    if n > 1:
        if jax.device_count() < n:
            raise RuntimeError(f"{cfg.name} needs {n} devices, jax sees {jax.device_count()}")
        # Auto axes: GSPMD propagates the shardings (jit in/out shardings, constraints)
        mesh = jax.make_mesh((n,), (cfg.strategy,), axis_types=(jax.sharding.AxisType.Auto,))
        sh = Sharder(mesh, cfg.strategy)
    else:
        mesh, sh = None, Sharder()
    params = init_params(d)
    tokens, targets = tokens_for(d)
    if mesh is not None:
        ns = lambda spec: NamedSharding(mesh, spec)  # noqa: E731
        pspec = jax.tree.map(ns, param_specs(params, cfg.strategy, n),
                             is_leaf=lambda x: isinstance(x, P))
        params = jax.device_put(params, pspec)
        batch = ns(P("fsdp")) if cfg.strategy == "fsdp" else ns(P())
    cost = {}
    if d.train:
        opt = adam_init(params)
        if mesh is not None:
            ospec = {"m": pspec, "v": pspec, "t": ns(P())}
            opt = jax.device_put(opt, ospec)
            tokens, targets = jax.device_put((tokens, targets), batch)
            shard = dict(in_shardings=(pspec, ospec, batch, batch),
                         out_shardings=(pspec, ospec, ns(P())))
        else:
            shard = {}
        step = jax.jit(lambda p, o, a, b: train_step(d, p, o, a, b, sh), donate_argnums=(0, 1),
                       **shard)
        compiled = step.lower(params, opt, tokens, targets).compile()
        cost["step"] = _compiled_flops(compiled)
        if forward_cost:
            fshard = dict(in_shardings=(pspec, batch, batch)) if mesh is not None else {}
            fwd = jax.jit(lambda p, a, b: loss_fn(d, p, a, b, sh), **fshard)
            cost["forward"] = _compiled_flops(fwd.lower(params, tokens, targets).compile())
        return Program(compiled, [params, opt], (tokens, targets), True), cost
    cache = init_cache(d)
    pos = np.int32(d.T - 1)  # the new token is the last of T positions: KV length T
    if mesh is not None:
        cspec = ns(P("fsdp")) if cfg.strategy == "fsdp" else ns(P(None, "tensor"))
        cache = jax.device_put(cache, [(cspec, cspec)] * d.L)
        tokens = jax.device_put(tokens, batch)
        shard = dict(in_shardings=(pspec, [(cspec, cspec)] * d.L, batch, ns(P())),
                     out_shardings=([(cspec, cspec)] * d.L, batch))
    else:
        shard = {}
    step = jax.jit(lambda p, c, t, i: decode_step(d, p, c, t, i, sh), donate_argnums=(1,),
                   **shard)
    compiled = step.lower(params, cache, tokens, pos).compile()
    cost["step"] = _compiled_flops(compiled)
    return Program(compiled, [params, cache], (tokens, pos), False), cost


# ---- timing -------------------------------------------------------------------------------

BUDGETS = {"full": dict(seconds=3.0, min_reps=5, max_reps=200, target_rse=0.01, warmup=2),
           "quick": dict(seconds=1.0, min_reps=3, max_reps=100, target_rse=0.02, warmup=1),
           "tiny": dict(seconds=0.05, min_reps=2, max_reps=5, target_rse=0.05, warmup=1)}
CONTENDED = 0.2   # other processes' share of the machine above which a timing is retried
ATTEMPTS = 3
QUIET_WAIT_S = {"full": 60.0, "quick": 10.0, "tiny": 0.0}  # longest wait for a quiet machine


def wait_quiet(max_s: float, window_s: float = 0.5, log=None) -> float | None:
    """Wait (at most ``max_s``) until other processes use under CONTENDED of the machine over
    a ``window_s`` window; returns the last share seen (None where it cannot be measured).
    ``log`` hears one line when the wait begins, so a long wait is not silent."""
    import time

    from .bench import CpuMeter

    start, others = time.perf_counter(), None
    while time.perf_counter() - start < max_s:
        meter = CpuMeter()
        meter.start()
        time.sleep(window_s)
        others = meter.others()
        if others is None or others <= CONTENDED:
            break
        if log is not None and time.perf_counter() - start < 2 * window_s:
            log(f"  waiting up to {max_s:.0f} s for a quiet machine: other processes use "
                f"{others:.0%} of the CPU (timings are taken when they use under {CONTENDED:.0%})")
    return others


def timed(fn, args=(), mode: str = "full", attempts: int = ATTEMPTS, log=None) -> dict:
    """time_kernel of ``fn(*args)``; retried (up to ``attempts``, each after waiting for a quiet
    machine) while other processes take more than CONTENDED of the machine; the least
    contended attempt is kept, with that share (``others``)."""
    from .bench import CpuMeter
    from .kernels import Built
    from .timing import Budget, time_kernel

    budget = Budget(**BUDGETS[mode])
    best = None
    for _ in range(max(1, attempts)):
        wait_quiet(QUIET_WAIT_S[mode], log=log)
        meter = CpuMeter()
        meter.start()
        t = time_kernel(Built(fn, tuple(args)), budget)
        others = meter.others()
        rec = {"median_s": t.median_s, "min_s": t.min_s, "p20_s": t.p20_s, "cv": t.cv,
               "reps": t.reps, "others": others}
        if best is None or (others or 0.0) < (best["others"] or 0.0):
            best = rec
        if others is None or others <= CONTENDED:
            break
    return best


# ---- the breakdown: XLA's kernels inside the step, mapped to ledger rows --------------------

def ledger_row(op_name: str, paths) -> str:
    """The ledger row an HLO instruction belongs to, from its op_name metadata: the longest
    ledger path in ``paths`` that appears in it as a named scope, plus '.bwd' under a
    transpose (the backward pass: jit(f)/transpose(jvp(layer/mlp/up))/dot_general);
    '(unscoped)' when none does."""
    best = None
    for path in paths:
        if len(path) > len(best or "") and re.search(
                r"(^|[/(])" + re.escape(path) + r"($|[/)])", op_name or ""):
            best = path
    if best is None:
        return "(unscoped)"
    return best + ".bwd" if "transpose(" in op_name else best


def hlo_op_names(compiled) -> dict[str, str]:
    """Entry instruction name -> its op_name metadata, from the compiled module's text. XLA
    drops the metadata of some instructions (the CPU backend's plain dots): a product that
    reads a weight parameter takes that weight's row (WEIGHT_ROWS), any other the op_name of
    its nearest neighbour in the graph that has a ledger path (producers first)."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY"):] if "\nENTRY" in text else text
    entry = entry[:entry.index("\n}") if "\n}" in entry else len(entry)]
    names, users, operands = {}, {}, {}
    for line in entry.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([^\s=]+) = ", line)
        if not m:
            continue
        name = m.group(1)
        meta = re.search(r'op_name="([^"]*)"', line)
        if meta:
            names[name] = meta.group(1).replace("\\'", "'")
        body = re.sub(r"(calls|to_apply|body|condition)=%[^\s,]+", "", line[m.end():])
        body = body.split(", metadata=")[0]
        ops = [o for o in re.findall(r"%([^\s,()]+)", body) if o != name]
        operands[name] = ops
        for o in ops:
            users.setdefault(o, []).append(name)
    out = dict(names)
    for name in operands:  # a product with a weight operand belongs to that weight's row
        if name not in out or not _ledger_like(out[name]):
            w = _weight_of(name, operands, names)
            if w is not None:
                out[name] = w
    for name in operands:  # nearest neighbour with a ledger path, producers first
        if name in out:
            continue
        seen, frontier = {name}, [name]
        while frontier and name not in out:
            nxt = []
            for f in frontier:
                for g in operands.get(f, []) + users.get(f, []):
                    if g in seen:
                        continue
                    seen.add(g)
                    if g in names and _ledger_like(names[g]):
                        out[name] = names[g]
                        break
                    nxt.append(g)
                if name in out:
                    break
            frontier = nxt
    return out


# the parameter each ledger projection multiplies by (its op_name is the parameter's path)
WEIGHT_ROWS = {"wqkv": "layer/attn/qkv", "wo": "layer/attn/o", "w_up": "layer/mlp/up",
               "w_gate": "layer/mlp/up", "w_down": "layer/mlp/down", "head": "lm_head/proj"}


def _ledger_like(op_name: str) -> bool:
    return any(f"{root}/" in op_name for root in ("embed", "layer", "lm_head", "optimizer"))


def _weight_of(name, operands, names, depth: int = 3) -> str | None:
    """'<row>/dot' when ``name`` reads a weight parameter (through up to ``depth`` bitcasts,
    copies or transposes) and is a product, else None."""
    if not re.match(r"(dot|ynn_fusion|.*dot.*)", name):
        return None
    frontier = list(operands.get(name, []))
    for _ in range(depth):
        nxt = []
        for o in frontier:
            m = re.search(r"\['(\w+)'\]$", names.get(o, ""))
            if m and m.group(1) in WEIGHT_ROWS:
                return f"jit/{WEIGHT_ROWS[m.group(1)]}/dot_general"
            if re.match(r"(bitcast|copy|transpose)", o):
                nxt += operands.get(o, [])
        frontier = nxt
    return None


def profile_ops(prog: "Program", steps: int = 3) -> dict[str, float]:
    """Seconds per step of each HLO kernel of the compiled step, from a jax.profiler trace of
    ``steps`` steps (the XLA CPU runtime records one event per thunk, with its hlo_op)."""
    import tempfile

    import jax
    from jax.profiler import ProfileData

    for _ in range(2):
        jax.block_until_ready(prog.run())
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        try:
            for _ in range(steps):
                jax.block_until_ready(prog.run())
        finally:
            jax.profiler.stop_trace()
        files = [os.path.join(r, f) for r, _, fs in os.walk(tmp) for f in fs
                 if f.endswith(".xplane.pb")]
        if not files:
            return {}
        data = ProfileData.from_file(files[0])
    events = []
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                op = dict(ev.stats).get("hlo_op")
                if op and ev.duration_ns > 0:
                    events.append((ev.start_ns, ev.start_ns + ev.duration_ns, op))
    return {op: t * 1e-9 / steps for op, t in share_time(events).items()}


def share_time(events) -> dict[str, float]:
    """Wall time per name from (start, end, name) intervals that may overlap (the runtime runs
    independent kernels on both cores at once): each stretch of time is split evenly among the
    kernels running in it, so the shares add up to the busy wall time."""
    marks = sorted({t for s, e, _ in events for t in (s, e)})
    out: dict[str, float] = {}
    if not marks:
        return out
    index = {t: i for i, t in enumerate(marks)}
    delta = [[] for _ in marks]  # +name at its start mark, -name at its end mark
    for s, e, name in events:
        delta[index[s]].append((1, name))
        delta[index[e]].append((-1, name))
    active: dict[str, int] = {}
    for i, t in enumerate(marks):
        for sign, name in delta[i]:
            active[name] = active.get(name, 0) + sign
            if active[name] == 0:
                del active[name]
        if i + 1 < len(marks) and active:
            n = sum(active.values())
            span = marks[i + 1] - t
            for name, k in active.items():
                out[name] = out.get(name, 0.0) + span * k / n
    return out


def breakdown(prog: "Program", paths, steps: int = 3, mode: str = "full", log=None) -> dict:
    """Measured seconds per step by ledger row (and by HLO kernel within each row): the
    least contended of up to ATTEMPTS profiles, each after waiting for a quiet machine.
    ``others`` is the share of the machine other processes used meanwhile."""
    from .bench import CpuMeter

    names = hlo_op_names(prog.compiled)
    best = None
    for _ in range(ATTEMPTS):
        wait_quiet(QUIET_WAIT_S[mode], log=log)
        meter = CpuMeter()
        meter.start()
        times = profile_ops(prog, steps)
        others = meter.others()
        if best is None or (others or 0.0) < (best[1] or 0.0):
            best = (times, others)
        if others is None or others <= CONTENDED:
            break
    rows: dict[str, dict] = {"(others)": best[1]}
    for op, t in best[0].items():
        row = ledger_row(names.get(op, ""), paths)
        r = rows.setdefault(row, {"t": 0.0, "kernels": {}})
        r["t"] += t
        r["kernels"][op] = t
    return rows


# ---- the prediction -----------------------------------------------------------------------

def component(name: str, role: str) -> str:
    """The breakdown component of a ledger row: embed, layer.fwd, layer.bwd, lm_head, ..."""
    from ..model.transformer import group_of

    g = group_of(name)
    return f"{g}.{role}" if g == "layer" else g


def host_devices_hardware(hw, n: int = N_HOST_DEVICES):
    """``hw`` as one of ``n`` XLA host devices sharing this machine's cores: every rate (peak
    FLOP/s, bandwidths, the calibrated groups' too) divided by n, the cache shared the same
    way, plus the nominal host "interconnect" of xla_collectives.host_hardware (a memory copy,
    a synchronisation step per hop). Nominal, not fitted: the 8-device figures carry no target."""
    from ..specs import Hardware
    from .xla_collectives import host_hardware

    data = hw.model_dump(exclude_none=True)
    data["name"] = f"{hw.name}/{n}-host-devices"
    data["peak_flops"] = {k: f"{v / n!r} FLOP/s" for k, v in hw.peak_flops.items()}
    data["hbm_bandwidth"] = f"{hw.hbm_bandwidth / n!r} B/s"
    if hw.calibration is not None:
        kinds = {}
        for key, k in hw.calibration.kinds.items():
            kd = k.model_dump(exclude_none=True)
            kd["peak_flops"] = f"{k.peak_flops / n!r} FLOP/s"
            kd["bandwidth"] = f"{k.bandwidth / n!r} B/s"
            if k.cache_bandwidth is not None:
                kd["cache_bandwidth"] = f"{k.cache_bandwidth / n!r} B/s"
                kd["cache_bytes"] = k.cache_bytes / n
            kinds[key] = kd
        data["calibration"] = {**data["calibration"], "kinds": kinds}
    data["interconnect"] = host_hardware().interconnect.model_dump(exclude_none=True)
    data["sources"] = {**data["sources"], "interconnect": host_hardware().sources["interconnect"],
                       "peak_flops": f"{data['sources'].get('peak_flops', '')}; divided by {n}: "
                                     f"{n} host devices share the cores"}
    return Hardware.model_validate(data)


def ledger_paths(cfg: Config) -> set[str]:
    """The ledger paths of the config's rows (without .bwd / .remat), for the breakdown."""
    from ..model import expand_workload, expansion

    names = expansion(expand_workload(cfg.workload())).names
    return {n.split(".", 1)[0] for n in names} | {"layer/fsdp/all_gather"}


def _matmul_flops(op, row) -> float:
    """The part of a row's FLOPs that are products (2MNK): all of a matmul's, an attention's
    but its softmax (forward 5, naive backward 2 FLOPs per score)."""
    from ..ops.attention import SOFTMAX_BWD_FLOPS_PER_SCORE, SOFTMAX_FLOPS_PER_SCORE

    if op.kind == "matmul":
        return row["flops"]
    if op.kind == "attention" and op.impl == "naive":
        scores = op.batch * op.heads * op.seq * (op.kv_seq or op.seq) * op.repeat
        per = SOFTMAX_BWD_FLOPS_PER_SCORE if op.backward else SOFTMAX_FLOPS_PER_SCORE
        return row["flops"] - per * scores
    return 0.0


def predict(cfg: Config, hw) -> dict:
    """perfmodel's figures for the config on ``hw`` (calibrated or not; 8-device configs on
    host_devices_hardware(hw)): the step's t_calibrated (None without a calibration), t_lower
    and t_upper, the ledger rows, per breakdown component the sums of its rows' t_calibrated
    (t_lower where a row has none) and t_lower, and the FLOPs of the forward and of the step
    (products apart)."""
    from .. import results
    from ..model import expand_workload, expansion

    if cfg.devices > 1:
        hw = host_devices_hardware(hw, cfg.devices)
    wl = expand_workload(cfg.workload())
    x = expansion(wl)
    js = results.to_json(hw, wl)
    tot = js["total"]
    comps: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    flops = dict.fromkeys(("forward", "step", "forward_matmul", "step_matmul"), 0.0)
    for op, r in zip(wl.ops, js["ops"]):
        role = x.roles[r["name"]]
        cal = r.get("t_calibrated")
        rows[r["name"]] = {"kind": r["kind"], "role": role, "repeat": r["repeat"],
                           "flops": r["flops"], "hbm_bytes": r["hbm_bytes"],
                           "t_lower": r["t_lower"], "t_calibrated": cal, "bound": r["bound"]}
        if r["kind"] != "collective":
            mm = _matmul_flops(op, r)
            flops["step"] += r["flops"]
            flops["step_matmul"] += mm
            if role == "fwd":
                flops["forward"] += r["flops"]
                flops["forward_matmul"] += mm
        c = comps.setdefault(component(r["name"], role), {"t_calibrated": 0.0, "t_lower": 0.0})
        c["t_calibrated"] += r["t_lower"] if cal is None else cal
        c["t_lower"] += r["t_lower"]
    return {"hardware": hw.name, "t_calibrated": tot.get("t_calibrated"),
            "t_lower": tot["t_lower"], "t_upper": tot["t_upper"], "flops": flops,
            "hbm_bytes": tot["hbm_bytes"], "rows": rows, "components": comps,
            "uncalibrated_rows": [n for n, r in rows.items()
                                  if r["kind"] != "collective" and r["t_calibrated"] is None]}


# ---- running the configs ------------------------------------------------------------------

def measure(names: list[str], mode: str = "full", profile: bool = True, log=None,
            progress: bool = False) -> list[dict]:
    """Build, cost-analyse and time each named config on the devices this process sees (its
    breakdown too, on one device). One dict per config (JSON-able). ``log`` hears a line per
    config and per wait for a quiet machine; ``progress`` sends them to stderr (for a
    subprocess, whose stderr the parent passes through)."""
    import gc
    import sys

    import jax

    if log is None and progress:
        def log(msg):
            print(msg, file=sys.stderr, flush=True)
    out = []
    for i, name in enumerate(names):
        if log is not None:
            log(f"  {i + 1}/{len(names)} {name}")
        cfg = config(name)
        prog, cost = build_step(cfg)
        t = timed(prog.run, (), mode, log=log)
        rec = {"config": name, "devices": cfg.devices, "backend": jax.default_backend(),
               "measured": t, "xla": cost}
        if profile and cfg.devices == 1:
            rec["breakdown"] = breakdown(prog, ledger_paths(cfg), mode=mode, log=log)
        del prog
        jax.clear_caches()
        gc.collect()
        out.append(rec)
    return out


def in_subprocess(name: str, timeout: float = 3600, **kwargs):
    """Run ``name(**kwargs)`` of this module in a fresh interpreter with 8 host devices (the
    device count must be set before jax starts); returns its JSON result."""
    from .xla_collectives import in_subprocess as run

    return run(name, timeout=timeout, module="validate", stream_stderr=True, **kwargs)


# ---- XLA's FLOP conventions against the model's -----------------------------------------

def xla_conventions() -> dict:
    """XLA cost_analysis FLOPs of the reference model's pieces, per element, beside the
    ledger's constants (transformer.py, ops/attention.py). Products (the matmuls and the
    attention einsums) are exactly 2MNK for both; the step totals differ only by these
    elementwise conventions."""
    import jax
    import jax.numpy as jnp

    from ..model import transformer as T
    from ..ops.attention import SOFTMAX_BWD_FLOPS_PER_SCORE, SOFTMAX_FLOPS_PER_SCORE

    def fl(f, *a):
        ca = jax.jit(f).lower(*a).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])

    M, D, F, V, B, N, S, H = 256, 256, 512, 128, 2, 4, 64, 32
    x, g = jnp.ones((M, D)), jnp.ones((D,))
    u = jnp.ones((M, F))
    s = jnp.ones((B, 1, N, S, S))
    q, k = jnp.ones((B, 1, N, S, H)), jnp.ones((B, 1, S, H))
    lg, tg = jnp.ones((M, V)), jnp.zeros((M,), jnp.int32)
    w = jnp.ones((D, F))

    def norm(x, y, g):
        return _rms(x + y, g)

    def gate(a, b):
        return jax.nn.silu(a) * b

    def scores(s):
        keep = jnp.arange(S)[:, None] >= jnp.arange(S)[None, :]
        return jax.nn.softmax(jnp.where(keep, s * 0.125, jnp.finfo(s.dtype).min), axis=-1)

    def xent(lg):
        return jnp.mean(jax.nn.logsumexp(lg, -1) - jnp.take_along_axis(lg, tg[:, None], -1)[:, 0])

    def bwd(f, *a):  # the backward alone: the vjp's FLOPs minus the forward's
        return fl(lambda *a: jax.vjp(f, *a)[1](f(*a)), *a) - fl(f, *a)

    p = {"w": w}
    out = {
        "matmul (2MNK)": (fl(lambda a, b: a @ b, x, w) / (2 * M * D * F), 1.0),
        "attention QK^T (2 per score per head_dim)":
            (fl(lambda a, b: jnp.einsum("bkgsh,bkth->bkgst", a, b), q, k) / (2 * s.size * H), 1.0),
        "residual add + RMSNorm": (fl(norm, x, x, g) / x.size, float(T.RESIDUAL_NORM_FLOPS)),
        "RMSNorm backward": (bwd(norm, x, x, g) / x.size,
                             float(T.BWD_ELEMENTWISE_FLOP_FACTOR * T.RESIDUAL_NORM_FLOPS)),
        "SiLU gate": (fl(gate, u, u) / u.size, float(T.GATED_ACT_FLOPS)),
        "SiLU gate backward": (bwd(gate, u, u) / u.size,
                               float(T.BWD_ELEMENTWISE_FLOP_FACTOR * T.GATED_ACT_FLOPS)),
        "ReLU": (fl(jax.nn.relu, u) / u.size, float(T.PLAIN_ACT_FLOPS)),
        "ReLU backward": (bwd(jax.nn.relu, u) / u.size,
                          float(T.BWD_ELEMENTWISE_FLOP_FACTOR * T.PLAIN_ACT_FLOPS)),
        "scale + mask + softmax (per score)": (fl(scores, s) / s.size,
                                               float(SOFTMAX_FLOPS_PER_SCORE)),
        "its backward (per score)": (bwd(scores, s) / s.size,
                                     float(SOFTMAX_BWD_FLOPS_PER_SCORE)),
        "cross-entropy forward + backward (per logit)":
            (fl(jax.value_and_grad(xent), lg) / lg.size, float(T.LOSS_FLOPS_PER_LOGIT)),
        "Adam (per parameter)": (fl(adam_update, p, p, adam_init(p)) / w.size,
                                 float(T.ADAM_FLOPS_PER_PARAM)),
    }
    return {k: {"xla": a, "perfmodel": b} for k, (a, b) in out.items()}


# ---- the whole comparison ------------------------------------------------------------------

DEFAULT_HARDWARE = "reports/cpu-local-calibrated.yaml"
TOP_ROWS = 6  # ledger rows shown per config where measured and predicted differ most


def _rel(pred, meas):
    return None if pred is None or not meas else pred / meas - 1.0


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def compare(cfg: Config, rec: dict, hw) -> dict:
    """One config's measured record (``measure``) next to the prediction on ``hw``."""
    p = predict(cfg, hw)
    m = rec["measured"]["median_s"]
    out = {"config": cfg.name, "devices": cfg.devices, "strategy": cfg.strategy,
           "mode": cfg.fields["mode"], "shape": describe(cfg), "measured": rec["measured"],
           "hardware": p["hardware"], "t_calibrated": p["t_calibrated"],
           "t_lower": p["t_lower"], "t_upper": p["t_upper"],
           "err_calibrated": _rel(p["t_calibrated"], m), "err_roofline": _rel(p["t_lower"], m),
           "uncalibrated_rows": p["uncalibrated_rows"]}
    xla = rec.get("xla", {})
    fl = []
    for prog in ("forward", "step"):
        if xla.get(prog, {}).get("flops") is None:
            continue
        ours, mm = p["flops"][prog], p["flops"][f"{prog}_matmul"]
        xf = xla[prog]["flops"]
        fl.append({"program": prog, "xla_flops": xf, "flops": ours, "diff": _rel(ours, xf),
                   "matmul_flops": mm, "xla_other_flops": xf - mm, "other_flops": ours - mm,
                   "xla_bytes": xla[prog]["bytes"],
                   "hbm_bytes": p["hbm_bytes"] if prog == "step" else None})
    out["flops"] = fl
    b = dict(rec.get("breakdown") or {})
    if b:
        out["profile_others"] = b.pop("(others)", None)
        rows = []
        for name in list(p["rows"]) + [n for n in b if n not in p["rows"]]:
            r = p["rows"].get(name, {})
            if r.get("kind") == "collective":
                continue
            pred = r.get("t_calibrated")
            pred = r.get("t_lower") if pred is None else pred
            meas = b.get(name, {}).get("t", 0.0)
            rows.append({"row": name, "measured_s": meas, "predicted_s": pred,
                         "t_lower": r.get("t_lower"), "kernels": len(b.get(name, {})
                                                                       .get("kernels", {})),
                         "top_kernels": sorted(b.get(name, {}).get("kernels", {}).items(),
                                               key=lambda kv: -kv[1])[:3]})
        out["profiled_s"] = sum(r["measured_s"] for r in rows)
        out["rows"] = rows
    return out


def describe(cfg: Config) -> str:
    f = cfg.fields
    att = "MHA" if f["heads"] == f["kv_heads"] else f"GQA {f['heads']}/{f['kv_heads']}"
    return (f"{f['mode']} B{f['batch']} T{f['seq']}, {f['layers']}L d{f['d_model']} "
            f"{att}x{f['head_dim']} {f['mlp']} F{f['d_ff']}")


def validate(quick: bool = False, hardware: str | None = None, log=None) -> dict:
    """Measure every config of the mode (one device here, 8 host devices in a subprocess) and
    compare with perfmodel's predictions on ``hardware`` (a calibrated spec)."""
    from .. import catalog
    from ..specs import SpecError

    log = log or (lambda msg: None)
    path = hardware or DEFAULT_HARDWARE
    if hardware is None and not os.path.exists(path):
        raise SpecError(f"{path} does not exist: calibrate this machine first (perfmodel "
                        f"calibrate -m reports/measurements.csv -o {path}; perfmodel bench "
                        f"makes the measurements) or pass --hardware CALIBRATED_SPEC")
    hw = catalog.load_hardware(path)
    if hw.calibration is None:
        log(f"note: {hw.name} has no calibration: only the roofline prediction is compared")
    mode = "quick" if quick else "full"
    one, many = configs(quick, 1), configs(quick, N_HOST_DEVICES)
    log(f"measuring {len(one)} configs on 1 device ...")
    recs = measure([c.name for c in one], mode, log=log)
    log(f"measuring {len(many)} configs on {N_HOST_DEVICES} host devices (subprocess) ...")
    recs += in_subprocess("measure", names=[c.name for c in many], mode=mode, profile=False,
                          progress=True)
    import jax

    results = [compare(config(r["config"]), r, hw) for r in recs]
    single = [r for r in results if r["devices"] == 1]
    summary = {
        "configs": len(single),
        "median_abs_err_calibrated": _median([abs(r["err_calibrated"]) for r in single
                                              if r["err_calibrated"] is not None]),
        "median_abs_err_roofline": _median([abs(r["err_roofline"]) for r in single]),
        "median_cv": _median([r["measured"]["cv"] for r in results]),
        "max_others": max((r["measured"]["others"] or 0.0) for r in results),
    }
    return {"hardware": hw.name, "hardware_path": str(path), "mode": mode,
            "jax_version": jax.__version__, "backend": jax.default_backend(),
            "summary": summary, "configs": results, "conventions": xla_conventions()}


def _ms(x):
    return "-" if x is None else f"{x * 1e3:8.2f} ms"


def _pct(x):
    return "-" if x is None else f"{100 * x:+.0f}%"


def report_text(rep: dict) -> str:
    L = []
    L.append(f"perfmodel validate: reference transformer (plain JAX, fp32, naive attention) vs "
             f"perfmodel on {rep['hardware']}")
    L.append(f"jax {rep['jax_version']} ({rep['backend']}), {rep['mode']} budget; measured = "
             f"median step time (timing.time_kernel), retried while other processes used "
             f"> {CONTENDED:.0%} of the machine")
    for title, devs in (("1 device", 1), (f"{N_HOST_DEVICES} host devices (no target: they "
                                          f"share the cores; host 'interconnect' nominal)",
                                          N_HOST_DEVICES)):
        rows = [r for r in rep["configs"] if r["devices"] == devs]
        if not rows:
            continue
        L.append("")
        L.append(f"Step time, {title}")
        L.append(f"{'config':20s} {'shape':44s} {'measured':>11s} {'cv':>4s} {'busy':>5s} "
                 f"{'calibrated':>11s} {'err':>5s} {'roofline':>11s} {'err':>5s}")
        for r in rows:
            m = r["measured"]
            L.append(f"{r['config']:20s} {r['shape']:44s} {_ms(m['median_s']):>11s} "
                     f"{100 * m['cv']:3.0f}% {100 * (m['others'] or 0):4.0f}% "
                     f"{_ms(r['t_calibrated']):>11s} {_pct(r['err_calibrated']):>5s} "
                     f"{_ms(r['t_lower']):>11s} {_pct(r['err_roofline']):>5s}")
        if devs == 1:
            s = rep["summary"]
            L.append(f"median |error| over {s['configs']} configs: calibrated "
                     f"{_pct(s['median_abs_err_calibrated']).lstrip('+')}, roofline t_lower "
                     f"{_pct(s['median_abs_err_roofline']).lstrip('+')}")
    L.append("")
    L.append("Where measured and predicted differ most, per ledger row (1 device). Measured: a "
             "jax.profiler trace of the step, each XLA kernel mapped to the ledger row of its "
             "named scope (time shared evenly among kernels running at once); a fused kernel "
             "counts to the row of its root op, so rows XLA fused into a neighbour measure ~0 "
             "while the model charges each row its own pass over memory.")
    for r in rep["configs"]:
        if not r.get("rows"):
            continue
        L.append(f"  {r['config']}: profiled {_ms(r['profiled_s']).strip()} of a "
                 f"{_ms(r['measured']['median_s']).strip()} step")
        L.append(f"    {'ledger row':22s} {'measured':>11s} {'predicted':>11s} {'diff':>10s}  "
                 f"XLA kernels")
        top = sorted(r["rows"], key=lambda x: -abs(x["measured_s"] - (x["predicted_s"] or 0)))
        for x in top[:TOP_ROWS]:
            d = x["measured_s"] - (x["predicted_s"] or 0.0)
            note = (", ".join(f"{k} {v * 1e3:.2f}" for k, v in x["top_kernels"])
                    if x["kernels"] else "none: fused into neighbouring rows")
            L.append(f"    {x['row']:22s} {_ms(x['measured_s']):>11s} "
                     f"{_ms(x['predicted_s']):>11s} {d * 1e3:+8.2f}ms  {x['kernels']}: {note}")
    L.append("")
    L.append("FLOPs per device: XLA cost_analysis of the compiled program vs perfmodel "
             "(products = 2MNK, counted the same by both)")
    L.append(f"{'config':20s} {'program':8s} {'XLA':>14s} {'perfmodel':>14s} {'diff':>7s} "
             f"{'products':>14s} {'rest XLA/ours':>20s} {'bytes XLA/ours':>17s}")
    for r in rep["configs"]:
        for f in r["flops"]:
            rest = f"{f['xla_other_flops'] / 1e6:.1f}M/{f['other_flops'] / 1e6:.1f}M"
            xb = "-" if f["xla_bytes"] is None else f"{f['xla_bytes'] / 1e6:.0f}"
            byt = f"{xb}/{f['hbm_bytes'] / 1e6:.0f} MB" if f["hbm_bytes"] else f"{xb}/- MB"
            L.append(f"{r['config']:20s} {f['program']:8s} {f['xla_flops']:14,.0f} "
                     f"{f['flops']:14,.0f} {100 * f['diff']:+6.2f}% {f['matmul_flops']:14,.0f} "
                     f"{rest:>20s} {byt:>17s}")
    if rep.get("conventions"):
        L.append("The difference is the elementwise conventions (XLA's FLOPs per element of "
                 "the reference's pieces vs the ledger's constants; products agree exactly):")
        for k, c in rep["conventions"].items():
            L.append(f"  {k:46s} XLA {c['xla']:6.2f}  perfmodel {c['perfmodel']:5.1f}")
    return "\n".join(L)
