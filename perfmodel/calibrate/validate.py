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
                 "w_up": P(None, None, "tensor"), "w_down": P("tensor")}
        return {"embed": P("tensor"), "layers": [dict(layer) for _ in params["layers"]],
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
    return {"flops": float(ca.get("flops", math.nan)),
            "bytes": float(ca.get("bytes accessed", math.nan)),
            "transcendentals": float(ca.get("transcendentals", math.nan))}


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
        mesh = jax.make_mesh((n,), (cfg.strategy,))
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


def timed(fn, args=(), mode: str = "full", attempts: int = ATTEMPTS) -> dict:
    """time_kernel of ``fn(*args)``; retried (up to ``attempts``) while other processes take
    more than CONTENDED of the machine; the least contended attempt is kept, with its share."""
    from .bench import CpuMeter
    from .kernels import Built
    from .timing import Budget, time_kernel

    budget = Budget(**BUDGETS[mode])
    best = None
    for _ in range(max(1, attempts)):
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


# ---- the breakdown: pieces of the step timed on their own (one device) ---------------------

def measure_components(cfg: Config, mode: str = "full") -> dict[str, dict]:
    """Per ledger component, the measured time of the whole step's share of it: embedding,
    layer forward and backward (x layers), output layer (forward + backward in training),
    optimizer. Each piece is its own jitted program on realistic inputs."""
    import jax
    import jax.numpy as jnp

    op = cfg.op()
    d = Dims.of(op)
    params = init_params(d)
    tokens, targets = tokens_for(d)
    lp = params["layers"][0]
    out = {}
    if d.train:
        x = params["embed"][tokens]
        dy = jnp.full(x.shape, 1e-3, jnp.float32)
        emb = jax.jit(lambda e, t, g: (e[t], jnp.zeros_like(e).at[t].add(g)))
        out["embed"] = timed(emb, (params["embed"], tokens, dy), mode)
        fwd = jax.jit(lambda lp, x: layer_fwd(d, lp, x))
        both = jax.jit(lambda lp, x, g: jax.vjp(lambda a, b: layer_fwd(d, a, b), lp, x)[1](g))
        f = timed(fwd, (lp, x), mode)
        fb = timed(both, (lp, x, dy), mode)
        out["layer.fwd"] = _scaled(f, d.L)
        out["layer.bwd"] = _scaled(_diff(fb, f), d.L)
        head = jax.jit(jax.value_and_grad(lambda n, h, x: head_loss(d, n, h, x, targets),
                                          argnums=(0, 1, 2)))
        out["lm_head"] = timed(head, (params["norm_f"], params["head"], x), mode)
        grads = jax.tree.map(lambda p: p * 1e-3, params)
        opt = adam_init(params)
        upd = jax.jit(adam_update, donate_argnums=(0, 2))
        state = [params, opt]

        def adam_run(g):
            state[0], state[1] = upd(state[0], g, state[1])
            return state
        out["optimizer"] = timed(adam_run, (grads,), mode)
        return out
    x = params["embed"][tokens]
    out["embed"] = timed(jax.jit(lambda e, t: e[t]), (params["embed"], tokens), mode)
    cache = list(init_cache(d)[0])
    lay = jax.jit(lambda lp, x, ck, cv, i: decode_layer(d, lp, x, ck, cv, i),
                  donate_argnums=(2, 3))
    pos = jnp.int32(d.T - 1)

    def layer_run(lp, x):
        y, cache[0], cache[1] = lay(lp, x, cache[0], cache[1], pos)
        return y, cache[0], cache[1]
    out["layer.fwd"] = _scaled(timed(layer_run, (lp, x), mode), d.L)
    out["lm_head"] = timed(jax.jit(lambda n, h, x: decode_head(d, n, h, x)),
                           (params["norm_f"], params["head"], x), mode)
    return out


def _scaled(t: dict, k: float) -> dict:
    return {**t, **{f: t[f] * k for f in ("median_s", "min_s", "p20_s")}}


def _diff(a: dict, b: dict) -> dict:
    return {**a, **{f: max(a[f] - b[f], 0.0) for f in ("median_s", "min_s", "p20_s")}}


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


def predict(cfg: Config, hw) -> dict:
    """perfmodel's figures for the config on ``hw`` (a calibrated spec, or not): the step's
    t_calibrated (None without a calibration) and t_lower, FLOPs, and per breakdown component
    the sums of the rows' t_calibrated (t_lower where a row has none) and t_lower, with the
    rows themselves."""
    from .. import engine
    from ..model import expand_workload, expansion

    if cfg.devices > 1:
        hw = host_devices_hardware(hw, cfg.devices)
    wl = expand_workload(cfg.workload())
    x = expansion(wl)
    js = engine.to_json(hw, wl)
    tot = js["total"]
    comps: dict[str, dict] = {}
    flops = {"forward": 0.0, "step": 0.0}
    for r in js["ops"]:
        role = x.roles[r["name"]]
        if r["kind"] != "collective":
            flops["step"] += r["flops"]
            if role == "fwd":
                flops["forward"] += r["flops"]
        c = comps.setdefault(component(r["name"], role),
                             {"t_calibrated": 0.0, "t_lower": 0.0, "rows": []})
        cal = r.get("t_calibrated")
        c["t_calibrated"] += r["t_lower"] if cal is None else cal
        c["t_lower"] += r["t_lower"]
        c["rows"].append({k: r.get(k) for k in ("name", "kind", "repeat", "flops", "hbm_bytes",
                                                 "t_lower", "t_calibrated", "bound")})
    return {"hardware": hw.name, "t_calibrated": tot.get("t_calibrated"),
            "t_lower": tot["t_lower"], "t_upper": tot["t_upper"], "flops": flops,
            "hbm_bytes": tot["hbm_bytes"], "components": comps,
            "uncalibrated_rows": [r["name"] for r in js["ops"]
                                  if r["kind"] != "collective" and r.get("t_calibrated") is None]}
