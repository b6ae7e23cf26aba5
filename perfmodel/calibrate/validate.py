"""``perfmodel validate``: a reference transformer in plain JAX, measured against the model.

The reference model is built from a ``TransformerOp`` (no flax, no optax): token embedding,
pre-norm blocks (RMSNorm), naive attention (explicit QK^T, causal mask, softmax, AV) with
grouped-query heads, a gated (SiLU) or plain (ReLU) MLP, a final norm, the output layer and a
softmax cross-entropy. Shapes and layouts follow the ledger (transformer.py): one fused QKV
projection ``wqkv [D, K, G+2, H]`` (per KV head: its G query heads, then K and V), ``wo [K, G,
H, D]``, ``w_up [D, g, F]`` (gated: gate and up side by side), ``w_down [F, D]``. Layers are a
Python loop (unrolled in the HLO), so XLA's cost analysis counts every layer (it counts a
while/scan body once). fp32 throughout: bf16 on the XLA CPU backend is emulated through fp32
converts, slower and with inflated FLOP counts.

Programs:
- train step: loss, ``jax.value_and_grad``, Adam written out (fp32 moments, bias correction),
  jitted with the parameters and optimizer state donated;
- decode step: one new token per sequence over a KV cache of ``seq`` positions ([B, K, T, H] per
  layer, written in place with the cache donated), the last position's logits and an argmax.

On 8 host devices (a subprocess: XLA_FLAGS must be set before jax starts) the same programs
run under ``jax.jit`` with NamedSharding in/out shardings: FSDP (every parameter and optimizer
state sharded over the mesh axis, gathered inside the layer by a sharding constraint, batch
split over the same axis) or tensor parallelism (Megatron column/row splits of QKV, O, up and
down over KV heads and d_ff, vocab-split embedding and output layer, the residual split over
tokens between blocks in training, replicated in decode).

Timing is calibration's (timing.time_kernel). The prediction is perfmodel's for the same
config: ``to_json`` of a workload holding that TransformerOp on the calibrated spec
(``total.t_calibrated``) and on the spec roofline (``total.t_lower``). A per-component
breakdown times the pieces on their own (embedding, one layer forward, one layer forward +
backward, output layer + loss, Adam; decode: one layer, output layer) and compares them with
the ledger rows of the same group and role.

jax is imported only inside functions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
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


def configs(quick: bool = False, devices: int | None = None) -> list[Config]:
    return [c for c in CONFIGS if (c.quick or not quick)
            and (devices is None or c.devices == devices)]


def config(name: str) -> Config:
    for c in CONFIGS:
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
    g: int          # 2 for a gated MLP (gate and up side by side), else 1
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
        return {"norm1": jnp.ones((d.D,), jnp.float32),
                "wqkv": w((d.D, d.K, d.G + 2, d.H), d.D),
                "wo": w((d.K, d.G, d.H, d.D), d.N * d.H),
                "norm2": jnp.ones((d.D,), jnp.float32),
                "w_up": w((d.D, d.g, d.F), d.D),
                "w_down": w((d.F, d.D), d.F)}

    return {"embed": w((d.V, d.D), 1), "layers": [layer() for _ in range(d.L)],
            "norm_f": jnp.ones((d.D,), jnp.float32), "head": w((d.D, d.V), d.D)}


def _rms(x, g):
    import jax
    import jax.numpy as jnp

    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + EPS_NORM) * g


def _mlp(d: Dims, lp, h):
    import jax
    import jax.numpy as jnp

    u = jnp.einsum("...d,dgf->...gf", h, lp["w_up"])
    a = jax.nn.silu(u[..., 0, :]) * u[..., 1, :] if d.g == 2 else jax.nn.relu(u[..., 0, :])
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

        return jax.tree.map(lambda w: self._c(w), lp)

    def residual(self, x, train: bool):
        """The residual stream between blocks: batch-split (FSDP), token-split (TP train)."""
        if self.strategy == "fsdp":
            return self._c(x, "fsdp")
        if self.strategy == "tensor":
            return self._c(x, None, "tensor") if train else self._c(x)
        return x


def layer_fwd(d: Dims, lp, x, sh: Sharder | None = None):
    """One pre-norm block over x [B, T, D] with causal naive attention."""
    import jax
    import jax.numpy as jnp

    sh = sh or Sharder()
    lp = sh.weights(lp)
    h = _rms(x, lp["norm1"])
    qkv = jnp.einsum("btd,dkjh->btkjh", h, lp["wqkv"])
    q, k, v = qkv[..., :d.G, :], qkv[..., d.G, :], qkv[..., d.G + 1, :]
    s = jnp.einsum("bskgh,btkh->bkgst", q, k) * (1.0 / math.sqrt(d.H))
    T = x.shape[1]
    keep = jnp.arange(T)[:, None] >= jnp.arange(T)[None, :]
    s = jnp.where(keep, s, jnp.finfo(s.dtype).min)
    o = jnp.einsum("bkgst,btkh->bskgh", jax.nn.softmax(s, axis=-1), v)
    x = sh.residual(x + jnp.einsum("bskgh,kghd->bsd", o, lp["wo"]), d.train)
    return sh.residual(x + _mlp(d, lp, _rms(x, lp["norm2"])), d.train)


def head_loss(d: Dims, norm_f, head, x, targets):
    """Final norm, output layer and mean softmax cross-entropy."""
    import jax
    import jax.numpy as jnp

    logits = _rms(x, norm_f) @ head
    lse = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jnp.mean(lse - tgt)


def loss_fn(d: Dims, params, tokens, targets, sh: Sharder | None = None):
    sh = sh or Sharder()
    x = sh.residual(params["embed"][tokens], d.train)
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
    h = _rms(x, lp["norm1"])
    qkv = jnp.einsum("bd,dkjh->bkjh", h, lp["wqkv"])
    q, k, v = qkv[:, :, :d.G, :], qkv[:, :, d.G:d.G + 1, :], qkv[:, :, d.G + 1:, :]
    ck = jax.lax.dynamic_update_slice(ck, k, (0, 0, pos, 0))
    cv = jax.lax.dynamic_update_slice(cv, v, (0, 0, pos, 0))
    s = jnp.einsum("bkgh,bkth->bkgt", q, ck) * (1.0 / math.sqrt(d.H))
    s = jnp.where(jnp.arange(ck.shape[2]) <= pos, s, jnp.finfo(s.dtype).min)
    o = jnp.einsum("bkgt,bkth->bkgh", jax.nn.softmax(s, axis=-1), cv)
    x = sh.residual(x + jnp.einsum("bkgh,kghd->bd", o, lp["wo"]), False)
    return sh.residual(x + _mlp(d, lp, _rms(x, lp["norm2"])), False), ck, cv


def decode_head(d: Dims, norm_f, head, x):
    import jax.numpy as jnp

    return jnp.argmax(_rms(x, norm_f) @ head, axis=-1).astype(jnp.int32)


def decode_step(d: Dims, params, cache, tokens, pos, sh: Sharder | None = None):
    """cache: a list of (k, v) per layer. Returns the updated cache and the next tokens."""
    sh = sh or Sharder()
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
