"""Which rate prices an op: the matrix unit at some dtype and precision, or the vector unit.

One decision, used by the engine (t_compute) and the calibrated model alike. ``rate(hw, op)``
returns the hardware parameter (a name in ``engine.hw_env``), how many passes the op takes on
it, and a label for tables (``runs_as``).

Units. Matmuls and attention's two products run on the matrix unit (TPU MXU, GPU tensor
cores) at ``peak_flops``; elementwise ops, softmax (inside attention too), norms, the loss, the
optimizer and a reduction's adds run on the vector unit (TPU VPU; NVIDIA's CUDA cores; AMD's
SIMD vector ALUs, the VALU of the CDNA compute unit) at ``vector_flops``; attention's exponentials on the transcendental unit (GPU SFU, TPU EUP) at
``transcendental_flops`` where the chip gives it (FlashAttention-3: on an H100 the exp of a
128-wide head costs half as long as its two products). A dtype with no vector rate uses fp32's (the TPU VPU computes in fp32). A
chip with no ``vector_flops`` (a CPU: the same SIMD units do both) uses its matrix rate.

Matrix rate of a product whose arithmetic is in dtype d (``compute_dtype``, default ``dtype``)
at JAX's ``precision`` (default | high | highest):

| d | TPU | GPU | CPU |
|---|---|---|---|
| fp32, default | 1 bf16 MXU pass, fp32 accumulate | TF32 tensor cores (peak_flops.tf32) | peak_flops.fp32 |
| fp32, high | 3 bf16 passes (bf16_3x) | TF32 tensor cores | peak_flops.fp32 |
| fp32, highest | 6 bf16 passes | vector fp32 (peak_flops.fp32, else vector_flops.fp32) | peak_flops.fp32 |
| listed in peak_flops | that peak | that peak | that peak |
| not listed | the next wider listed dtype: int4 -> int8 -> bf16, fp4 -> fp8 -> bf16, fp16 <-> bf16, then fp32's rule | | |

Pass counts: XLA's TPU lowering splits an fp32 operand into bf16 pieces; HIGH (bf16_3x) takes 3
bf16 products and HIGHEST 6 (jax.lax.Precision docs: "bfloat16_3x", "float32"; XLA's
``--xla_tpu_*`` dot algorithms BF16_BF16_F32_X3 and _X6). JAX's DEFAULT on GPU lets cuBLAS use
TF32 for fp32 inputs on Ampere and later (jax.default_matmul_precision docs, NVIDIA A100 and
H100 datasheets for the dense TF32 rates). A chip listing ``peak_flops.fp32`` on a GPU is taken as
its full-fp32 rate and used for ``highest``, labelled "vector fp32": on the NVIDIA chips it is the
CUDA-core rate, on the AMD ones the datasheet's "FP32 matrix" peak, the same number as its "FP32
vector" peak (MI300X, MI325X: 163.4 TFLOPS both; MI355X: 157.3), so the label holds for either.

Labels (``runs_as``, the roofline legends) say what a pass count means: "MXU bf16 x3 (fp32 high:
3 passes)" is an fp32 product at JAX precision high, 3 bf16 passes, priced at a third of the
bf16 rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace

from .formula import Expr, Ref
from .specs import DTYPE_BYTES, INDEX_DTYPES, PRECISIONS

PASSES_TPU_FP32 = {"default": 1, "high": 3, "highest": 6}
# where a dtype has no matrix rate of its own: the next dtype that runs it (wider, same family)
FALLBACK = {"int4": "int8", "int8": "bf16", "fp4": "fp8", "fp8": "bf16", "fp16": "bf16",
            "bf16": "fp16"}
MATRIX_KINDS = ("matmul", "attention")  # kinds whose main work is on the matrix unit


@dataclass(frozen=True)
class Rate:
    key: str          # hardware parameter name, e.g. peak_flops_bf16 or vector_flops_fp32
    passes: int       # the op's FLOPs take this many passes at that rate
    runs_as: str      # for tables: "MXU bf16 x3 (fp32 high: 3 passes)", "tensor tf32", "vector fp32"


def compute_dtype(op) -> str:
    return getattr(op, "compute_dtype", None) or op.dtype


def matrix_rate(hw, dtype: str, precision: str = "default") -> Rate:
    """The matrix-unit rate of a product computed in ``dtype`` at ``precision``."""
    unit = {"tpu": "MXU", "gpu": "tensor"}.get(hw.kind, "matrix")
    peaks = hw.peak_flops
    if dtype == "fp32":
        if hw.kind == "tpu":
            passes = PASSES_TPU_FP32[precision]
            d = "bf16" if "bf16" in peaks else next(iter(peaks))
            return Rate(f"peak_flops_{d}", passes, f"{unit} {d}" + (
                f" x{passes} (fp32 {precision}: {passes} passes)" if passes > 1 else ""))
        if hw.kind == "gpu":
            if precision != "highest" and "tf32" in peaks:
                return Rate("peak_flops_tf32", 1, f"{unit} tf32")
            if "fp32" in peaks:
                return Rate("peak_flops_fp32", 1, "vector fp32")  # see the module docstring
            return vector_rate(hw, "fp32")
        if "fp32" in peaks:
            return Rate("peak_flops_fp32", 1, f"{unit} fp32")
        return _widest(hw, unit)
    seen = set()
    d = dtype
    while d not in peaks and d in FALLBACK and d not in seen:
        seen.add(d)
        d = FALLBACK[d]
    if d in peaks:
        return Rate(f"peak_flops_{d}", 1, f"{unit} {d}")
    return matrix_rate(hw, "fp32", precision)


def _widest(hw, unit: str) -> Rate:
    d = min(hw.peak_flops, key=lambda k: hw.peak_flops[k])  # the slowest listed: the safe one
    return Rate(f"peak_flops_{d}", 1, f"{unit} {d}")


def vector_rate(hw, dtype: str) -> Rate:
    """The vector-unit rate for ``dtype`` (fp32's when the chip lists none for it)."""
    vec = hw.vector_flops
    if not vec:  # a CPU: one set of SIMD units
        r = matrix_rate(hw, dtype)
        return Rate(r.key, r.passes, r.runs_as.replace("matrix", "SIMD"))
    d = dtype if dtype in vec else "fp32"
    return Rate(f"vector_flops_{d}", 1, f"vector {d}")


def rate(hw, op) -> Rate:
    """The rate that prices ``op``'s main FLOPs (``peak_used``)."""
    d = _rated(compute_dtype(op))
    if op.kind in MATRIX_KINDS:
        return matrix_rate(hw, d, getattr(op, "precision", "default"))
    return vector_rate(hw, d)


# Each chip's rate for every (unit, dtype, precision) is a named derived hardware parameter, a
# formula over that chip's own peaks (matrix_rate_fp32_high = peak_flops_bf16 / 3 on a TPU,
# = peak_flops_tf32 on an H100). An op's formulas refer to the name, so a workbook whose active
# chip changes (or whose peaks are edited) re-prices every op as that chip runs it.
# the dtypes with rates of their own; any other (an integer index, a bool mask) is priced as fp32
RATE_DTYPES = tuple(d for d in DTYPE_BYTES if d not in INDEX_DTYPES)


def _rated(dtype: str) -> str:
    return dtype if dtype in RATE_DTYPES else "fp32"


def matrix_name(dtype: str, precision: str = "default") -> str:
    dtype = _rated(dtype)
    return f"matrix_rate_fp32_{precision}" if dtype == "fp32" else f"matrix_rate_{dtype}"


def vector_name(dtype: str) -> str:
    return f"vector_rate_{_rated(dtype)}"


def transcendental_name(dtype: str) -> str:
    return f"transcendental_rate_{_rated(dtype)}"


RATE_NAMES = ([matrix_name(d) for d in RATE_DTYPES if d != "fp32"]
              + [matrix_name("fp32", p) for p in PRECISIONS]
              + [vector_name(d) for d in RATE_DTYPES]
              + [transcendental_name(d) for d in RATE_DTYPES])


def rate_name(op) -> str:
    d = compute_dtype(op)
    if op.kind in MATRIX_KINDS:
        return matrix_name(d, getattr(op, "precision", "default"))
    return vector_name(d)


@dataclass(frozen=True)
class Roof:
    label: str        # the unit and dtype (Rate.runs_as): "MXU bf16", "vector fp32"
    name: str         # the derived rate (engine.hw_env, a Hardware row): the op's peak_used


def roof(hw, op) -> Roof:
    """The roof a roofline chart or sweep draws for ``op`` on ``hw``: the rate that prices its
    main FLOPs (its ``peak_used``), never the chip's largest peak. ``op`` is an op spec or its
    result row (a mapping with kind, compute_dtype and precision, as engine rows have)."""
    if isinstance(op, Mapping):
        op = SimpleNamespace(kind=op["kind"], dtype=op["compute_dtype"],
                             precision=op.get("precision") or "default")
    return Roof(rate(hw, op).runs_as, rate_name(op))


def _expr(r: Rate) -> Expr:
    return Ref(r.key) / r.passes if r.passes != 1 else Ref(r.key)


def rate_exprs(hw) -> dict[str, Expr]:
    """Every derived rate of ``hw`` as a formula over its own parameters."""
    out = {matrix_name(d): _expr(matrix_rate(hw, d)) for d in RATE_DTYPES if d != "fp32"}
    out.update({matrix_name("fp32", p): _expr(matrix_rate(hw, "fp32", p)) for p in PRECISIONS})
    out.update({vector_name(d): _expr(vector_rate(hw, d)) for d in RATE_DTYPES})
    out.update({transcendental_name(d): _expr(transcendental_rate(hw, d)) for d in RATE_DTYPES})
    return out


def transcendental_rate(hw, dtype: str) -> Rate:
    """exp/log per second: the chip's transcendental unit (TPU EUP, GPU SFU) where a source
    gives its rate, fp32's for a dtype it does not list; else the vector unit's rate (an exp
    then costs one vector FLOP, as before the unit was modelled)."""
    tr = hw.transcendental_flops or {}
    d = dtype if dtype in tr else "fp32"
    if d in tr:
        return Rate(f"transcendental_flops_{d}", 1, f"transcendental {d}")
    return vector_rate(hw, dtype)
