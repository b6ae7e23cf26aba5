"""The calibration kernel suite: JAX kernels, each paired with the perfmodel op that predicts it.

A kernel row is (kernel name, params, dtype). ``params`` holds the op fields of the kernel's op
model (so a CSV row is self-describing and ``op_for`` rebuilds the op without running anything),
plus a few meta keys per kind that the op model ignores (``interpret``, ``block_*``,
``implementation``). Importing this module does not import jax; only ``Kernel.build`` (and the
builders) do.

Kernel kinds and their op models (dtype is the row's dtype; fp32 mainly, a few bf16, which the
XLA CPU backend emulates through fp32 converts, so bf16 on CPU is not faster than fp32):

- ``matmul``: x[batch?, m, k] @ y[batch?, k, n] -> MatmulOp(m, k, n, batch). Squares, skinny
  (small m: decode-like), tall, small-k, wide and batched shapes.
- ``matmul_pallas``: a tiled Pallas matmul (grid over m/block_m, n/block_n, k/block_k,
  accumulating into the output block) -> MatmulOp. ``interpret: true`` in params when the
  backend has no Pallas compiler (CPU): the kernel then runs through the Pallas interpreter
  (a loop of dynamic slices), far slower than the MatmulOp roofline: fit it as its own kind.
- ``ew_scale``: y = x * 0.5 + 1 -> ElementwiseOp(inputs 1, outputs 1, flops_per_element 2).
  Input donated (the output is fed back as the next input; x -> 2 is a fixed point, no inf/NaN).
- ``ew_add_fused``: A + B (+ C ...) in one jitted call, XLA fuses it into one loop ->
  ElementwiseOp(inputs n, outputs 1, flops_per_element n - 1): A+B+C moves 4N elements.
- ``ew_add_unfused``: the same sum as separate jitted calls ((A+B) then (+C)), each a round trip
  through memory -> a list of n - 1 ElementwiseOps(inputs 2, outputs 1, 1 flop/element): A+B+C
  moves 6N elements. (An ``optimization_barrier`` inside one jit does not stop the XLA CPU
  backend from fusing the two adds, so separate calls it is; the time includes one dispatch per
  call, which the fitted per-call overhead is meant to absorb.) Params are the same as the fused
  kernel's, so fused and unfused rows pair up.
- ``reduce_sum``: x[rows, cols].sum(-1) -> ElementwiseOp(inputs 1, outputs 0, 1 flop/element):
  the output (1/cols of the input) is neglected, so the model reads N elements and writes none.
- ``softmax``: jax.nn.softmax over the last axis -> ElementwiseOp(inputs 1, outputs 1,
  flops_per_element 5: max, subtract, exp, sum, divide, as in the attention model). Donated.
- ``attention_naive``: explicit scores = QK^T / sqrt(D) (causal mask with where), softmax,
  scores @ V; q, k, v [B, S, H, D] -> AttentionOp(impl naive): the score matrix goes through
  memory (written, read and written by softmax, read by AV).
- ``attention_dpa``: jax.nn.dot_product_attention(q, k, v, is_causal, implementation) ->
  AttentionOp. With ``implementation: xla`` (used on every backend here) XLA materialises the
  scores, so the op is ``impl: naive`` (on CPU it costs the same as attention_naive). A cuDNN
  (``implementation: cudnn``) row would be ``impl: flash``.
- ``attention_decode``: one query token over a KV cache (seq 1, long kv_seq), grouped-query
  (kv_heads divides heads); cache layout [B, K, T, D], q [B, K, H/K, D]; explicit einsum,
  softmax, einsum -> AttentionOp(seq 1, kv_seq T, kv_heads K, impl naive). The KV cache is
  timed cold (copies rotated call by call), as a decode step streams it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

from pydantic import ValidationError

from ..specs import DTYPE_BYTES, OP_SPECS, ElementwiseOp, SpecError

JAX_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
MODES = ("full", "quick", "tiny")


@dataclass(frozen=True)
class Built:
    """A kernel ready to time: ``fn(*args)`` runs it once (asynchronously, like any jax call).

    ``donate``: fn consumes ``args[0]`` (donated buffer) and returns one array of the same shape
    and dtype, which the timer passes back as ``args[0]`` of the next call.
    ``cycle``: other argument tuples the timer rotates through, call by call, so operands come
    from memory rather than a cache warmed by the previous call (as in a real step).
    """

    fn: Callable
    args: tuple
    donate: bool = False
    cycle: tuple = ()


@dataclass(frozen=True)
class KernelKind:
    name: str
    op_kind: str                              # 'matmul' | 'elementwise' | 'attention'
    build: Callable[[dict, str], Built]       # (params, dtype) -> Built
    meta: frozenset = frozenset()             # params keys that are not op fields
    ops: Callable | None = None               # (fields, dtype) -> op(s); default one op
    in_place: bool = False                    # donates its input: elementwise ops in_place


KINDS: dict[str, KernelKind] = {}


def _kind(name: str, op_kind: str, meta=(), ops=None, in_place=False):
    def deco(build):
        KINDS[name] = KernelKind(name, op_kind, build, frozenset(meta), ops, in_place)
        return build
    return deco


def params_json(params: dict) -> str:
    """Canonical JSON of params (sorted keys, no spaces): the CSV text and the resume key."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


# ---- op models ----------------------------------------------------------------------------

def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err["loc"]) or "(params)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a field of this kernel's op"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def op_for(kernel: str, params: dict, dtype: str):
    """The perfmodel op (or list of ops, summed) that predicts one kernel row.

    Raises SpecError for an unknown kernel or params that do not make a valid op.
    """
    kind = KINDS.get(kernel)
    if kind is None:
        raise SpecError(f"unknown kernel {kernel!r}; known kernels: {', '.join(KINDS)}")
    if not isinstance(params, dict):
        raise SpecError(f"params of kernel {kernel!r} must be a JSON object of op fields, "
                        f"got {type(params).__name__}")
    fields = {k: v for k, v in params.items() if k not in kind.meta}
    if kind.in_place:
        fields.setdefault("in_place", True)
    try:
        if kind.ops is not None:
            return kind.ops(fields, dtype)
        return OP_SPECS[kind.op_kind](name=kernel, kind=kind.op_kind, dtype=dtype, **fields)
    except ValidationError as e:
        allowed = sorted(set(OP_SPECS[kind.op_kind].model_fields) - {"name", "kind", "dtype"}
                         | kind.meta)
        raise SpecError(f"params {params_json(params)} do not describe a valid "
                        f"{kind.op_kind} op for kernel {kernel!r} ({_validation_message(e)}); "
                        f"fields allowed here: {', '.join(allowed)}") from None


def ops_list(kernel: str, params: dict, dtype: str) -> list:
    ops = op_for(kernel, params, dtype)
    return list(ops) if isinstance(ops, (list, tuple)) else [ops]


def op_costs(kernel: str, params: dict, dtype: str, hw) -> dict:
    """Model flops, flops_exec, hbm_bytes, t_compute, t_memory, t_lower, t_upper of one kernel
    on hardware ``hw`` (summed over its ops), from perfmodel.engine.evaluate_op."""
    from ..engine import evaluate_op

    keys = ("flops", "flops_exec", "hbm_bytes", "t_compute", "t_memory", "t_lower", "t_upper")
    out = dict.fromkeys(keys, 0.0)
    for op in ops_list(kernel, params, dtype):
        row = evaluate_op(op, hw)
        for k in keys:
            out[k] += row[k] or 0.0
    return out


def _unfused_ops(fields: dict, dtype: str):
    full = ElementwiseOp(name="ew_add_unfused", kind="elementwise", dtype=dtype, **fields)
    if full.outputs != 1 or full.inputs < 2 or full.flops_per_element != full.inputs - 1:
        raise SpecError(f"ew_add_unfused params must be a sum chain: inputs >= 2, outputs 1, "
                        f"flops_per_element = inputs - 1 (got inputs {full.inputs}, outputs "
                        f"{full.outputs}, flops_per_element {full.flops_per_element})")
    return [ElementwiseOp(name=f"ew_add_unfused.{i}", kind="elementwise", dtype=dtype,
                          shape=full.shape, inputs=2, outputs=1, flops_per_element=1,
                          in_place=full.in_place)
            for i in range(full.inputs - 1)]


# ---- jax helpers (imported lazily) --------------------------------------------------------

_JIT: dict = {}


def _jit(key, make):
    """One jitted function per key, kept across passes so each shape compiles once."""
    if key not in _JIT:
        _JIT[key] = make()
    return _JIT[key]


def _jnp_dtype(dtype: str):
    import jax.numpy as jnp

    if dtype not in JAX_DTYPES:
        raise SpecError(f"bench kernels run in {', '.join(JAX_DTYPES)}; got dtype {dtype!r}")
    return jnp.dtype(JAX_DTYPES[dtype])


def _data(shape, dtype: str, seed: int):
    """A device array of ``shape`` with values spread over [-1, 1) (a cheap integer hash, not
    random numbers: timing needs ordinary finite values, not statistics; jax.random is 20x
    slower to fill 256 MB on CPU)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    def make():
        def fill(seed, shape, dt):
            i = jax.lax.iota(jnp.uint32, int(np.prod(shape))) * jnp.uint32(2654435761)
            i = i + seed.astype(jnp.uint32) * jnp.uint32(40503)
            x = (i >> 8).astype(jnp.float32) * (2.0 / (1 << 24)) - 1.0
            return x.reshape(shape).astype(dt)
        return jax.jit(fill, static_argnums=(1, 2))

    return _jit("_data", make)(jnp.uint32(seed), tuple(int(s) for s in shape), _jnp_dtype(dtype))


# ---- builders -----------------------------------------------------------------------------

COLD_ROWS = 4            # products this skinny stream their weights (a decode step's): timed cold
COLD_BYTES = 1 << 30     # operand bytes rotated through to defeat caches (larger than a host's L3)


def _cold_copies(nbytes: int) -> int:
    """How many copies of an operand of ``nbytes`` to rotate through so that each call reads
    it from memory (as a decode step reads each layer's weights and KV cache)."""
    return max(2, min(16, math.ceil(COLD_BYTES / nbytes)))


@_kind("matmul", "matmul")
def _matmul(p, dtype):
    import jax

    b, m, k, n = p.get("batch", 1), p["m"], p["k"], p["n"]
    lead = (b,) if b > 1 else ()
    fn = _jit("matmul", lambda: jax.jit(lambda x, y: x @ y))
    x = _data(lead + (m, k), dtype, 1)
    if min(m, n) <= COLD_ROWS:
        # a matrix-vector product streams its weights: rotate through enough copies to exceed
        # the last-level cache, or repeated calls would time a cache-resident matrix
        ws = [_data(lead + (k, n), dtype, 2 + i)
              for i in range(_cold_copies(b * k * n * DTYPE_BYTES[dtype]))]
        return Built(fn, (x, ws[0]), cycle=tuple((x, w) for w in ws))
    return Built(fn, (x, _data(lead + (k, n), dtype, 2)))


@_kind("matmul_pallas", "matmul", meta=("interpret", "block_m", "block_k", "block_n"))
def _matmul_pallas(p, dtype):
    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl

    m, k, n = p["m"], p["k"], p["n"]
    bm, bk, bn = p["block_m"], p["block_k"], p["block_n"]
    interpret = bool(p.get("interpret", False))
    if p.get("batch", 1) != 1 or m % bm or k % bk or n % bn:
        raise SpecError(f"matmul_pallas needs batch 1 and blocks dividing the dims, got {p}")
    dt = _jnp_dtype(dtype)

    def kernel(x_ref, y_ref, o_ref):
        @pl.when(pl.program_id(2) == 0)
        def _():
            o_ref[...] = jnp.zeros_like(o_ref)

        o_ref[...] += jnp.dot(x_ref[...], y_ref[...],
                              preferred_element_type=jnp.float32).astype(o_ref.dtype)

    def make():
        def mm(x, y):
            return pl.pallas_call(
                kernel, out_shape=jax.ShapeDtypeStruct((m, n), dt),
                grid=(m // bm, n // bn, k // bk),
                in_specs=[pl.BlockSpec((bm, bk), lambda i, j, kk: (i, kk)),
                          pl.BlockSpec((bk, bn), lambda i, j, kk: (kk, j))],
                out_specs=pl.BlockSpec((bm, bn), lambda i, j, kk: (i, j)),
                interpret=interpret)(x, y)
        return jax.jit(mm)

    fn = _jit(("matmul_pallas", params_json(p), dtype), make)
    return Built(fn, (_data((m, k), dtype, 1), _data((k, n), dtype, 2)))


@_kind("ew_scale", "elementwise", in_place=True)
def _ew_scale(p, dtype):
    import jax

    fn = _jit("ew_scale", lambda: jax.jit(lambda x: x * 0.5 + 1, donate_argnums=0))
    return Built(fn, (_data(p["shape"], dtype, 1),), donate=True)


def _terms(p, dtype):
    return tuple(_data(p["shape"], dtype, i + 1) for i in range(p["inputs"]))


@_kind("ew_add_fused", "elementwise", in_place=True)
def _ew_add_fused(p, dtype):
    import jax

    def total(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    fn = _jit("ew_add_fused", lambda: jax.jit(total, donate_argnums=0))
    return Built(fn, _terms(p, dtype), donate=True)


@_kind("ew_add_unfused", "elementwise", ops=_unfused_ops, in_place=True)
def _ew_add_unfused(p, dtype):
    import jax

    add = _jit("ew_add2", lambda: jax.jit(lambda a, b: a + b, donate_argnums=0))

    def chain(a, *rest):
        for x in rest:  # one jitted call (one trip through memory) per add
            a = add(a, x)
        return a

    return Built(chain, _terms(p, dtype), donate=True)


@_kind("reduce_sum", "elementwise")
def _reduce_sum(p, dtype):
    import jax

    fn = _jit("reduce_sum", lambda: jax.jit(lambda x: x.sum(axis=-1)))
    return Built(fn, (_data(p["shape"], dtype, 1),))


@_kind("softmax", "elementwise", in_place=True)
def _softmax(p, dtype):
    import jax

    fn = _jit("softmax", lambda: jax.jit(lambda x: jax.nn.softmax(x, axis=-1), donate_argnums=0))
    return Built(fn, (_data(p["shape"], dtype, 1),), donate=True)


def _attn_dims(p):
    B, S, H, D = p["batch"], p["seq"], p["heads"], p["head_dim"]
    return B, S, H, D, p.get("kv_seq") or S, p.get("kv_heads") or H


@_kind("attention_naive", "attention")
def _attention_naive(p, dtype):
    import jax
    import jax.numpy as jnp

    B, S, H, D, T, K = _attn_dims(p)
    if K != H:
        raise SpecError("attention_naive is multi-head (kv_heads = heads); use attention_dpa "
                        "or attention_decode for grouped-query attention")
    causal = bool(p.get("causal", False))

    def make():
        def attn(q, k, v):
            s = jnp.einsum("bshd,bthd->bhst", q, k) * (1.0 / math.sqrt(D))
            if causal:  # queries are the last S of T positions
                keep = (jnp.arange(S)[:, None] + (T - S)) >= jnp.arange(T)[None, :]
                s = jnp.where(keep, s, jnp.finfo(s.dtype).min)
            return jnp.einsum("bhst,bthd->bshd", jax.nn.softmax(s, axis=-1), v)
        return jax.jit(attn)

    fn = _jit(("attention_naive", causal, S, T, D), make)  # make closes over S, T and D
    return Built(fn, (_data((B, S, H, D), dtype, 1), _data((B, T, K, D), dtype, 2),
                      _data((B, T, K, D), dtype, 3)))


@_kind("attention_dpa", "attention", meta=("implementation",))
def _attention_dpa(p, dtype):
    import jax

    B, S, H, D, T, K = _attn_dims(p)
    causal, impl = bool(p.get("causal", False)), p.get("implementation")

    def make():
        return jax.jit(lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, is_causal=causal, implementation=impl))

    fn = _jit(("attention_dpa", causal, impl), make)
    return Built(fn, (_data((B, S, H, D), dtype, 1), _data((B, T, K, D), dtype, 2),
                      _data((B, T, K, D), dtype, 3)))


@_kind("attention_decode", "attention")
def _attention_decode(p, dtype):
    import jax
    import jax.numpy as jnp

    B, S, H, D, T, K = _attn_dims(p)
    if S != 1 or p.get("causal"):
        raise SpecError("attention_decode is one query token (seq 1, causal false)")

    def dec(q, k, v):  # q [B, K, G, D]; k, v [B, K, T, D]
        s = jnp.einsum("bkgd,bktd->bkgt", q, k) * (1.0 / math.sqrt(D))
        return jnp.einsum("bkgt,bktd->bkgd", jax.nn.softmax(s, axis=-1), v)

    fn = _jit(("attention_decode", D), lambda: jax.jit(dec))  # dec closes over D
    # the KV cache is streamed, as the matrix-vector products' weights: timed cold
    q = _data((B, K, H // K, D), dtype, 1)
    kvs = [(_data((B, K, T, D), dtype, 2 + 2 * i), _data((B, K, T, D), dtype, 3 + 2 * i))
           for i in range(_cold_copies(2 * B * K * T * D * DTYPE_BYTES[dtype]))]
    return Built(fn, (q, *kvs[0]), cycle=tuple((q, k, v) for k, v in kvs))


# ---- the suite ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    name: str
    params: dict = field(hash=False)
    dtype: str = "fp32"
    tags: frozenset = frozenset()  # modes besides 'full' that include it: 'quick', 'tiny'

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, params_json(self.params), self.dtype)

    def build(self) -> Built:
        return KINDS[self.name].build(self.params, self.dtype)

    def ops(self) -> list:
        return ops_list(self.name, self.params, self.dtype)

    def label(self) -> str:
        """Short text for progress bars: the params that vary, defaults left out."""
        p = self.params
        skip = {"outputs", "flops_per_element", "impl", "interpret", "implementation"}
        show = {k: v for k, v in p.items() if k not in skip and not (
            (k == "batch" and v == 1) or (k == "causal" and not v)
            or (k == "kv_heads" and v == p.get("heads")) or (k == "kv_seq" and v == p.get("seq"))
            or (k == "inputs" and self.name in ("ew_scale", "reduce_sum", "softmax")))}
        text = " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in show.items())
        return f"{self.name} {text} {self.dtype}"


def _mm(m, k, n, batch=1):
    return {"m": m, "k": k, "n": n, "batch": batch}


def _ew(shape, inputs=1, outputs=1, flops=1.0):
    return {"shape": list(shape), "inputs": inputs, "outputs": outputs,
            "flops_per_element": float(flops)}


def _attn(batch, seq, heads, head_dim, kv_heads=None, kv_seq=None, causal=False, impl="naive",
          **meta):
    return {"batch": batch, "seq": seq, "heads": heads, "head_dim": head_dim,
            "kv_heads": kv_heads or heads, "kv_seq": kv_seq or seq, "causal": causal,
            "impl": impl, **meta}


def suite(mode: str = "full", backend: str = "cpu") -> list[Kernel]:
    """The kernels of one mode: 'full' (every kernel), 'quick' (a subset, a few times shorter)
    or 'tiny' (seconds; for tests). Shapes are sized so that most kernels take 1 ms or more on a
    small CPU host; run times are in docs/measurements.md."""
    if mode not in MODES:
        raise SpecError(f"unknown bench mode {mode!r}; valid: {', '.join(MODES)}")
    interpret = backend not in ("tpu", "gpu")  # no Pallas compiler on CPU
    Q, T = frozenset({"quick"}), frozenset({"tiny"})
    # decode attention and a decode step's projections are priced by the one-row (gemv) group:
    # the quick suite needs enough one-row products to fit it
    QUICK_GEMV = {(1, 2048, 8192), (1, 1024, 4096), (1, 2048, 2048), (1, 4096, 11008),
                  (1, 8192, 8192), (4, 8192, 4096)}
    ks: list[Kernel] = []

    def add(name, params, dtype="fp32", tags=frozenset()):
        ks.append(Kernel(name, params, dtype, frozenset(tags)))

    # matmul fp32: squares
    for n in (128, 256, 384, 512, 640, 768, 896, 1024, 1280, 1536, 2048, 2560, 3072):
        add("matmul", _mm(n, n, n), tags=Q if n in (256, 512, 1024, 2048) else ())
    # skinny (small m, decode-like), tall, small k, wide, batched
    for m, k, n, q in ((8, 4096, 4096, 0), (16, 4096, 4096, 1), (32, 2048, 2048, 0),
                       (48, 3072, 3072, 0), (64, 4096, 4096, 0), (96, 1536, 6144, 0),
                       (128, 2048, 2048, 1), (256, 4096, 4096, 0),
                       (8192, 512, 512, 1), (16384, 256, 1024, 0), (4096, 1024, 256, 0),
                       (12288, 768, 768, 0), (32768, 128, 256, 0),
                       (2048, 128, 2048, 1), (4096, 64, 4096, 0), (512, 1024, 8192, 1),
                       # skinny shapes with small operands too, so that a skinny product's
                       # cost is not mistaken for the size of its operands
                       (16, 1024, 1024, 0), (32, 1024, 2048, 0), (8, 2048, 2048, 0),
                       (64, 2048, 1024, 0), (16, 2048, 4096, 0), (24, 1536, 1536, 0)):
        add("matmul", _mm(m, k, n), tags=Q if q else ())
    # one-row products (a decode step's projections: weight reads dominate)
    for m, k, n in ((1, 4096, 4096), (1, 4096, 11008), (1, 2048, 8192), (2, 4096, 4096),
                    (4, 8192, 4096), (1, 1024, 4096), (1, 2048, 2048), (2, 2048, 8192),
                    (4, 4096, 4096), (1, 8192, 8192), (2, 8192, 4096), (4, 2048, 2048),
                    (3, 4096, 4096)):
        add("matmul", _mm(m, k, n), tags=Q if (m, k, n) in QUICK_GEMV else ())
    add("matmul", _mm(512, 512, 512, batch=8), tags=Q)
    add("matmul", _mm(256, 256, 256, batch=32))
    # matmul bf16 (emulated on CPU)
    for m, k, n, q in ((256, 256, 256, 0), (512, 512, 512, 1), (768, 768, 768, 0),
                       (1024, 1024, 1024, 1), (2048, 2048, 2048, 0), (32, 2048, 2048, 0),
                       (64, 4096, 4096, 0), (4096, 512, 512, 0), (1536, 1536, 1536, 0),
                       (128, 2048, 2048, 0), (2048, 128, 2048, 0), (256, 4096, 1024, 0),
                       (16, 4096, 4096, 0), (384, 384, 384, 0)):
        add("matmul", _mm(m, k, n), "bf16", tags=Q if q else ())
    # Pallas tiled matmul (interpreted on CPU: slow, keep it small)
    for n, b, q in ((256, 128, 1), (256, 64, 0), (384, 128, 0), (512, 256, 0), (512, 128, 0),
                    (768, 256, 0), (128, 32, 0), (192, 64, 0), (128, 64, 0), (384, 64, 0)):
        add("matmul_pallas", {**_mm(n, n, n), "block_m": b, "block_k": b, "block_n": b,
                              "interpret": interpret}, tags=Q if q else ())

    # elementwise (1-D; 2^18 = 1 MiB of fp32 ... 2^26 = 256 MiB)
    for e in (18, 20, 21, 22, 23, 24, 25, 26):
        add("ew_scale", _ew([1 << e], 1, 1, 2), tags=Q if e in (20, 22, 24) else ())
    for name in ("ew_add_fused", "ew_add_unfused"):
        for terms, sizes in ((2, (18, 20, 22, 23, 24, 25, 26)), (3, (18, 20, 22, 23, 24, 26)),
                             (4, (22, 24))):
            if name == "ew_add_unfused" and terms == 2:
                continue  # one add: the same kernel as the fused one
            for e in sizes:
                add(name, _ew([1 << e], terms, 1, terms - 1),
                    tags=Q if terms < 4 and (e == 24 or (e == 20 and terms == 3)) else ())
    add("ew_add_fused", _ew([1 << 24], 2, 1, 1), "bf16", tags=Q)
    add("ew_scale", _ew([1 << 24], 1, 1, 2), "bf16")

    # reductions over the last axis (denser from 128 MiB, where the cost per byte rises)
    for shape, q in (((1024, 1024), 0), ((2048, 2048), 0), ((4096, 1024), 0), ((4096, 4096), 1),
                     ((8192, 4096), 0), ((16384, 4096), 0), ((65536, 256), 1),
                     ((1024, 16384), 0), ((256, 65536), 0), ((512, 32768), 0),
                     ((2048, 8192), 0), ((8192, 1024), 0), ((32768, 512), 0), ((4096, 2048), 0),
                     ((12288, 4096), 0), ((10240, 4096), 0), ((14336, 4096), 0),
                     ((20480, 4096), 0)):
        add("reduce_sum", _ew(shape, 1, 0, 1), tags=Q if q else ())
    # softmax over the last axis: 4 MiB ... 256 MiB
    # (densest around the last-level cache, where the cost per element changes)
    for shape, q in (((512, 2048), 1), ((256, 4096), 0), ((1024, 2048), 0), ((2048, 2048), 0),
                     ((3072, 2048), 0), ((4096, 2048), 1), ((4096, 4096), 1), ((8192, 2048), 0),
                     ((2048, 8192), 0), ((8192, 4096), 0), ((16384, 4096), 0),
                     ((1536, 2048), 0), ((2560, 2048), 0), ((3584, 2048), 0), ((1792, 4096), 0),
                     ((6144, 2048), 0), ((12288, 2048), 0)):
        add("softmax", _ew(shape, 1, 1, 5), tags=Q if q else ())

    # attention [B, S, H, D]
    for b, s, h, d, causal, q in ((4, 256, 8, 64, False, 0), (1, 512, 8, 64, False, 1),
                                  (2, 512, 8, 64, False, 0), (1, 768, 8, 64, False, 0),
                                  (1, 1024, 8, 64, False, 1), (1, 1024, 8, 64, True, 1),
                                  (1, 1024, 8, 128, False, 0), (1, 1536, 8, 64, False, 0),
                                  (1, 2048, 8, 64, False, 0), (2, 256, 8, 64, False, 0),
                                  (1, 384, 8, 64, False, 0), (1, 640, 8, 64, False, 0),
                                  (4, 512, 8, 64, False, 0),
                                  # short sequences, many heads x batches (a small model's step)
                                  (4, 128, 4, 128, True, 0), (16, 128, 4, 128, True, 0),
                                  (8, 128, 4, 128, False, 0), (4, 256, 4, 128, True, 0),
                                  (16, 256, 4, 64, False, 0)):
        add("attention_naive", _attn(b, s, h, d, causal=causal), tags=Q if q else ())
    for b, s, h, d, kvh, causal, q in ((1, 512, 8, 64, None, False, 1),
                                       (2, 512, 8, 128, None, False, 0),
                                       (1, 768, 8, 64, None, False, 0),
                                       (1, 1024, 8, 64, None, False, 0),
                                       (1, 1024, 8, 64, None, True, 1),
                                       (1, 1024, 16, 64, 4, False, 0),
                                       (1, 2048, 8, 64, None, False, 0),
                                       (4, 256, 8, 64, 2, True, 0), (8, 128, 8, 64, 2, True, 0)):
        add("attention_dpa", _attn(b, s, h, d, kv_heads=kvh, causal=causal,
                                   implementation="xla"), tags=Q if q else ())
    # decode: one token over a KV cache, grouped-query
    for b, h, kvh, t, d, q in ((4, 32, 8, 2048, 128, 1), (4, 32, 8, 8192, 128, 0),
                               (1, 32, 32, 8192, 128, 1), (8, 32, 8, 4096, 128, 0),
                               (16, 32, 8, 1024, 128, 0), (2, 32, 8, 16384, 128, 0),
                               (32, 32, 8, 512, 128, 0), (1, 32, 8, 32768, 128, 0),
                               # one query row per kv head (multi-head attention decode)
                               (1, 16, 16, 4096, 128, 0), (4, 8, 8, 8192, 64, 0),
                               (8, 16, 16, 2048, 128, 0)):
        add("attention_decode", _attn(b, 1, h, d, kv_heads=kvh, kv_seq=t), tags=Q if q else ())

    # tiny: every kind once, small shapes (seconds in all)
    add("matmul", _mm(64, 64, 64), tags=T)
    add("matmul_pallas", {**_mm(64, 64, 64), "block_m": 32, "block_k": 32, "block_n": 32,
                          "interpret": interpret}, tags=T)
    add("ew_scale", _ew([1 << 14], 1, 1, 2), tags=T)
    add("ew_add_fused", _ew([1 << 14], 3, 1, 2), tags=T)
    add("ew_add_unfused", _ew([1 << 14], 3, 1, 2), tags=T)
    add("reduce_sum", _ew((64, 256), 1, 0, 1), tags=T)
    add("softmax", _ew((64, 256), 1, 1, 5), tags=T)
    add("attention_naive", _attn(1, 64, 2, 16, causal=True), tags=T)
    add("attention_dpa", _attn(1, 64, 4, 16, kv_heads=2, implementation="xla"), tags=T)
    add("attention_decode", _attn(1, 1, 4, 16, kv_heads=2, kv_seq=128), tags=T)

    if mode == "full":
        ks = [k for k in ks if "tiny" not in k.tags]
    else:
        ks = [k for k in ks if mode in k.tags]
    for k in ks:  # every kernel must map to a valid op model
        k.ops()
    return ks
