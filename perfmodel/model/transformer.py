"""A transformer step as kernel ops: the sharding plan, the expansion and the memory ledger.

Pure Python (no jax, no hardware): a ``TransformerOp`` and its workload's mesh become a ``Plan``
(devices per strategy, per-chip shapes) and then a list of plain op specs (matmul, attention,
elementwise, collective) named as ledger paths, each with the shapes one chip sees and a
``repeat`` for identical instances (the layers). The engine evaluates them like any other ops.

Notation: B sequences per step, T tokens per sequence (decode: the KV length), D d_model,
N heads, K kv_heads, H head_dim, F d_ff, V vocab, L layers, E experts; e bytes per activation,
pb bytes per parameter. Strategy sizes: dp data, fsdp, tp tensor, sp sequence, ep expert,
pp pipeline; m microbatches.

Sharding (Megatron-style TP with sequence-sharded residuals; FSDP as ZeRO-3; sequence =
context parallelism; expert = expert parallelism, which also shards the batch like data):
- batch over data x fsdp x expert: b = B / (dp fsdp ep) sequences per chip, b/m per microbatch;
- sequence over sequence: T/sp query tokens per chip; attention gathers K and V over it;
- heads, KV heads, d_ff and vocab over tensor; between sublayers the residual stream is split
  over tensor along tokens (decode: the batch's rows, at least one per chip), so each attention
  and MLP block starts with an all-gather and ends with a reduce-scatter of [tokens, D] (the
  two halves of Megatron's all-reduce: same bytes, and the norms run on a 1/tp share);
- layers over pipeline (L/pp per stage); experts over expert (E/ep per chip);
- weights over fsdp (gathered per layer in the forward and again in the backward; gradients
  reduce-scattered); gradients all-reduced over the axes that replicate a weight (data,
  sequence, and expert for the non-expert weights).

Per chip, the ledger holds the embedding and the output layer as well as its L/pp layers (with
a pipeline they live on the first and last stages: the ledger is the busiest stage's bound).

Gradient accumulation (``grad_accum`` g, training): the step's batch is run as g passes of
b/(g m) sequences per microbatch; every layer (and its FSDP gathers) runs m g times, the FSDP
gradient reduce-scatter once per pass, the data-parallel all-reduce and the optimizer once per
step; the gradients are accumulated in fp32. Remat ``full`` recomputes a layer's forward and
its activation collectives in the backward; ``dots`` (JAX's checkpoint_dots) keeps the matmul
outputs and recomputes the rest (norms, activation, attention, and the gathers feeding them).

The plan's batch fields may be numpy arrays (perfmodel.plan evaluates one structure over many
batch sizes): the expansion and the memory ledger then carry arrays where they depend on them.
"""

from __future__ import annotations

import difflib
import math
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..specs import DTYPE_BYTES, SpecError, TransformerOp
from ..trace import as_float, as_int, maximum, minimum

# ---- modelling constants ------------------------------------------------------------------

NORM_FLOPS_PER_ELEMENT = 4      # RMSNorm: square, sum, scale by rsqrt, multiply by the gain
RESIDUAL_NORM_FLOPS = 1 + NORM_FLOPS_PER_ELEMENT  # the residual add fused into the next norm
GATED_ACT_FLOPS = 5             # silu(g) * u: negate, exp, add, divide, multiply
PLAIN_ACT_FLOPS = 4             # gelu/relu, a few FLOPs per element
LOSS_FLOPS_PER_LOGIT = 6        # softmax cross-entropy and its gradient: max, sub, exp, sum, log, sub
EMBED_BWD_FLOPS = 1             # scatter-add of the output gradient into the table rows
BWD_ELEMENTWISE_FLOP_FACTOR = 2  # an elementwise op's backward: about twice its forward FLOPs
ADAM_FLOPS_PER_PARAM = 12       # two moment updates, bias corrections, sqrt, divide, update
SGD_FLOPS_PER_PARAM = 2         # p - lr * g
ADAM_MOMENT_BYTES = 4           # Adam's two moments are fp32 whatever the parameter dtype
ADAM_MOMENTS = 2
CAST_FLOPS = 1                  # a dtype conversion: one vector op per element
LOGITS_BYTES = 4                # the loss reads the logits in fp32
DEFAULT_CAPACITY_FACTOR = 1.0
GRAD_ACCUM_BYTES = 4            # gradients accumulated over grad_accum steps are summed in fp32

BATCH_STRATEGIES = ("data", "fsdp", "expert")  # the strategies that split the batch


# ---- the plan -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How one chip sees the model: devices per strategy and the per-chip shapes."""

    axes: dict[str, tuple[str, ...]]  # strategy -> mesh axes (only the strategies used)
    dp: int
    fsdp: int
    tp: int
    sp: int
    ep: int
    pp: int
    chips: int
    microbatches: int   # pipeline microbatches per accumulation step
    batch: int          # sequences per chip per step
    micro_batch: int    # sequences per chip per microbatch
    q_seq: int          # query tokens per sequence per chip (T/sp; 1 in decode)
    kv_seq: int         # keys per sequence one chip's attention reads (T; T/sp in decode)
    tokens: int         # rows of the projections per microbatch: micro_batch x q_seq
    layers: int         # layers per pipeline stage
    heads: int          # per chip (N/tp)
    kv_heads: int       # per chip (K/tp; 1 when tp > K: each KV head replicated tp/K times)
    d_ff: int           # per chip (F/tp)
    vocab: int          # per chip (V/tp)
    experts: int        # experts per chip (E/ep; 0 for a dense model)
    grad_accum: int = 1  # gradient accumulation steps per optimizer step (train)

    # batch, micro_batch, tokens, microbatches and grad_accum may be numpy arrays (perfmodel.plan
    # evaluates one sharding structure over many batch sizes at once); the rest are numbers

    @property
    def passes(self):
        """Forward (and backward) passes per step over the layers: microbatches x grad_accum."""
        return self.microbatches * self.grad_accum

    @property
    def batch_shards(self) -> int:
        return self.dp * self.fsdp * self.ep

    def on(self, *strategies: str) -> list[str]:
        """Mesh axes of the given strategies, in mesh order of the strategies given."""
        return [a for s in strategies for a in self.axes.get(s, ())]


def make_plan(op: TransformerOp, mesh: dict[str, int] | None) -> Plan:
    """The sharding plan of ``op`` on the workload's mesh; SpecError says what does not fit."""
    par = {s: tuple(a) for s, a in op.parallelism.items()}
    if par and not mesh:
        raise SpecError(f"parallelism {dict(op.parallelism)} needs the workload's mesh: add a "
                        f"top-level mesh and slice, e.g. slice: 2x2x2 and mesh: {{fsdp: 8}}")
    mesh = dict(mesh or {})
    for strat, axes in par.items():
        for a in axes:
            if a not in mesh:
                close = difflib.get_close_matches(a, list(mesh), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise SpecError(f"parallelism.{strat}: unknown mesh axis {a!r}; {hint}the mesh "
                                f"has {', '.join(mesh)}")
    used = {a for axes in par.values() for a in axes}
    idle = [a for a in mesh if a not in used]
    if idle:
        raise SpecError(f"mesh axis {idle[0]!r} is in no strategy of parallelism, so its "
                        f"chips would repeat the same work: give it to one (e.g. data: "
                        f"{idle[0]}) or remove it from the mesh")
    size = {s: math.prod(mesh[a] for a in par.get(s, ())) for s in
            ("data", "fsdp", "tensor", "sequence", "expert", "pipeline")}
    tp, sp, ep, pp = size["tensor"], size["sequence"], size["expert"], size["pipeline"]

    def need(ok: bool, msg):  # msg: written only when needed (a traced number never is)
        if not ok:
            raise SpecError(msg())

    def where(strat):
        return f"{strat} size {size[strat]} (mesh axes {', '.join(par[strat])})"

    if tp > 1:
        for f in ("heads", "d_ff", "vocab"):
            need(getattr(op, f) % tp == 0, lambda f=f:
                 f"{f} {getattr(op, f)} is not divisible by the {where('tensor')}: tensor "
                 f"parallelism splits {f} evenly; choose a tensor size that divides it")
        # wider than kv_heads: each KV head is replicated tp/kv_heads times (Megatron, vLLM)
        need(op.kv_heads % tp == 0 or tp % op.kv_heads == 0, lambda:
             f"kv_heads {op.kv_heads} and the {where('tensor')} do not divide one another: "
             f"tensor parallelism splits the KV heads evenly, or replicates each one when it "
             f"is wider than kv_heads; choose a tensor size that divides kv_heads or a "
             f"multiple of it")
    need(op.layers % pp == 0, lambda: f"layers {op.layers} is not divisible by the {where('pipeline')}"
         if pp > 1 else "")
    if ep > 1:
        need(op.experts % ep == 0, lambda: f"experts {op.experts} is not divisible by the "
                                   f"{where('expert')}")
    if sp > 1:
        need(op.seq % sp == 0, lambda: f"seq {op.seq} is not divisible by the {where('sequence')}")
    shards = size["data"] * size["fsdp"] * ep
    need(op.batch % shards == 0, lambda:
         f"batch {op.batch} is not divisible by data x fsdp x expert = {shards} (the strategies "
         f"that split the batch): use a batch that is a multiple of {shards}")
    b = op.batch // shards
    m = op.microbatches or (pp if pp > 1 else 1)
    need(b % m == 0, lambda: f"{b} sequences per chip (batch {op.batch} / {shards}) do not split into "
                     f"{m} microbatches: use a batch or microbatches so that they do")
    g = op.grad_accum
    need(b % (m * g) == 0, lambda: f"{b} sequences per chip (batch {op.batch} / {shards}) do not split "
                           f"into grad_accum {g} x {m} microbatches: use a batch, grad_accum or "
                           f"microbatches so that they do")
    decode = op.mode == "decode"
    q_seq = 1 if decode else op.seq // sp
    kv_seq = op.seq // sp if decode else op.seq
    return Plan(axes=par, dp=size["data"], fsdp=size["fsdp"], tp=tp, sp=sp, ep=ep, pp=pp,
                chips=math.prod(mesh.values()) if mesh else 1, microbatches=m, batch=b,
                micro_batch=b // (m * g), q_seq=q_seq, kv_seq=kv_seq,
                tokens=(b // (m * g)) * q_seq, grad_accum=g,
                layers=op.layers // pp, heads=op.heads // tp, kv_heads=maximum(1, op.kv_heads // tp),
                d_ff=op.d_ff // tp, vocab=op.vocab // tp,
                experts=(op.experts // ep) if op.experts else 0)


def single_chip_plan(op: TransformerOp) -> Plan:
    """The whole model on one device (the model-FLOP count: no sharding, one microbatch)."""
    return make_plan(op.model_copy(update={"parallelism": {}, "microbatches": None,
                                           "grad_accum": 1}), None)


# ---- numbers or arrays ---------------------------------------------------------------------

def _ceil(x):
    """math.ceil on a number (an int, as before); np.ceil on an array of batch sizes."""
    return np.ceil(x) if isinstance(x, np.ndarray) else math.ceil(x)


def _min(a, b):
    return np.minimum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) \
        else minimum(a, b)


def _max(a, b):
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) \
        else maximum(a, b)


def _float(x):
    return x.astype(float) if isinstance(x, np.ndarray) else as_float(x)


# ---- parameters ---------------------------------------------------------------------------

def _gate(op) -> int:
    return 2 if op.mlp == "gated" else 1  # gated: gate and up projections side by side


def param_ledger(op: TransformerOp) -> dict[str, int]:
    """Parameters of the whole model by ledger path (every layer's summed; MoE: all experts)."""
    D, H, N, K, F, V, L = (op.d_model, op.head_dim, op.heads, op.kv_heads, op.d_ff, op.vocab,
                           op.layers)
    E = op.experts or 1
    out = {"embed/lookup": 0 if op.tie_embeddings else V * D,  # tied: lm_head/proj holds it
           "layer/norm1": L * D,
           "layer/attn/qkv": L * (D + op.qkv_bias) * (N + 2 * K) * H,  # a bias: one more row
           "layer/attn/o": L * N * H * D,
           "layer/norm2": L * D}
    if op.experts:
        out["layer/moe/router"] = L * D * E
    out["layer/mlp/up"] = L * E * D * _gate(op) * F
    out["layer/mlp/down"] = L * E * F * D
    out["lm_head/norm"] = D
    out["lm_head/proj"] = D * V
    return out


def params_6pt(op: TransformerOp) -> int:
    """P of 6PT: every parameter a token's FLOPs go through (the output layer yes, the
    embedding lookup no; a mixture of experts counts top_k experts, the active ones)."""
    led = param_ledger(op)
    p = sum(v for k, v in led.items() if k != "embed/lookup")
    if op.experts:
        expert = led["layer/mlp/up"] + led["layer/mlp/down"]
        p -= expert - expert // op.experts * op.top_k
    return p


def params_active(op: TransformerOp) -> int:
    """Parameters a token uses: 6PT's P plus the embedding table (once when tied)."""
    return params_6pt(op) + param_ledger(op)["embed/lookup"]


def _layer_weights(op, plan: Plan) -> tuple[int, int]:
    """(non-expert, expert) parameters of one layer on one chip after tensor and expert
    sharding, before FSDP: what an FSDP all-gather of the layer produces."""
    D, H = op.d_model, op.head_dim
    dense = (D + op.qkv_bias) * (plan.heads + 2 * plan.kv_heads) * H + plan.heads * H * D + 2 * D
    mlp = (_gate(op) + 1) * D * plan.d_ff
    if op.experts:
        return dense + D * op.experts, plan.experts * mlp
    return dense + mlp, 0


def _head_weights(op, plan: Plan) -> int:
    return op.d_model * plan.vocab  # the embedding table or the output layer, vocab split by TP


def local_params(op: TransformerOp, plan: Plan) -> int:
    """Parameters stored on one chip: its layers (sharded by tensor, expert and fsdp), the
    embedding and output layer (by tensor and fsdp) and the final norm."""
    dense, expert = _layer_weights(op, plan)
    layers = plan.layers * math.ceil((dense + expert) / plan.fsdp)
    tables = 1 if op.tie_embeddings else 2  # tied: embedding and output layer share one
    return layers + tables * math.ceil(_head_weights(op, plan) / plan.fsdp) + op.d_model


# ---- dtypes -------------------------------------------------------------------------------

def weight_dtype(op: TransformerOp) -> str:
    """The dtype the matmuls read weights in: param_dtype in inference (weight-only
    quantization: int8, int4, fp8 weights) or when it is narrower than dtype; in training with
    wider parameters (an fp32 master copy) the step casts them to dtype once (optimizer/cast)
    and the matmuls read that copy."""
    if op.mode != "train" or DTYPE_BYTES[op.param_dtype] < DTYPE_BYTES[op.dtype]:
        return op.param_dtype
    return op.dtype


def casts_params(op: TransformerOp) -> bool:
    """Training keeps wider master parameters than it computes with: one cast per step."""
    return op.mode == "train" and DTYPE_BYTES[op.param_dtype] > DTYPE_BYTES[op.dtype]


def kv_dtype(op: TransformerOp) -> str:
    return op.kv_dtype or op.dtype


# ---- memory -------------------------------------------------------------------------------

def memory_parts(op: TransformerOp, plan: Plan) -> dict[str, float]:
    """Bytes per chip: params, grads, optimizer state, activations, KV cache."""
    e, pb = DTYPE_BYTES[op.dtype], DTYPE_BYTES[op.param_dtype]
    train = op.mode == "train"
    n = local_params(op, plan)
    # master parameters, plus the step's cast copy in dtype when they are wider
    parts = {"params": as_float(n * pb + (n * e if casts_params(op) else 0)),
             "grads": as_float(n * pb) if train else 0.0,  # gradients in the parameter dtype
             "optimizer": as_float(n * ADAM_MOMENTS * ADAM_MOMENT_BYTES)
             if train and op.optimizer == "adam" else 0.0,
             "activations": _float(_activation_bytes(op, plan)),
             "kv_cache": 0.0}
    if train:  # accumulated over grad_accum steps, the gradients are summed in fp32
        acc = as_float(n * max(pb, GRAD_ACCUM_BYTES))
        g = plan.grad_accum
        parts["grads"] = np.where(g > 1, acc, parts["grads"]) if isinstance(g, np.ndarray) \
            else (acc if g > 1 else parts["grads"])
    if op.mode != "train":
        # K and V of every layer on the chip for its sequences: 2 e S L K H per sequence
        parts["kv_cache"] = _float(2 * DTYPE_BYTES[kv_dtype(op)] * plan.batch * (op.seq // plan.sp)
                                   * plan.layers * plan.kv_heads * op.head_dim)
    return parts


def _layer_activation_elements(op, plan: Plan) -> int:
    """Elements one layer keeps for its backward, per microbatch on one chip: the residual and
    normalised inputs of both blocks (split over tensor along tokens), q, k, v, the attention
    output, the MLP's up projection and activation; naive attention also keeps its scores."""
    M, D, H = plan.tokens, op.d_model, op.head_dim
    m_sp = _split_rows(M, plan, op)
    n = 4 * m_sp * D
    n = n + M * (plan.heads + 2 * plan.kv_heads) * H + M * plan.heads * H
    rows = _expert_rows(op, plan)[0] * _expert_rows(op, plan)[1] if op.experts else M
    n = n + rows * (_gate(op) + 1) * plan.d_ff
    if op.experts:
        n = n + M * op.experts  # router logits
    if op.attention == "naive":
        n = n + plan.micro_batch * plan.heads * plan.q_seq * plan.kv_seq
    return n


def _layer_dots_elements(op, plan: Plan):
    """Elements one layer keeps under remat dots (JAX's checkpoint_dots): the layer's input and
    the mid-layer residual (split over tensor along tokens) and the matmul outputs (q, k, v,
    the attention projection's partial sums are reduce-scattered into the residual; the MLP's
    up projection; the router logits)."""
    M, D, H = plan.tokens, op.d_model, op.head_dim
    n = 2 * _split_rows(M, plan, op) * D + M * (plan.heads + 2 * plan.kv_heads) * H
    rows = _expert_rows(op, plan)[0] * _expert_rows(op, plan)[1] if op.experts else M
    n = n + rows * _gate(op) * plan.d_ff
    if op.experts:
        n = n + M * op.experts
    return n


def _activation_bytes(op, plan: Plan) -> float:
    e = DTYPE_BYTES[op.dtype]
    layer = _layer_activation_elements(op, plan) * e
    head_rows = plan.tokens if op.mode == "train" else plan.micro_batch
    logits = head_rows * plan.vocab * (LOGITS_BYTES if op.mode == "train" else e)
    if op.mode != "train":
        return layer + logits  # one layer's working set at a time
    in_flight = _min(plan.microbatches, plan.pp) if plan.pp > 1 else 1  # 1F1B keeps pp in flight
    if op.remat == "full":
        # only each layer's input is kept; the layer being recomputed holds its full set
        kept = plan.layers * _split_rows(plan.tokens, plan, op) * op.d_model * e + layer
    elif op.remat == "dots":
        # the matmul outputs of every layer; the one being recomputed holds the rest too
        dots = _layer_dots_elements(op, plan) * e
        kept = plan.layers * dots + (layer - dots)
    else:
        kept = plan.layers * layer
    return kept * in_flight + logits


# ---- expansion ----------------------------------------------------------------------------

@dataclass
class Expansion:
    """A transformer op expanded in its workload (kept on the expanded Workload)."""

    spec: TransformerOp
    plan: Plan
    source: object                  # the Workload as written (specs.Workload)
    names: list[str] = field(default_factory=list)   # expanded op names, in order
    roles: dict[str, str] = field(default_factory=dict)  # name -> fwd | bwd | remat | optimizer
    groups: dict[str, str] = field(default_factory=dict)  # name -> embed | layer | lm_head | ...


def _split_rows(rows: int, plan: Plan, op) -> int:
    """Rows of the residual stream per chip: split over tensor along tokens (in decode the
    batch's rows; with fewer rows than chips a chip holds one)."""
    return _ceil(rows / plan.tp) if plan.tp > 1 else rows


def _expert_rows(op, plan: Plan) -> tuple[int, int]:
    """(experts active on this chip, token slots per expert) for one microbatch. Every chip
    receives tokens x top_k x capacity_factor slots after the all-to-all; with fewer slots than
    local experts only that many experts run (decode at batch 1 reads 2 of 8)."""
    slots = _ceil(plan.tokens * op.top_k * _capacity(op))
    active = _max(1, _min(plan.experts, slots))
    return active, _ceil(slots / active)


def _capacity(op) -> float:
    return op.capacity_factor if op.capacity_factor is not None else DEFAULT_CAPACITY_FACTOR


class _Ops:
    """Accumulates op dicts with their role and ledger group."""

    def __init__(self, op: TransformerOp):
        self.op = op
        self.items: list[tuple[dict, str]] = []

    def add(self, role: str, kind: str, name: str, repeat: int, dtype: str | None = None, **f):
        if not isinstance(repeat, np.ndarray):
            if repeat < 1:
                return
            repeat = as_int(repeat)
        d = {"kind": kind, "name": name, "dtype": dtype or self.op.dtype, "repeat": repeat}
        if kind == "matmul":  # weights in their storage dtype, arithmetic in compute_dtype
            wd = weight_dtype(self.op)
            if wd != d["dtype"]:
                d["weight_dtype"] = wd
            if self.op.compute_dtype is not None:
                d["compute_dtype"] = self.op.compute_dtype
        if kind in ("matmul", "attention") and self.op.precision != "default":
            d["precision"] = self.op.precision
        if kind != "collective":
            d["in_step"] = True  # one compiled program: no per-call overhead (calibrated.py)
        d.update(f)
        self.items.append((d, role))
        return d

    def coll(self, role, name, collective, axes, nbytes, repeat):
        if not axes or (not isinstance(nbytes, np.ndarray) and nbytes <= 0):
            return None  # a collective over one device costs nothing: no row
        return self.add(role, "collective", name, repeat, collective=collective,
                        axes=list(axes), bytes=_float(nbytes))


def _bwd_of(d: dict) -> dict:
    """The backward op of a forward compute op (same ledger path + '.bwd')."""
    b = {**d, "name": d["name"] + ".bwd"}
    if d["kind"] == "matmul":
        # dX = dY W^T and dW = X^T dY: two products over the same m, k, n (same FLOPs, same
        # bytes) -> batch 2
        b["batch"] = 2 * d.get("batch", 1)
    elif d["kind"] == "elementwise":
        # reads the forward's inputs and the output gradients, writes the input gradients
        b["inputs"] = d["inputs"] + d["outputs"]
        b["outputs"] = d["inputs"]
        b["flops_per_element"] = BWD_ELEMENTWISE_FLOP_FACTOR * d["flops_per_element"]
    elif d["kind"] == "attention":
        b["backward"] = True
    return b


def expand_op(op: TransformerOp, plan: Plan) -> list[tuple[dict, str]]:
    """The op dicts (validated later as Workload ops) and their roles, ledger order."""
    o = _Ops(op)
    e, pb = DTYPE_BYTES[op.dtype], DTYPE_BYTES[weight_dtype(op)]  # weights gathered as read
    train, decode = op.mode == "train", op.mode == "decode"
    D, H = op.d_model, op.head_dim
    P = plan
    M = P.tokens
    m_sp = _split_rows(M, P, op)
    g = _gate(op)
    mb = P.passes               # microbatches x grad_accum passes per step
    R = P.layers * mb           # layer executions per step on this chip
    RL = P.layers               # per layer once per step (gradients)
    tp_ax, sp_ax, ep_ax = P.on("tensor"), P.on("sequence"), P.on("expert")
    fsdp_ax, pp_ax = P.on("fsdp"), P.on("pipeline")

    # -- embedding ---------------------------------------------------------------------------
    fwd_embed = [o.add("fwd", "elementwise", "embed/lookup", mb, shape=[M, D], inputs=1,
                       outputs=1, flops_per_element=0.0)]
    # a vocab-split table gives each chip a partial [M, D]: reduce-scattered over tensor
    # straight into the token-split residual
    o.coll("fwd", "embed/tp/reduce_scatter", "reduce_scatter", tp_ax, M * D * e, mb)
    o.coll("fwd", "embed/fsdp/all_gather", "all_gather", fsdp_ax, _head_weights(op, P) * pb, 1)

    # -- one layer, forward ------------------------------------------------------------------
    layer: list[dict] = []      # forward compute ops of a layer (for backward and remat)
    layer_comm: list[dict] = []  # forward activation collectives (repeated by remat)

    def comp(d):
        if d is not None:
            layer.append(d)

    def comm(d):
        if d is not None:
            layer_comm.append(d)

    wd, wx = _layer_weights(op, P)
    o.coll("fwd", "layer/fsdp/all_gather", "all_gather", fsdp_ax, (wd + wx) * pb, R)
    comp(o.add("fwd", "elementwise", "layer/norm1", R, shape=[m_sp, D], inputs=2, outputs=2,
               flops_per_element=float(RESIDUAL_NORM_FLOPS)))
    # gather [M, D] before attention and before the MLP
    comm(o.coll("fwd", "layer/tp/all_gather", "all_gather", tp_ax, M * D * e, 2 * R))
    comp(o.add("fwd", "matmul", "layer/attn/qkv", R, m=M, k=D,
               n=(P.heads + 2 * P.kv_heads) * H))
    if not decode:  # K and V of the whole sequence from the other sequence shards
        comm(o.coll("fwd", "layer/attn/sp_all_gather", "all_gather", sp_ax,
                    2 * P.micro_batch * op.seq * P.kv_heads * H * e, R))
    attn = dict(batch=P.micro_batch, seq=P.q_seq, kv_seq=P.kv_seq, heads=P.heads,
                kv_heads=P.kv_heads, head_dim=H, causal=op.causal, impl=op.attention)
    if decode and kv_dtype(op) != op.dtype:  # the KV cache is read in its own dtype
        attn["kv_dtype"] = kv_dtype(op)
    comp(o.add("fwd", "attention", "layer/attn", R, **attn))
    if decode:  # each sequence shard attended to its part of the cache: combine the outputs
        comm(o.coll("fwd", "layer/attn/sp_all_reduce", "all_reduce", sp_ax,
                    M * P.heads * H * e, R))
    comp(o.add("fwd", "matmul", "layer/attn/o", R, m=M, k=P.heads * H, n=D))
    # partial sums of [M, D] back to the token-split residual, twice a layer
    comm(o.coll("fwd", "layer/tp/reduce_scatter", "reduce_scatter", tp_ax, M * D * e, 2 * R))
    comp(o.add("fwd", "elementwise", "layer/norm2", R, shape=[m_sp, D], inputs=2, outputs=2,
               flops_per_element=float(RESIDUAL_NORM_FLOPS)))
    act_in = 2 if g == 2 else 1
    act_flops = float(GATED_ACT_FLOPS if g == 2 else PLAIN_ACT_FLOPS)
    if op.experts:
        active, per = _expert_rows(op, P)
        comp(o.add("fwd", "matmul", "layer/moe/router", R, m=M, k=D, n=op.experts))
        # dispatch and combine: each chip's token slots across the expert group (V = all of
        # them), scaled by the capacity factor
        comm(o.coll("fwd", "layer/moe/all_to_all", "all_to_all", ep_ax,
                    P.ep * _ceil(M * op.top_k * _capacity(op)) * D * e, 2 * R))
        comp(o.add("fwd", "matmul", "layer/mlp/up", R, batch=active, m=per, k=D,
                   n=g * P.d_ff))
        comp(o.add("fwd", "elementwise", "layer/mlp/act", R, shape=[active * per, P.d_ff],
                   inputs=act_in, outputs=1, flops_per_element=act_flops))
        comp(o.add("fwd", "matmul", "layer/mlp/down", R, batch=active, m=per, k=P.d_ff, n=D))
    else:
        comp(o.add("fwd", "matmul", "layer/mlp/up", R, m=M, k=D, n=g * P.d_ff))
        comp(o.add("fwd", "elementwise", "layer/mlp/act", R, shape=[M, P.d_ff], inputs=act_in,
                   outputs=1, flops_per_element=act_flops))
        comp(o.add("fwd", "matmul", "layer/mlp/down", R, m=M, k=P.d_ff, n=D))

    # -- output layer, forward ---------------------------------------------------------------
    head_rows = M if train else P.micro_batch  # inference needs the last position's logits
    head = [o.add("fwd", "elementwise", "lm_head/norm", mb,
                  shape=[_split_rows(head_rows, P, op), D], inputs=1, outputs=1,
                  flops_per_element=float(NORM_FLOPS_PER_ELEMENT))]
    o.coll("fwd", "lm_head/tp/all_gather", "all_gather", tp_ax, head_rows * D * e, mb)
    o.coll("fwd", "lm_head/fsdp/all_gather", "all_gather", fsdp_ax,
           (_head_weights(op, P) + D) * pb, 1)
    head.append(o.add("fwd", "matmul", "lm_head/proj", mb, m=head_rows, k=D, n=P.vocab))
    if train:  # softmax cross-entropy and its gradient, over this chip's vocab shard
        o.add("fwd", "elementwise", "lm_head/loss", mb, shape=[head_rows, P.vocab], inputs=1,
              outputs=1, flops_per_element=float(LOSS_FLOPS_PER_LOGIT))

    # -- pipeline: activations to the next stage, per microbatch -----------------------------
    o.coll("fwd", "pipeline/send", "ppermute", pp_ax, m_sp * D * e, mb)

    if train:
        _backward(o, op, P, layer, layer_comm, head, fwd_embed, wd, wx, e, pb, head_rows, mb,
                  R, RL)
    return o.items


# the forward collectives a dots remat repeats: gathers whose inputs are recomputed (the norms'
# outputs, the sequence shards' K and V as attention needs them); matmul outputs are kept
DOTS_RECOMPUTED_COMM = ("layer/tp/all_gather", "layer/attn/sp_all_gather")


def _backward(o, op, P, layer, layer_comm, head, fwd_embed, wd, wx, e, pb, head_rows, mb,
              R, RL):
    D = op.d_model
    tp_ax = P.on("tensor")
    fsdp_ax, pp_ax = P.on("fsdp"), P.on("pipeline")
    o.coll("bwd", "pipeline/send.bwd", "ppermute", pp_ax, _split_rows(P.tokens, P, op) * D * e,
           mb)
    # output layer: its gradient flows back to the last layer
    for d in reversed(head):
        o.add("bwd", d["kind"], **{k: v for k, v in _bwd_of(d).items() if k != "kind"})
    o.coll("bwd", "lm_head/tp/reduce_scatter.bwd", "reduce_scatter", tp_ax, head_rows * D * e,
           mb)
    o.coll("bwd", "lm_head/fsdp/all_gather.bwd", "all_gather", fsdp_ax,
           (_head_weights(op, P) + D) * pb, 1)
    o.coll("bwd", "lm_head/fsdp/reduce_scatter.bwd", "reduce_scatter", fsdp_ax,
           (_head_weights(op, P) + D) * pb, 1)
    replicas = P.on("data", "sequence", "expert")  # axes holding the same non-expert weights
    o.coll("bwd", "lm_head/dp/all_reduce.bwd", "all_reduce", replicas,
           math.ceil((_head_weights(op, P) + D) / P.fsdp) * pb, 1)

    # layers: remat recomputes the forward (and its activation collectives) first
    if op.remat == "full":
        redo = layer_comm + layer
    elif op.remat == "dots":  # everything but the matmuls (whose outputs were kept)
        redo = ([d for d in layer_comm if d["name"] in DOTS_RECOMPUTED_COMM]
                + [d for d in layer if d["kind"] != "matmul"])
    else:
        redo = []
    for d in redo:
        o.add("remat", d["kind"], **{k: v for k, v in {**d, "name": d["name"] + ".remat"}
                                     .items() if k != "kind"})
    o.coll("bwd", "layer/fsdp/all_gather.bwd", "all_gather", fsdp_ax, (wd + wx) * pb, R)
    for d in reversed(layer):
        o.add("bwd", d["kind"], **{k: v for k, v in _bwd_of(d).items() if k != "kind"})
    for d in layer_comm:  # the transposes: all-gather <-> reduce-scatter, all-to-all again
        c = d["collective"]
        t = {"all_gather": "reduce_scatter", "reduce_scatter": "all_gather"}.get(c, c)
        name = d["name"].rsplit("/", 1)[0] + "/" + d["name"].rsplit("/", 1)[1].replace(
            c, t) + ".bwd"
        o.coll("bwd", name, t, d["axes"], d["bytes"], d["repeat"])
    # once per accumulation step: a chip holds only its shard of the gradients
    o.coll("bwd", "layer/fsdp/reduce_scatter.bwd", "reduce_scatter", fsdp_ax, (wd + wx) * pb,
           RL * P.grad_accum)
    if op.experts:
        o.coll("bwd", "layer/dp/all_reduce.bwd", "all_reduce", replicas,
               math.ceil(wd / P.fsdp) * pb, RL)
        o.coll("bwd", "layer/dp/all_reduce_experts.bwd", "all_reduce",
               P.on("data", "sequence"), math.ceil(wx / P.fsdp) * pb, RL)
    else:
        o.coll("bwd", "layer/dp/all_reduce.bwd", "all_reduce", replicas,
               math.ceil(wd / P.fsdp) * pb, RL)

    # embedding: the gradient rows scatter-added into the table
    if P.tp > 1:
        o.coll("bwd", "embed/tp/all_gather.bwd", "all_gather", tp_ax, P.tokens * D * e, mb)
    d = fwd_embed[0]
    o.add("bwd", "elementwise", "embed/lookup.bwd", d["repeat"], shape=d["shape"], inputs=2,
          outputs=1, flops_per_element=float(EMBED_BWD_FLOPS))
    if not op.tie_embeddings:  # tied: its gradient is reduced with the output layer's
        o.coll("bwd", "embed/fsdp/reduce_scatter.bwd", "reduce_scatter", fsdp_ax,
               _head_weights(op, P) * pb, 1)
        o.coll("bwd", "embed/dp/all_reduce.bwd", "all_reduce", replicas,
               math.ceil(_head_weights(op, P) / P.fsdp) * pb, 1)

    # optimizer: elementwise over this chip's parameters, computed in fp32 on the vector unit
    # whatever the parameter dtype. Bytes per parameter, read and written, counted in units of
    # the parameter dtype (Adam's fp32 moments are 4/pb units): Adam reads p, g, m, v and
    # writes p, m, v; SGD reads p, g and writes p
    n = local_params(op, P)
    pb = DTYPE_BYTES[op.param_dtype]
    if op.optimizer == "adam":
        mom = int(ADAM_MOMENT_BYTES // pb)
        o.add("optimizer", "elementwise", "optimizer/adam", 1, dtype=op.param_dtype, shape=[n],
              inputs=2 + ADAM_MOMENTS * mom, outputs=1 + ADAM_MOMENTS * mom,
              flops_per_element=float(ADAM_FLOPS_PER_PARAM), compute_dtype="fp32")
    else:
        o.add("optimizer", "elementwise", "optimizer/sgd", 1, dtype=op.param_dtype, shape=[n],
              inputs=2, outputs=1, flops_per_element=float(SGD_FLOPS_PER_PARAM),
              compute_dtype="fp32")
    if casts_params(op):  # the master copy cast to dtype once per step, for the next forward
        o.add("optimizer", "elementwise", "optimizer/cast", 1, dtype=op.param_dtype,
              out_dtype=op.dtype, shape=[n], inputs=1, outputs=1,
              flops_per_element=float(CAST_FLOPS))


def group_of(name: str) -> str:
    """The ledger group of an op path: its first segment (embed, layer, lm_head, pipeline,
    optimizer)."""
    return name.split("/", 1)[0].split(".", 1)[0]


# ---- one structure over arrays of batch sizes (perfmodel.model.batched, perfmodel.plan) ------

ARRAY_FIELDS = ("batch", "m", "k", "n", "seq", "kv_seq")  # op fields that are input cells as is
WHOLE_FIELDS = ("m", "k", "n", "batch", "seq", "kv_seq", "repeat")  # counts: ints in a spec


def array_plan(spec: TransformerOp, mesh, batch, microbatches, grad_accum):
    """The sharding plan of ``spec`` with its batch fields as arrays (one entry per
    configuration). ``batch`` is sequences per step of the whole job; every entry must divide
    into the batch shards x microbatches x grad_accum (the caller filters)."""
    base = make_plan(spec, mesh)
    b = batch // base.batch_shards
    micro = b // (microbatches * grad_accum)
    return dataclasses.replace(base, batch=b, microbatches=microbatches, grad_accum=grad_accum,
                               micro_batch=micro, tokens=micro * base.q_seq)


def row_inputs(kind: str, cell: dict, d: dict) -> dict:
    """The representative row's input cells with this structure's array-valued fields."""
    p = dict(cell)
    rep = d.get("repeat")
    if isinstance(rep, np.ndarray):
        p["repeat"] = rep.astype(float)
    for f in ARRAY_FIELDS:
        v = d.get(f)
        if isinstance(v, np.ndarray):
            p[f] = v.astype(float)
    if kind == "elementwise" and any(isinstance(x, np.ndarray) for x in d["shape"]):
        p["elements"] = math.prod(d["shape"]).astype(float)
    if kind == "collective" and isinstance(d.get("bytes"), np.ndarray):
        p["v_bytes"] = d["bytes"]
    return p


def first_row(d: dict) -> dict:
    """A ledger row of array-valued fields at its first configuration, as the scalar
    expansion writes it (whole-number fields as ints)."""
    def one(k, v):
        if isinstance(v, np.ndarray):
            v = v.flat[0].item()
            return int(v) if k in WHOLE_FIELDS else v
        return v
    out = {k: one(k, v) for k, v in d.items()}
    if "shape" in out:
        out["shape"] = [int(one("m", x)) for x in out["shape"]]
    return out
