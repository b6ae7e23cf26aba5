"""Validated specs: hardware chips and workloads, loaded from YAML through pydantic v2.

Every model forbids unknown keys. Quantities with units are parsed at this edge (units.py) and
held in SI. Load errors become ``SpecError``: one paragraph naming the file, the line where YAML
gives one, the field path, the bad value and what would be valid.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import types
import typing
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      PlainSerializer, PrivateAttr, ValidationError, WithJsonSchema,
                      field_validator, model_validator)

from . import gcpause, limits, units
from .errors import SpecError  # noqa: F401  (re-exported: callers import it from specs)
from .topology import job_lengths, map_mesh, parse_shape
from .trace import active as tracing
from .trace import as_float, check_numbers

# ---- scalar types -------------------------------------------------------------------------

# bytes per element; int4 and fp4 pack two to a byte
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1, "int8": 1, "int4": 0.5, "fp4": 0.5,
               # integer and bool arrays of real programs (indices, masks; perfmodel analyze)
               "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4,
               "uint64": 8, "bool": 1}
# dtypes without a rate of their own on any chip sheet: priced as fp32 (precision.py)
INDEX_DTYPES = ("int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32",
                 "float": "fp32", "float8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
                 "float4": "fp4", "float4_e2m1fn": "fp4", "nvfp4": "fp4", "mxfp4": "fp4",
                 "i8": "int8", "s8": "int8", "i16": "int16", "s16": "int16", "i32": "int32",
                 "s32": "int32", "i64": "int64", "s64": "int64", "u8": "uint8", "u16": "uint16",
                 "u32": "uint32", "u64": "uint64", "pred": "bool", "f32": "fp32", "f16": "fp16"}
# peak_flops may also list tf32: the tensor-core rate of an fp32 matmul at JAX's default
# precision on a GPU. It is a rate, not a storage dtype: data in tf32 is fp32 in memory.
PEAK_KEYS = (*(d for d in DTYPE_BYTES if d not in INDEX_DTYPES), "tf32")
PEAK_ALIASES = {**DTYPE_ALIASES, "tensorfloat32": "tf32"}


def _dtype(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower()
        v = DTYPE_ALIASES.get(v, v)
        if v in ("tf32", "tensorfloat32"):
            raise ValueError("tf32 is not a storage dtype (tf32 data is fp32 in memory): write "
                             "dtype: fp32; precision: default (or high) runs it on TF32 tensor "
                             "cores where the chip lists peak_flops.tf32")
    return v


def _peak_key(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower()
        return PEAK_ALIASES.get(v, v)
    return v


# the allowed values come from the tables above: a new dtype is one entry in DTYPE_BYTES
DType = Annotated[Literal[tuple(DTYPE_BYTES)], BeforeValidator(_dtype)]
PeakDType = Annotated[Literal[PEAK_KEYS], BeforeValidator(_peak_key)]
# JAX's lax.Precision names (and the aliases jax accepts as strings)
PRECISIONS = ("default", "high", "highest")
_PRECISION_ALIASES = {"fastest": "default", "bfloat16": "default", "bfloat16_3x": "high",
                      "tensorfloat32": "high", "float32": "highest"}


def _precision(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower().removeprefix("precision.")
        return _PRECISION_ALIASES.get(v, v)
    return v


Precision = Annotated[Literal["default", "high", "highest"], BeforeValidator(_precision)]


def _unit(kind: str, bare_ok: bool = False, positive: bool = False):
    def parse(v: Any) -> float:
        try:
            x = units.parse(v, kind, bare_ok=bare_ok)
        except units.UnitError as e:
            raise ValueError(str(e)) from None
        if positive and x == 0:  # a zero rate or size: every time would be infinite
            raise ValueError(f"{v!r} is zero, which is meaningless here (times would be "
                             f"infinite): write a positive value, {units.KINDS[kind]}")
        return x
    return BeforeValidator(parse)


def _unit_out(suffix: str):
    # python-mode dumps keep the unit so model_validate(model_dump()) round-trips exactly
    # (what-if variants are built that way, always validated); JSON dumps stay plain SI numbers.
    def ser(v, info):
        return v if info.mode == "json" else f"{v!r} {suffix}"
    return PlainSerializer(ser, when_used="unless-none")


def _unit_schema(kind: str, bare_ok: bool = False):
    # what an editor should accept: the quantity as written in YAML ("1.23 TB/s"), not the SI
    # float it becomes (validation rejects a bare number for a bandwidth, rate or time)
    text = {"type": "string", "description": units.KINDS[kind],
            "pattern": r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\S.*$"}
    if bare_ok:
        return WithJsonSchema({"anyOf": [text, {"type": "number", "minimum": 0}],
                               "description": units.KINDS[kind]})
    return WithJsonSchema(text)


Bytes = Annotated[float, _unit("bytes", bare_ok=True), _unit_schema("bytes", bare_ok=True)]
PosBytes = Annotated[float, _unit("bytes", bare_ok=True, positive=True),
                     _unit_schema("bytes", bare_ok=True)]
Seconds = Annotated[float, _unit("time"), _unit_out("s"), _unit_schema("time")]


def rate(kind: str, suffix: str):
    """The one type of every rate (a bandwidth, a FLOP rate): read with its unit at this edge,
    positive at load (a zero rate makes every time infinite), dumped with its unit. A new rate
    field is declared with it, e.g. ``Optional[FlopRate]`` or ``rate("flop_rate", "FLOP/s")``."""
    return Annotated[float, _unit(kind, positive=True), _unit_out(suffix), _unit_schema(kind)]


Bandwidth = rate("bandwidth", "B/s")
FlopRate = rate("flop_rate", "FLOP/s")
PosBandwidth, PosFlopRate = Bandwidth, FlopRate  # every rate is positive (older names)
# counts stop at 2**53, the largest whole number a float64 (the model's arithmetic) holds exactly
MAX_COUNT = limits.MAX_COUNT
Count = Annotated[int, Field(strict=True, gt=0, le=MAX_COUNT)]
NonNegCount = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


def _plain_name(v: str) -> str:
    # a newline, tab or bidirectional override in a name breaks every table it is shown in
    if v.isascii() and v.isprintable():  # the common case, one C call
        return v
    bad = next((c for c in v if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{v!r} contains the control character U+{ord(bad):04X} "
                         f"({unicodedata.name(bad, 'control')}); names are shown in tables: use "
                         f"printable characters only")
    return v


# the name of an op, a workload or a chip
Name = Annotated[str, Field(min_length=1, max_length=limits.MAX_NAME_CHARS),
                 AfterValidator(_plain_name)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- hardware -----------------------------------------------------------------------------

class Alternative(Spec):
    value: Union[str, float]
    source: str
    note: Optional[str] = None


class Interconnect(Spec):
    """Chip-to-chip links (filled in for collectives)."""

    topology: Optional[Literal["torus2d", "torus3d", "switched", "full_mesh", "none"]] = Field(
        None, description="torus2d | torus3d (TPU ICI), switched (NVLink through switches), "
        "full_mesh (a node whose GPUs are wired pairwise, e.g. AMD Infinity Fabric: n GPUs use "
        "n-1 links), none")
    links_per_chip: Optional[Count] = None
    link_bandwidth: Optional[Bandwidth] = Field(None, description="one-way, per link")
    hop_latency: Optional[Seconds] = None
    wraparound: Optional[Literal["whole_cubes_4", "full_axis_16", "none", "always"]] = None
    slice_shapes: Optional[Literal["cubes_4"]] = Field(
        None, description="which slice shapes exist (unset: any): cubes_4 = 2x2x1, 2x2x2, "
        "2x2x4, 2x4x4 or whole 4x4x4 cubes (every axis a multiple of 4)")
    max_chips: Optional[Count] = Field(None, description="largest slice, chips (the pod)")
    domain_size: Optional[Count] = Field(None, description="GPUs per scale-up domain (NVLink, "
                                         "or the full mesh): the N of a slice 'N' or 'MxN'")
    scale_out_bandwidth: Optional[Bandwidth] = Field(None, description="per GPU NIC, one-way")
    dcn_bandwidth: Optional[Bandwidth] = Field(None, description="per chip, between slices")
    host_bandwidth: Optional[Bandwidth] = None


class KindCalibration(Spec):
    """Fitted parameters for one kind of kernel: t = overhead + F/peak + B/bw (or max)."""

    peak_flops: FlopRate
    bandwidth: Bandwidth
    overhead: Seconds = 0.0
    combine: Literal["sum", "max"] = "sum"
    cache_bytes: Optional[Bytes] = None
    cache_bandwidth: Optional[Bandwidth] = None
    cache_sharpness: Optional[Annotated[float, Field(strict=True, gt=0, le=60, allow_inf_nan=False)]] = Field(
        None, description="how sharply the cache hit share falls past cache_bytes (default 50, about a step)")
    small_dim: Optional[NonNegFloat] = Field(None, description="matmul efficiency knee of m and n, elements")
    small_k: Optional[NonNegFloat] = Field(None, description="matmul efficiency knee of k, elements")


class Calibration(Spec):
    kinds: dict[str, KindCalibration]
    provenance: dict[str, Any] = {}


SUBLANE_ROWS = 8  # a TPU MXU streams activation rows 8 at a time (the VPU's sublanes)


class MatmulTile(Spec):
    """The matrix unit's tile: a product's m, k and n are padded up to these."""

    m: Count = Field(description="streamed activation rows (TPU: the 8 sublanes)")
    k: Count = Field(description="contraction dim (TPU: the MXU's side)")
    n: Count = Field(description="output columns (TPU: the MXU's side)")


def _tile(v: Any) -> Any:
    # a bare number is the systolic array's side: k and n pad to it, the streamed rows to 8
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"must be a whole number (the matrix unit's side), not a fraction "
                         f"(got {v!r}); or a mapping such as {{m: 8, k: 128, n: 128}}")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < 1:
            raise ValueError(f"must be a positive whole number (got {v!r}); or a mapping such "
                             f"as {{m: 8, k: 128, n: 128}}")
        v = int(v)
        return {"m": min(SUBLANE_ROWS, v), "k": v, "n": v}
    return v


def _slice_text(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # a GPU node written as a bare number: slice: 8
    return v


class Hardware(Spec):
    name: Name
    kind: Literal["tpu", "gpu", "cpu"]
    description: Optional[str] = None
    peak_flops: dict[PeakDType, PosFlopRate] = Field(
        min_length=1, description="matrix unit (MXU / tensor cores), dense, per dtype")
    vector_flops: Optional[dict[DType, PosFlopRate]] = Field(
        None, description="vector unit (TPU VPU / NVIDIA CUDA cores / AMD vector ALUs) per dtype, "
        "at least fp32; elementwise ops, softmax, norms and the optimizer run here (required on tpu and gpu)")
    transcendental_flops: Optional[dict[DType, PosFlopRate]] = Field(
        None, description="exp/log per second (TPU EUP / GPU SFU), where a source gives it")
    hbm_capacity: Bytes
    hbm_bandwidth: PosBandwidth
    onchip_memory: Bytes = Field(description="what one kernel instance can hold (VMEM, SMEM)")
    matmul_tile: Annotated[Optional[MatmulTile], BeforeValidator(_tile), WithJsonSchema({
        "anyOf": [{"type": "integer", "minimum": 1}, MatmulTile.model_json_schema(),
                  {"type": "null"}],
        "description": "matrix unit tile {m, k, n}; a bare number N means k = n = N, m = 8"})] = Field(
        None, description="matrix unit tile {m, k, n}; a bare number N means k = n = N, m = 8")
    flash_block_q: Optional[Count] = Field(
        None, description="flash attention query block rows, overriding the on-chip fit")
    interconnect: Interconnect = Interconnect()
    price_per_hour: Optional[NonNegFloat] = Field(None, description="USD per chip-hour")
    slices: Optional[list[Annotated[str, BeforeValidator(_slice_text)]]] = Field(
        None, description="slice shapes the chip is sold in (TPU '2x4'; GPU 'N' or 'MxN'); "
        "perfmodel plan searches them when --chips is not given")
    sources: dict[str, Union[str, list[str]]] = Field(description="citation per field")
    alternatives: dict[str, list[Alternative]] = {}
    calibration: Optional[Calibration] = None

    @model_validator(mode="after")
    def _cited(self) -> "Hardware":
        if self.kind in ("tpu", "gpu") and (not self.vector_flops
                                             or "fp32" not in self.vector_flops):
            raise ValueError(f"vector_flops.fp32 is required on a {self.kind}: elementwise ops, "
                             f"softmax, norms and the optimizer run on the vector unit (TPU "
                             f"VPU, NVIDIA CUDA cores, AMD vector ALUs), far below the matrix peak; add e.g. "
                             f"vector_flops: {{fp32: 14 TFLOP/s}} with a source")
        need = ["peak_flops", "hbm_capacity", "hbm_bandwidth", "onchip_memory"]
        need += [f for f in ("vector_flops", "transcendental_flops", "flash_block_q",
                             "matmul_tile", "price_per_hour", "slices")
                 if getattr(self, f) is not None]
        for text in self.slices or []:
            try:
                parse_shape(text)
            except SpecError as e:
                raise ValueError(f"slices: {e}") from None
        missing = [f for f in need if f not in self.sources]
        if missing:
            raise ValueError(f"sources must cite {', '.join(missing)} (every number needs a citation)")
        return self


# ---- workloads ----------------------------------------------------------------------------

class OpBase(Spec):
    name: Name
    dtype: DType = "bf16"
    compute_dtype: Optional[DType] = Field(
        None, description="the dtype the arithmetic runs in, which picks the peak (default: "
        "dtype); e.g. int8 for a W8A8 matmul, fp32 for an optimizer over bf16 parameters")
    # identical instances run one after another (a transformer's layers): the engine multiplies
    # the extensive cost columns (engine.REPEATED_COLUMNS) by it; times and bytes are totals
    repeat: Count = Field(1, description="identical instances run in sequence (e.g. layers); "
                                         "FLOPs, bytes and times are multiplied by it")
    calibrate_as: Optional[str] = Field(
        None, min_length=1, description="calibration group for t_calibrated (default: by kind, "
        "e.g. matmul, elementwise); e.g. softmax for a softmax written as an elementwise op")
    in_step: bool = Field(
        False, description="one kernel of a compiled step (a transformer's expanded ops): "
        "t_calibrated leaves out the per-call overhead fitted on separately dispatched kernels")


class MatmulOp(OpBase):
    kind: Literal["matmul"]
    m: Count
    k: Count
    n: Count
    batch: Count = 1
    weight_dtype: Optional[DType] = Field(
        None, description="storage dtype of the k x n operand (the weights; default dtype): "
        "int8 or int4 for weight-only quantization")
    precision: Precision = Field("default", description="JAX's Precision: default | high | "
                                 "highest (how an fp32 product runs; see perfmodel.precision)")


class ElementwiseOp(OpBase):
    kind: Literal["elementwise"]
    shape: list[Count] = Field(min_length=1)
    inputs: NonNegCount = 1
    outputs: NonNegCount = 1
    flops_per_element: NonNegFloat = 1.0
    in_place: bool = Field(False, description="outputs overwrite inputs (donated buffers): the "
                                              "working set a cache must hold is the inputs only")
    out_dtype: Optional[DType] = Field(None, description="dtype of the outputs (default dtype): "
                                       "a cast reads one dtype and writes another")
    bytes: Optional[PosBytes] = Field(
        None, description="the bytes moved, when they are not inputs + outputs arrays of shape "
        "x dtype (a fused kernel whose operands differ in shape or dtype, as perfmodel analyze "
        "writes them)")

    @model_validator(mode="after")
    def _moves(self):
        if self.inputs + self.outputs == 0:
            raise ValueError("inputs + outputs is 0: an elementwise op must read or write something")
        if math.prod(self.shape) > MAX_COUNT:
            raise ValueError(f"shape {self.shape} has more than 2**53 elements; use a smaller shape")
        return self


class AttentionOp(OpBase):
    kind: Literal["attention"]
    batch: Count
    seq: Count
    heads: Count
    head_dim: Count
    kv_heads: Optional[Count] = None
    kv_seq: Optional[Count] = None
    causal: bool = False
    impl: Literal["naive", "fused", "flash"] = "flash"
    backward: bool = Field(False, description="the backward pass (dQ, dK, dV) of this attention")
    kv_dtype: Optional[DType] = Field(None, description="storage dtype of K and V (the KV "
                                      "cache; default dtype)")
    precision: Precision = Field("default", description="JAX's Precision of the QK^T and AV "
                                 "products")

    @model_validator(mode="after")
    def _gqa(self):
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"kv_heads {self.kv_heads} must divide heads {self.heads}")
        # causal queries are the last seq of kv_seq positions: more queries than keys is not
        # a causal attention (and would give a negative kept fraction)
        if self.causal and self.kv_seq is not None and self.kv_seq < self.seq:
            raise ValueError(f"causal attention needs kv_seq ({self.kv_seq}) >= seq ({self.seq})")
        return self


COLLECTIVES = ("all_gather", "reduce_scatter", "all_reduce", "all_to_all", "ppermute",
               "broadcast")
COLLECTIVE_ALIASES = {"psum": "all_reduce", "psum_scatter": "reduce_scatter",
                      "allgather": "all_gather", "allreduce": "all_reduce",
                      "reducescatter": "reduce_scatter", "alltoall": "all_to_all",
                      "collective_permute": "ppermute", "sendrecv": "ppermute"}


def _aliased(aliases: dict[str, str]):
    """A before-validator: a name in any case, '-' or ' ' for '_', or one of its aliases."""
    def norm(v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower().replace("-", "_").replace(" ", "_")
            return aliases.get(v, v)
        return v
    return norm


def _one_or_more(hint: str):
    """A before-validator for a list of names: one name alone is a list of one; none is an error."""
    def names(v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, (list, tuple)) and len(v) == 0:
            raise ValueError(f"is empty: {hint}")
        return v
    return names




class CollectiveOp(OpBase):
    """A collective over mesh axes. V (``bytes``, or ``shape`` x dtype) is the full array:
    all_gather the gathered result; reduce_scatter and all_reduce the unreduced input on each
    device; all_to_all the whole array across the devices of the axes; ppermute what each
    device sends; broadcast the message."""

    kind: Literal["collective"]
    collective: Annotated[Literal[COLLECTIVES], BeforeValidator(_aliased(COLLECTIVE_ALIASES))]
    axes: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_one_or_more(
        "a collective runs over one or more mesh axes; name them, e.g. axes: [model] (the axes "
        "of the workload's top-level mesh)"))]
    bytes: Optional[PosBytes] = None
    shape: Optional[list[Count]] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _size(self):
        if (self.bytes is None) == (self.shape is None):
            raise ValueError("give exactly one of 'bytes' (e.g. bytes: 64 MiB) or 'shape' "
                             "(with dtype) for the collective's array size V"
                             + (", not both" if self.bytes is not None else ""))
        if len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes} repeats an axis; name each mesh axis once")
        if self.shape is not None and math.prod(self.shape) > MAX_COUNT:
            raise ValueError(f"shape {self.shape} has more than 2**53 elements; use a smaller shape")
        return self

    @property
    def v_bytes(self) -> float:
        if self.bytes is not None:
            return as_float(self.bytes)
        return as_float(math.prod(self.shape)) * DTYPE_BYTES[self.dtype]


STRATEGIES = ("data", "fsdp", "tensor", "sequence", "expert", "pipeline")
_STRATEGY_ALIASES = {"dp": "data", "tp": "tensor", "model": "tensor", "sp": "sequence",
                     "context": "sequence", "ep": "expert", "pp": "pipeline"}


_axis_names = _one_or_more("name the mesh axis (or axes) this strategy runs over, e.g. fsdp: "
                           "fsdp or data: [replica, data]")


AxisNames = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_axis_names),
                      WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1},
                                                {"type": "array", "minItems": 1,
                                                 "items": {"type": "string", "minLength": 1}}],
                                      "description": "a mesh axis name or a list of them"})]
PosFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]


# the fields a Hugging Face config.json can fill (perfmodel.model.hf_config); required in the
# validated op, but a file that names a config: need not write them
CONFIG_FIELDS = ("layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "vocab", "mlp")


def _config_or_fields(schema: dict) -> None:
    """JSON Schema as files are written: the architecture fields, or a config: that fills them."""
    req = schema.get("required", [])
    schema["required"] = [f for f in req if f not in CONFIG_FIELDS]
    schema["anyOf"] = [{"required": ["config"]}, {"required": [f for f in req
                                                               if f in CONFIG_FIELDS]}]


class TransformerOp(Spec):
    """A whole transformer step (train, prefill or decode). Not a kernel: loading the workload
    expands it (perfmodel.model.expand_workload) into per-layer matmul, attention, elementwise
    and collective ops with per-chip shapes, named as ledger paths (layer/attn/qkv)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_config_or_fields)

    kind: Literal["transformer"]
    name: Name
    layers: Count
    d_model: Count
    heads: Count
    kv_heads: Count
    head_dim: Count
    d_ff: Count
    vocab: Count
    mlp: Literal["gated", "plain"] = Field(description="gated: up and gate projections (SwiGLU)")
    dtype: DType = Field("bf16", description="activations and matmuls")
    param_dtype: DType = Field("bf16", description="parameters and gradients; in inference (or "
                               "when narrower than dtype) the layer matmuls read weights in it")
    compute_dtype: Optional[DType] = Field(None, description="the matmuls' arithmetic (default "
                                           "dtype): int8 with param_dtype int8 is W8A8")
    kv_dtype: Optional[DType] = Field(None, description="the KV cache (default dtype)")
    precision: Precision = Field("default", description="JAX's Precision of the matmuls")
    mode: Literal["train", "prefill", "decode"]
    batch: Count = Field(description="sequences per step (the whole job)")
    seq: Count = Field(description="tokens per sequence; for decode the KV length")
    attention: Literal["naive", "fused", "flash"] = "flash"
    causal: bool = True
    optimizer: Literal["adam", "sgd"] = Field("adam", description="train only; adam keeps two "
                                              "fp32 moments, sgd no state")
    remat: Literal["none", "dots", "full"] = Field(
        "none", description="train only: full recomputes the forward once in the backward; "
        "dots keeps the matmul outputs and recomputes the rest (JAX's checkpoint_dots)")
    grad_accum: Count = Field(1, description="train only: gradient accumulation steps per "
                              "optimizer step (batch stays per optimizer step)")
    parallelism: dict[Annotated[Literal[STRATEGIES], BeforeValidator(_aliased(_STRATEGY_ALIASES))], AxisNames] = \
        Field({}, description="strategy -> mesh axis name or list of names")
    overlap: bool = Field(True, description="headline figures at t_lower (true) or t_upper")
    microbatches: Optional[Count] = Field(None, description="pipeline microbatches per step "
                                          "(default: the pipeline size)")
    experts: Optional[Count] = Field(None, description="MoE: experts per layer")
    top_k: Optional[Count] = Field(None, description="MoE: experts per token")
    capacity_factor: Optional[PosFloat] = Field(None, description="MoE: expert slots per "
                                                "routed token (default 1.0)")
    tie_embeddings: bool = Field(False, description="the output layer shares the embedding's "
                                 "weights: counted once in params and memory, its matmul still "
                                 "in FLOPs")
    qkv_bias: bool = Field(False, description="the q, k and v projections carry a bias (Qwen2)")
    sliding_window: Optional[Count] = Field(
        None, description="attention over the last sliding_window tokens (Mistral, Gemma 2): "
        "not modelled, so a seq beyond it is refused; null prices full attention")
    config: Optional[str] = Field(
        None, min_length=1, description="a Hugging Face config.json (path relative to the "
        "workload file) that fills the architecture fields when the workload is loaded; "
        "fields written in the op override it")

    @model_validator(mode="after")
    def _consistent(self):
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads {self.kv_heads} must divide heads {self.heads} "
                             f"(grouped-query attention shares each KV head among "
                             f"heads/kv_heads query heads)")
        used: dict[str, str] = {}
        for strat, axes in self.parallelism.items():
            if len(set(axes)) != len(axes):
                raise ValueError(f"parallelism.{strat} {axes} repeats a mesh axis; name each "
                                 f"axis once")
            for a in axes:
                if a in used:
                    raise ValueError(f"mesh axis {a!r} is given to both {used[a]!r} and "
                                     f"{strat!r} in parallelism; each axis shards one way")
                used[a] = strat
        moe = [f for f in ("top_k", "capacity_factor") if getattr(self, f) is not None]
        if self.experts is None:
            if moe:
                raise ValueError(f"{', '.join(moe)} only apply to a mixture of experts: add "
                                 f"experts (e.g. experts: 8, top_k: 2) or remove them")
            if "expert" in self.parallelism:
                raise ValueError("parallelism.expert needs a mixture of experts: add experts "
                                 "and top_k, or shard another way")
        else:
            if self.top_k is None:
                raise ValueError(f"experts: {self.experts} needs top_k (experts per token, "
                                 f"e.g. top_k: 2)")
            if self.top_k > self.experts:
                raise ValueError(f"top_k {self.top_k} is more than experts {self.experts}")
        if self.sliding_window is not None and self.seq > self.sliding_window:
            raise ValueError(
                f"seq {self.seq} is longer than sliding_window {self.sliding_window}: the "
                f"model attends to the last {self.sliding_window} tokens only, which perfmodel "
                f"does not model; use seq <= {self.sliding_window}, or write sliding_window: "
                f"null in the op to price full attention over seq (an upper bound)")
        if self.microbatches is not None and "pipeline" not in self.parallelism:
            raise ValueError("microbatches applies to pipeline parallelism: add "
                             "parallelism.pipeline or remove microbatches")
        if self.mode == "train" and self.param_dtype in ("int4", "fp4"):
            raise ValueError(f"param_dtype {self.param_dtype} is for inference only (no "
                             f"optimizer updates 4-bit weights): use mode prefill or decode, or "
                             f"param_dtype bf16 or fp32 for training")
        if self.mode != "train":
            # a non-default value (a dump of the spec repeats the defaults, so those pass)
            extra = [f for f in ("optimizer", "remat", "grad_accum")
                     if getattr(self, f) != type(self).model_fields[f].default]
            if extra:
                raise ValueError(f"{' and '.join(extra)} only apply to mode: train (mode is "
                                 f"{self.mode}); remove {'them' if len(extra) > 1 else 'it'}")
        return self


OP_SPECS: dict[str, type[Spec]] = {
    "matmul": MatmulOp, "elementwise": ElementwiseOp, "attention": AttentionOp,
    "collective": CollectiveOp, "transformer": TransformerOp,
}

Op = Annotated[Union[MatmulOp, ElementwiseOp, AttentionOp, CollectiveOp, TransformerOp],
               Field(discriminator="kind")]


def op_spec(d: dict):
    """An op spec from a dict (a transformer's expansion writes them), validated. While
    perfmodel.trace records, built without validation from its traced numbers, which keep
    what validation checks as guards (trace.check_numbers)."""
    cls = OP_SPECS[d["kind"]]
    if not tracing():
        try:
            return cls.model_validate(d)
        except ValidationError as e:  # sizes each valid alone whose products are not (2**53)
            x = e.errors()[0]
            raise SpecError(f"a transformer expands to kernel {d.get('name')!r}, which is "
                            f"invalid: {field_path(x['loc'])}: "
                            f"{x['msg'].removeprefix('Value error, ')}; the model's sizes "
                            f"(batch, seq, d_model, d_ff, heads, head_dim, vocab) are too large "
                            f"together (the whole model unsharded counts, for its FLOPs): use "
                            f"realistic values.") from None
    op = cls.model_construct(**d)
    check_numbers(op)
    return op


class Workload(Spec):
    name: Name
    description: Optional[str] = None
    slice: Annotated[Optional[str], BeforeValidator(_slice_text)] = Field(
        None, description="chips as a shape: TPU '4x4', '8x16', '4x4x8'; GPU 'N' or 'MxN' nodes")
    slices: Count = Field(1, description="slices joined by DCN; the outermost mesh axis spans them")
    mesh: Optional[dict[str, Count]] = Field(
        None, description="mesh axis -> size, outermost first; axes take the slice's axes in order")
    ops: list[Op] = Field(min_length=1)

    @field_validator("slice")
    @classmethod
    def _slice_parses(cls, v):
        if v is not None:
            try:
                parse_shape(v)
            except SpecError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("mesh")
    @classmethod
    def _mesh_fits(cls, v, info):
        if v is None:
            return v
        if not v:
            raise ValueError("is empty: name the mesh axes and their sizes, e.g. "
                             "mesh: {data: 16, model: 16}")
        if math.prod(v.values()) > limits.MAX_DEVICES:
            raise ValueError(f"mesh {dict(v)} has {math.prod(v.values()):,} devices, more than "
                             f"the limit of {limits.MAX_DEVICES:,} (MAX_DEVICES; larger than any "
                             f"machine built): check the sizes")
        if info.data.get("slice"):
            try:
                map_mesh(v, job_lengths(info.data["slice"], info.data.get("slices", 1)))
            except SpecError as e:
                raise ValueError(f"{e} (slice {info.data['slice']!r})") from None
        return v

    @field_validator("ops")
    @classmethod
    def _unique_names(cls, ops):
        # rows, workbook names and sweep tables are keyed by op name
        seen: dict[str, int] = {}
        for i, op in enumerate(ops):
            if op.name in seen:
                raise ValueError(f"ops[{i}] is named {op.name!r} like ops[{seen[op.name]}]; op "
                                 f"names must be unique within a workload: rename one")
            seen[op.name] = i
        return ops

    @field_validator("ops")
    @classmethod
    def _collective_axes(cls, ops, info):
        mesh = info.data.get("mesh")
        for i, op in enumerate(ops):
            if not isinstance(op, CollectiveOp):
                continue
            if not mesh:
                if "mesh" not in info.data:
                    continue  # the mesh itself failed; that error is reported
                raise ValueError(f"ops[{i}] ({op.name!r}) is a collective but the workload has "
                                 f"no top-level 'mesh': add one, e.g. mesh: {{data: 8}}, and a "
                                 f"slice")
            unknown = [a for a in op.axes if a not in mesh]
            if unknown:
                close = difflib.get_close_matches(unknown[0], list(mesh), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"ops[{i}] ({op.name!r}).axes: unknown mesh axis "
                                 f"{', '.join(map(repr, unknown))}; {hint}the mesh has "
                                 f"{', '.join(mesh)}")
        return ops

    @field_validator("ops")
    @classmethod
    def _one_transformer(cls, ops):
        # whether the model's sizes fit the mesh is the model layer's rule (make_plan), checked
        # when the workload is expanded (perfmodel.model.expand_workload)
        found = [(i, op) for i, op in enumerate(ops) if isinstance(op, TransformerOp)]
        if len(found) > 1:
            raise ValueError(f"ops[{found[1][0]}] ({found[1][1].name!r}): a workload holds at most "
                             f"one transformer op; put each model in its own workload")
        return ops

    # set by perfmodel.model.expand_workload on the expanded workload: the transformer op it
    # came from, its sharding plan and the workload as written (never part of the spec itself)
    _expansion: Any = PrivateAttr(default=None)


# ---- loading ------------------------------------------------------------------------------

try:  # libyaml's C parser: about ten times faster; the pure-Python one where it is missing
    _Loader = yaml.CSafeLoader
    YAML_C = True
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader
    YAML_C = False


def read_input(path: Path, what: str = "a YAML file",
               missing: str = "Check the path, or use a built-in name.") -> bytes:
    """The bytes of an input file: a regular file of at most ``limits.MAX_FILE_BYTES``.

    A FIFO, a device (/dev/zero, /dev/urandom) or a directory is refused before it is opened,
    and no more than the limit is read (a /proc file reports size 0). ``missing`` is the fix
    said when there is no such file."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file. {missing}") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot be read ({e.strerror}); check the path and its "
                        f"permissions.") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(f"{path}: is a directory, expected {what}.")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{path}: is not a regular file (a pipe, device or socket), expected "
                        f"{what}; save the input to a file first.")
    cap = limits.MAX_FILE_BYTES
    if st.st_size > cap:
        raise SpecError(f"{path}: is {st.st_size:,} bytes, more than the input limit of "
                        f"{cap:,} bytes (MAX_FILE_BYTES, {cap // 2**20} MiB); split it or check "
                        f"that it is the file you meant.")
    try:
        with open(path, "rb") as f:
            raw = f.read(cap + 1)
    except OSError as e:
        raise SpecError(f"{path}: cannot be read ({e.strerror}); check its permissions.") from None
    if len(raw) > cap:
        raise SpecError(f"{path}: is more than the input limit of {cap:,} bytes "
                        f"(MAX_FILE_BYTES, {cap // 2**20} MiB); split it or check that it is "
                        f"the file you meant.")
    return raw


def read_text(path: Path, kind: str, what: str | None = None,
              missing: str = "Check the path, or use a built-in name.") -> str:
    """An input file's text (``read_input``'s checks, then UTF-8 without NUL bytes, a leading
    byte-order mark dropped); ``kind`` names the format the errors expect (YAML, JSON)."""
    raw = read_input(path, what or f"a {kind} file", missing)
    if b"\x00" in raw:
        raise SpecError(f"{path}: looks like a binary file, expected {kind} text.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: is not UTF-8 text ({e.reason} at byte {e.start}); expected "
                        f"{kind}.") from None
    return text.removeprefix("\ufeff")  # a byte-order mark (Windows editors) is not content


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return (data, node tree for line numbers).

    The text is parsed once (libyaml where present) into a node tree; the tree is checked
    (depth, alias expansion, keys written twice) before the data are constructed from it."""
    path = Path(path)
    text = read_text(path, "YAML")
    if not text.strip():
        raise SpecError(f"{path}: is empty; expected a YAML mapping with at least 'name'.")
    # libyaml reads UTF-8 bytes faster than a str
    loader = _Loader(text.encode("utf-8") if YAML_C else text)
    try:
        with gcpause.paused():  # the collector would rescan the growing node tree again and again
            node = loader.get_single_node()
            if node is not None:
                _check_tree(path, node)
                data = _construct(loader, node)
            else:
                data = None
    except yaml.YAMLError as e:
        raise SpecError(_yaml_problem(path, _python_parser_error(text, e))) from None
    except RecursionError:  # the pure-Python composer on deep nesting (libyaml stops at 1000)
        raise SpecError(_too_deep(path, None)) from None
    finally:
        loader.dispose()
    if data is None:
        raise SpecError(f"{path}: is empty; expected a YAML mapping with at least 'name'.")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of keys to values "
                        f"(name: ..., ...), got {type(data).__name__}.")
    return data, node


# tags the C composer resolves plain scalars to (yaml.resolver); anything else is constructed by
# PyYAML's SafeConstructor (timestamps, binary, sets, explicit tags, merge keys)
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _TAG + "seq", _TAG + "map"
_DEC = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")  # no '_', no octal '017', no sexagesimal
_DECF = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?\Z")
_BOOLS = {"yes": True, "no": False, "true": True, "false": False, "on": True, "off": False}


def _construct(loader, root: yaml.Node) -> Any:
    """Python data from a checked node tree: what ``loader.construct_document`` returns, built
    about three times faster for the plain mappings, lists and scalars specs are made of
    (aliases share one object, as PyYAML's do); any other node is left to PyYAML."""
    memo: dict[int, Any] = {}
    Scalar, Seq, Map = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode

    def build(n):
        t = type(n)
        if t is Scalar:
            tag, v = n.tag, n.value
            if tag == _STR:
                return v
            if tag == _INT and _DEC.match(v):
                return int(v)
            if tag == _FLOAT and _DECF.match(v):
                return float(v)
            if tag == _BOOL and v.lower() in _BOOLS:
                return _BOOLS[v.lower()]
            if tag == _NULL:
                return None
            return loader.construct_object(n, deep=True)
        k = id(n)
        if k in memo:
            return memo[k]
        if t is Seq and n.tag == _SEQ:
            out = memo[k] = []
            out.extend(build(c) for c in n.value)
            return out
        if t is Map and n.tag == _MAP and not any(kn.tag == _TAG + "merge" for kn, _ in n.value):
            out = memo[k] = {}
            for kn, vn in n.value:
                key = build(kn)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", n.start_mark, "found unhashable key",
                        kn.start_mark) from None
                out[key] = build(vn)
            return out
        return memo.setdefault(k, loader.construct_object(n, deep=True))

    return build(root)


# a syntax error in a file this small is parsed again by the pure-Python parser, whose messages
# say more (it shows the offending character: found character '\t'); past it libyaml's stands
_REPARSE_CHARS = 2**20


def _python_parser_error(text: str, e: yaml.YAMLError) -> yaml.YAMLError:
    if not YAML_C or not isinstance(e, yaml.MarkedYAMLError) or len(text) > _REPARSE_CHARS \
            or "maximum nesting depth" in str(e):
        return e
    try:
        yaml.SafeLoader(text).get_single_node()
    except yaml.MarkedYAMLError as again:
        return again
    except RecursionError:
        return e
    return e


def _yaml_problem(path: Path, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "maximum nesting depth" in problem:
        return _too_deep(path, mark.line + 1 if mark else None)
    if "could not determine a constructor" in str(e):
        problem = (f"{problem}; object-constructing YAML tags are not allowed, "
                   "write plain values")
    else:
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None:
            problem += f" ({context} started on line {cmark.line + 1})"
        problem += ("; fix the YAML syntax (indentation, a missing ':' or closing bracket, "
                    "or quote values containing ': ' or '#')")
    return f"{path}:{where}: YAML error: {problem}."


def _too_deep(path: Path, line: int | None) -> str:
    where = f" line {line}:" if line else ""
    return (f"{path}:{where} YAML nested more than {limits.MAX_YAML_DEPTH} levels deep (the "
            f"limit MAX_YAML_DEPTH); a spec needs a handful: flatten the structure.")


def _check_tree(path: Path, root: yaml.Node) -> None:
    """Refuse a node tree nested too deep, whose aliases expand past ``limits.MAX_YAML_NODES``
    nodes, or with a key written twice in one mapping. One iterative walk that visits each
    node once (aliases share nodes, so the tree is a graph: a visited set, never a re-walk);
    scalars are counted where they sit, only mappings and sequences are walked."""
    expanded: dict[int, int] = {}  # id(container) -> values it stands for, aliases expanded
    on_path: set[int] = set()      # containers being walked: one met again is a cycle
    # values written in the file (each counted once): what aliases add is expanded - written,
    # and that is what the limit bounds (a large file is bounded by MAX_FILE_BYTES instead)
    written = 0
    stack: list = [(root, 1, False)] if not isinstance(root, yaml.ScalarNode) else []
    cap, deep = limits.MAX_YAML_NODES, limits.MAX_YAML_DEPTH
    Scalar, Mapping = yaml.ScalarNode, yaml.MappingNode
    while stack:
        n, depth, done = stack.pop()
        k = id(n)
        kids = [x for kv in n.value for x in kv] if type(n) is Mapping else n.value
        if done:
            on_path.discard(k)
            size = 1 + sum(1 if type(c) is Scalar else expanded[id(c)] for c in kids)
            if size - written > cap:  # so far written >= this value's own written part
                raise SpecError(
                    f"{path}: line {n.start_mark.line + 1}: its aliases (*name) expand to more "
                    f"than {cap:,} values beyond those written (the limit MAX_YAML_NODES); a "
                    f"spec needs far fewer: write the values out or use fewer nested aliases.")
            expanded[k] = size
            continue
        if k in expanded:
            continue
        if depth > deep:
            raise SpecError(_too_deep(path, n.start_mark.line + 1))
        if type(n) is Mapping:
            dup = _duplicate_key(n)
            if dup is not None:
                key, first, again = dup
                raise SpecError(f"{path}: line {again}: key '{key}' appears twice in one "
                                f"mapping (first on line {first}); YAML would keep only the "
                                f"last and silently drop the other: remove or rename one of "
                                f"them.")
        on_path.add(k)
        stack.append((n, depth, True))
        written += 1
        for c in kids:
            if type(c) is Scalar:
                written += 1
                continue
            if id(c) in on_path:  # an alias inside its own anchor: infinite expansion
                raise SpecError(f"{path}: line {c.start_mark.line + 1}: an alias refers to a "
                                f"value that contains it, which expands without end; write "
                                f"the value out.")
            if id(c) not in expanded:
                stack.append((c, depth + 1, False))


def _duplicate_key(n: yaml.MappingNode) -> tuple[str, int, int] | None:
    """The first key written twice in one mapping: (key, first line, second line)."""
    seen: dict[str, int] = {}
    for k, _ in n.value:
        if isinstance(k, yaml.ScalarNode) and k.value != "<<":
            if k.value in seen:
                return k.value, seen[k.value], k.start_mark.line + 1
            seen[k.value] = k.start_mark.line + 1
    return None


def line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, as deep as it goes."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    best, node = k.start_mark.line + 1, v
                    break
            else:
                continue  # pydantic's tag segments (e.g. 'matmul') are not YAML keys
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            best = node.start_mark.line + 1
        else:
            break
    return best


def bare_type(tp) -> tuple[Any, bool]:
    """A field's annotation without its Annotated/Optional wrappers (Optional[Count] -> int),
    and whether it was Optional."""
    optional = False
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            if len(args) != 1:
                return tp, optional
            tp = args[0]
        else:
            return tp, optional


def _unwrap(tp):
    """Strip Annotated/Optional/containers down to the type at the next path level."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        tp = models[0] if len(models) == 1 else (args[0] if len(args) == 1 else tp)
    return tp


def _fields_at(model: type[BaseModel], loc: tuple, required: bool = False) -> list[str]:
    """Field names valid at the parent of ``loc`` (for 'did you mean'); only the required ones
    with ``required``."""
    tp: Any = model
    for key in loc[:-1]:
        tp = _unwrap(tp)
        if isinstance(key, str) and key in OP_SPECS:
            tp = OP_SPECS[key]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and key in tp.model_fields:
            tp = tp.model_fields[key].annotation
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
    tp = _unwrap(tp)
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return []
    return [n for n, f in tp.model_fields.items() if f.is_required() or not required]


def field_path(loc: tuple) -> str:
    """A pydantic error location as the user wrote it: ops[2].seq."""
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        elif key in OP_SPECS and out.endswith("]"):
            continue  # discriminator tag pydantic inserts
        elif key == "[key]":
            out += " (the key)"  # a mapping key failed, e.g. an unknown dtype under peak_flops
        else:
            out += ("." if out else "") + str(key)
    return out or "(top level)"


def _int_msg(bad) -> str:
    """Why a value is not a whole number, in the user's terms."""
    if isinstance(bad, bool):
        return "must be a whole number, not a boolean"
    if isinstance(bad, float):
        if bad != bad or bad in (float("inf"), float("-inf")):
            return "must be a whole number, not NaN or infinity"
        if bad.is_integer():
            return f"must be a whole number written without a decimal point, e.g. {int(bad)}"
        return "must be a whole number, not a fraction"
    if isinstance(bad, str):
        try:
            x = float(bad)
        except ValueError:
            pass
        else:
            if re.fullmatch(r"\s*[-+]?\d+[eE][-+]?\d+\s*", bad) and x.is_integer():
                # YAML 1.1 reads 1e3 (no dot, no exponent sign) as text, not as a number
                return (f"must be a whole number; YAML reads {bad!r} as text, not a number: "
                        f"write {int(x)}")
            return "must be a number, not a quoted string (remove the quotes)"
    return "must be a whole number, e.g. 1, 128 or 4096"


def _literal_hint(e: dict) -> str:
    """'must be one of ...' plus the closest allowed value for a Literal field."""
    allowed = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
    close = difflib.get_close_matches(str(e.get("input")), allowed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"must be one of {', '.join(allowed)}{hint}"


def explain(err: ValidationError, path: Path, node, model: type[BaseModel]) -> str:
    errors = err.errors()
    # unknown keys first; a "missing" field the unknown-key hint already names is dropped
    # (hed_dim -> "did you mean 'head_dim'?" covers "missing head_dim")
    suggested = set()
    for e in errors:
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), _fields_at(model, e["loc"]), n=1)
            if close:
                suggested.add(e["loc"][:-1] + (close[0],))
    errors = sorted((e for e in errors if not (e["type"] == "missing" and e["loc"] in suggested)),
                    key=lambda e: e["type"] != "extra_forbidden")
    parts = []
    for e in errors[:4]:
        loc = e["loc"]
        line = line_of(node, loc)
        where = f"{path}" + (f" line {line}" if line else "")
        field = field_path(loc)
        msg = e["msg"].removeprefix("Value error, ")
        bad = e.get("input")
        ctx = e.get("ctx", {})
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            parts.append(f"{where}: unknown key {field!r}; {hint}valid keys here: {', '.join(valid)}")
            continue
        if e["type"] == "missing":
            need = _fields_at(model, loc, required=True)
            parts.append(f"{where}: missing required field {field!r}"
                         + (f" (required here: {', '.join(need)})" if need else ""))
            continue
        if e["type"] == "union_tag_invalid":
            msg = f"unknown op kind {bad.get('kind') if isinstance(bad, dict) else bad!r}; valid kinds: {', '.join(OP_SPECS)}"
            parts.append(f"{where}: {field}: {msg}")
            continue
        if e["type"] == "union_tag_not_found":
            parts.append(f"{where}: {field}: missing 'kind'; valid kinds: {', '.join(OP_SPECS)}")
            continue
        if e["type"] in ("int_type", "int_from_float", "int_parsing"):
            msg = _int_msg(bad)
        elif e["type"] in ("float_type", "float_parsing"):
            msg = "must be a number, e.g. 0, 1 or 2.5"
        elif e["type"] == "finite_number":
            msg = "must be a finite number, not NaN or infinity"
        elif e["type"] == "literal_error":
            msg = _literal_hint(e)
        elif e["type"] == "greater_than" and ctx.get("gt") == 0:
            msg = "must be a positive whole number (zero or negative is meaningless here)"
        elif e["type"] == "greater_than_equal" and ctx.get("ge") == 0:
            msg = "must be zero or positive"
        elif e["type"] == "less_than_equal":
            msg = f"must be at most {ctx.get('le')}"
            if ctx.get("le") == MAX_COUNT:
                msg += " (2**53, the largest count a float64 holds exactly: MAX_COUNT)"
        elif e["type"] == "string_too_long" and ctx.get("max_length") == limits.MAX_NAME_CHARS:
            msg = (f"is longer than {limits.MAX_NAME_CHARS} characters (MAX_NAME_CHARS); names "
                   f"are shown in tables: shorten it")
        elif e["type"] == "list_type":
            msg = "must be a list (YAML lines starting with '- ', or [a, b])"
        elif e["type"] in ("dict_type", "model_type", "model_attributes_type"):
            msg = "must be a mapping of keys to values (key: value, or {key: value})"
        elif e["type"] == "string_type":
            msg = "must be text (quote it if it looks like a number or a boolean)"
        elif e["type"] in ("bool_type", "bool_parsing"):
            msg = "must be true or false"
        said = re.search(rf"(?<![\w.']){re.escape(repr(bad))}(?![\w.'])", msg)
        got = repr(bad) if len(repr(bad)) <= 60 else repr(bad)[:40] + "..."
        shown = "" if isinstance(bad, (dict, list)) or said else f" (got {got})"
        parts.append(f"{where}: {field}: {msg}{shown}")
    more = len(errors) - 4
    tail = f" ... and {more} more problem(s)." if more > 0 else "."
    return "; ".join(parts) + tail


def load_model(path: Path, model: type[BaseModel], data: dict | None = None, node=None):
    """Validate a YAML file (or already-read data) against a spec model."""
    if data is None:
        data, node = read_yaml(path)
    try:
        with gcpause.paused():  # as in read_yaml: many new objects, none of them garbage yet
            return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(explain(e, Path(path), node, model)) from None


def elem_bytes(dtype: str) -> float:
    return DTYPE_BYTES[dtype]


