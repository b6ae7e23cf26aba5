"""Cross-check the op models' FLOPs and bytes against XLA (``perfmodel check``).

For every bench kernel (perfmodel/calibrate/kernels.py) we compile the kernel the way bench runs
it, ``jax.jit(f).lower(*args).compile().cost_analysis()``, with ``jax.ShapeDtypeStruct``
arguments (nothing is allocated or run), and compare XLA's ``flops`` and ``bytes accessed`` with
our model's ``flops`` and ``hbm_bytes`` (summed over the kernel's ops, ``kernels.op_costs``).
Where it applies we also run ``jax.experimental.roofline`` (needs absl-py) and compare its
``unfused_flops`` (every jaxpr primitive counted, nothing fused away). A kernel made of several
jitted calls (``ew_add_unfused``) is compiled call by call and the costs summed, since each call
is its own executable.

FLOPs: a row is ``ok`` when XLA's count is within ``TOLERANCE`` (1%) of ours (F); otherwise it
must satisfy the kernel kind's named relation below to be ``explained``; anything else is a
``MISMATCH`` (``perfmodel check`` exits 1). A relation states XLA's count as our F plus what
the two counting conventions differ by, computed from the shapes, so a wrong model (F off) fails
it. The relation is asserted three ways: on the unoptimised (lowered) HLO, exactly what it
predicts; on ``transcendentals``; and on the compiled count, the lowered one plus the compile
artefacts listed below (each documented, each a term computed from the shapes).
tests/test_check.py pins every relation on kernels outside the suite as well.

How XLA counts (jax 0.10, CPU backend; read off the optimised HLO of the suite's kernels):
- dot: exactly 2 M N K (2 per multiply-add), as our matmul model.
- elementwise arithmetic, compare and select: 1 per output element; ``exp`` is counted under
  ``transcendentals``, not ``flops``.
- a reduction of C elements to one: C - 1 operations (max or add).
- softmax's ``e / sum(e)`` is one reciprocal per row and one multiply per element.
- loops (``while``; a Pallas kernel in interpret mode is a loop over its grid): the body is
  counted once, whatever the trip count.
Compile artefacts (the compiled count minus the lowered one):
- bf16 on CPU: the backend has no bf16 arithmetic; compilation wraps every bf16 operation in
  converts (each non-constant operand to f32, the result back to bf16) and counts one flop per
  converted element. (Hence: compare in fp32 on CPU.)
- fusion recomputation: a cheap producer fused into two consumer fusions is counted twice:
  attention's 1/sqrt(D) scale is recomputed in both the max-reduction fusion and the exp fusion
  on some shapes (grouped-query layouts, short KV): + N (one per score), or not.
- padded reductions: on some sizes XLA CPU splits a row reduction into 32-wide windows and pads
  rows whose length C > 32 is not a multiple of 32; the padding is counted: + R ((-C) mod 32)
  per row reduction, for 0, 1 or all of the kernel's row reductions (softmax and attention have
  two: max and sum). The suite's rows are multiples of 32; kernels outside it show this.

jax.experimental.roofline counts per jaxpr primitive: dot_general 2 M N K; elementwise 1 per
output element, ``exp`` included; ``reduce_sum`` C - 1 per output; ``reduce_max`` nothing (no
rule); bool ``and``, compare and ``select_n`` 1 per element. It raises on ``pallas_call`` and has
no rule for loops (a loop would be counted per iteration at best), so such kernels are skipped
and the output says so.

Relations (F: our flops; N: elements, or attention scores B H S T; R: rows, B H S for attention;
C: row length; X: XLA's count on the lowered HLO; roofline: its unfused_flops):
- ``matmul-exact`` (matmul): X = F = 2 batch M K N; roofline F.
- ``bf16-cpu-converts`` (bf16 matmul and elementwise kernels on CPU): X = F, compiled = F +
  converted elements: matmul batch (M K + K N + M N); x*0.5+1 two ops x (1 operand + 1
  result) = 4N; a sum of n terms n-1 adds x (2 operands + 1 result) = 3 (n-1) N; roofline F.
- ``pallas-loop-body`` (matmul_pallas, interpret mode): X = one grid step = the block dot
  2 bm bk bn plus the ``o += ...`` accumulation bm bn = F / steps + bm bn, steps = (M/bm)(N/bn)
  (K/bk) (plus a few dozen scalar index operations, inside the 1%). Roofline skipped
  (pallas_call).
- ``elementwise-exact`` (ew_scale, ew_add_fused, ew_add_unfused summed over its calls): X = F.
- ``reduce-n-1`` (reduce_sum): X = F - R: C - 1 adds per row where ours counts C. Roofline the
  same.
- ``softmax-xla`` (softmax): ours F = 5N (max, subtract, exp, sum, divide); XLA: max (C-1) R +
  subtract N + sum (C-1) R + reciprocal R + multiply N = 4N - R = F - N - R, and N
  transcendentals (the exp). Roofline F - N: no reduce_max rule (-N), exp counted, the
  ``max(-inf, rowmax)`` guard of jax.nn.softmax (+R) and the sum's C - 1 (-R).
- ``attention-xla`` (attention_naive, attention_dpa, attention_decode; every score is computed,
  as impl naive): ours F = 4 D N (QK^T and PV) + 5N (softmax); XLA adds the 1/sqrt(D) scale
  (+N, which we do not count), counts exp as a transcendental (-N) and the two row reductions
  as C - 1 (-2R) plus the reciprocal (+R): X = F - R, and N transcendentals. Causal adds the
  mask: N selects + S T compares of the [S, T] mask (+ S for the naive kernel's
  ``arange(S) + (T - S)`` offset when T != S; XLA folds the +0). Roofline F (guard +R and sum
  -R cancel) + causal: naive N + S T + S; dpa's ``tril`` mask 2N + 3 S T (iota + 0, compare,
  select over [S, T]; bool and, select over the scores).

Bytes are expected to differ (XLA reports what its fusions read and write); the ratio is
reported, and only gross inconsistencies are flagged (``bytes_flag``): XLA or our model moving
over 10% less than the kernel's own arguments and results (``BYTES_SLACK``; the reduce_sum
model neglects its 1/C-sized output), or a ratio beyond ``BYTES_GROSS``. The main
patterns, per kernel kind, are explained in ``BYTES_NOTES`` (printed under the table).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..specs import SpecError
from . import kernels as K

TOLERANCE = 0.01
BYTES_GROSS = 8.0   # a bytes ratio beyond this (either way) is flagged
BYTES_SLACK = 0.10  # moving 10% less than the kernel's arguments and results is flagged
HARDWARE = "cpu-local"  # only for hbm_bytes of models that depend on the chip (not the naive ones)

BYTES_NOTES = {
    "matmul": "fp32: equal (one read of each operand, one write). bf16 on CPU: 5x, the converts "
              "are separate passes (read bf16, write f32 per operand; the dot on f32; convert "
              "the f32 result back).",
    "matmul_pallas": "interpret mode: one grid step's block slices plus the loop state, counted "
                     "once: not comparable with the whole matmul's traffic.",
    "ew_scale": "equal: one fused loop reads the input and writes the output.",
    "ew_add_fused": "equal: one fused loop reads the n inputs and writes the output.",
    "ew_add_unfused": "equal: each call reads two arrays and writes one.",
    "reduce_sum": "equal within 0.4%: XLA also counts the 1/C-sized output, the model neglects it.",
    "softmax": "2.5x with fewer than 4096 rows: XLA CPU makes three passes (max+exp writes e; "
               "sum reads e; normalise reads e, writes y: 5N vs the model's 2N); 2.0x with 4096 "
               "rows or more: one fused pass (2N) plus a copy into the donated buffer, which "
               "that fusion cannot write in place (without donation it reports exactly 2N).",
    "attention_naive": "0.3-1.2x: the model sends the score matrix through memory four times; "
                       "XLA fuses QK^T with the scale and max and, on some shapes, the whole "
                       "softmax, so fewer round trips; causal 2.1x: the mask select adds passes "
                       "over the scores.",
    "attention_dpa": "as attention_naive; grouped-query 2.8x: the query-group layout adds "
                     "transposes of Q, O and the scores.",
    "attention_decode": "about 1.02x: the KV cache dominates; the small score rows add ~2%.",
}

@dataclass(frozen=True)
class Relation:
    """What XLA (and jax.experimental.roofline) should report for one kernel, given our flops F
    and the kernel's shapes.

    ``lowered``: XLA's flops on the unoptimised HLO; ``converts``: flops compilation always adds
    (bf16 on CPU); ``artefacts``: (flops, most times, note) that compilation may add 0 to
    ``most`` times each (fusion recomputation, padded reductions); ``roofline``:
    jax.experimental.roofline's unfused_flops, None when it does not apply (``roofline_skip``
    says why).
    """

    name: str
    reason: str
    lowered: float
    transcendentals: float = 0.0
    converts: float = 0.0
    artefacts: tuple[tuple[float, int, str], ...] = ()
    roofline: float | None = None
    roofline_skip: str = ""

    def compiled_values(self) -> list[tuple[float, str]]:
        """Every admissible compiled count with the artefacts it assumes, plain first."""
        out = [(self.lowered + self.converts, ())]
        for value, most, note in self.artefacts:
            if not value:
                continue
            label = (lambda k: f"{note} x{k}") if most > 1 else (lambda k: note)
            out = [(v + k * value, notes + (label(k),) if k else notes)
                   for v, notes in out for k in range(most + 1)]
        seen, uniq = set(), []
        for v, notes in sorted(out, key=lambda x: len(x[1])):
            if v not in seen:
                seen.add(v)
                uniq.append((v, "; ".join(notes)))
        return uniq


# ---- relations, one per kernel kind ------------------------------------------------------

RELATIONS: dict = {}


def _relation(*kinds):
    def deco(fn):
        for k in kinds:
            RELATIONS[k] = fn
        return fn
    return deco


def _prod(xs) -> int:
    return int(math.prod(int(x) for x in xs))


class _NoRelation(Exception):
    pass


def _converts(backend: str, dtype: str, converts: float | None, what: str) -> float:
    """Flops compilation adds for a kernel in ``dtype``: on CPU a bf16 kernel gains ``converts``
    (None: not derived for this kind, so no relation). Other backends have bf16 arithmetic and
    are assumed to add nothing (not checked here: this machine has a CPU)."""
    if dtype == "fp32" or backend != "cpu":
        return 0.0
    if dtype != "bf16" or converts is None:
        raise _NoRelation(f"{dtype} on {backend}: the converts XLA inserts are not derived for "
                          f"{what}; compare in fp32")
    return float(converts)


def _exact_or_converts(backend, dtype, F, converts, what: str, conv_note: str, exact: str,
                       exact_note: str) -> Relation:
    """XLA counts exactly our F, plus (bf16 on CPU) the converts it inserts."""
    conv = _converts(backend, dtype, converts, what)
    if conv:
        return Relation("bf16-cpu-converts", f"{BF16_NOTE}{conv_note}", F, converts=conv, roofline=F)
    return Relation(exact, exact_note, F, roofline=F)


def _padded(R: int, C: int, reductions: int) -> tuple[float, int, str]:
    """The padded-reduction artefact of ``reductions`` row reductions over R rows of C."""
    pad = (-C) % 32 if C > 32 else 0
    return (float(R * pad), reductions, f"rows of {C} padded to {C + pad} in a reduction")


BF16_NOTE = "bf16 emulated in f32 on CPU: +1 flop per converted element"


@_relation("matmul")
def _rel_matmul(kernel, p, dtype, backend, F):
    b, m, k, n = p.get("batch", 1), p["m"], p["k"], p["n"]
    return _exact_or_converts(backend, dtype, F, b * (m * k + k * n + m * n), "matmul",
                              " (x, y in; result out): +batch(MK+KN+MN)", "matmul-exact",
                              "dot = 2MNK")


@_relation("matmul_pallas")
def _rel_pallas(kernel, p, dtype, backend, F):
    m, k, n = p["m"], p["k"], p["n"]
    bm, bk, bn = p["block_m"], p["block_k"], p["block_n"]
    if not p.get("interpret"):
        raise _NoRelation("a compiled Pallas kernel is a custom call XLA cannot see into")
    if dtype != "fp32":
        raise _NoRelation(f"Pallas interpret in {dtype}: converts not derived; compare in fp32")
    steps = (m // bm) * (n // bn) * (k // bk)
    return Relation("pallas-loop-body",
                    f"interpret-mode loop over {steps} grid steps, body counted once: "
                    f"F/{steps} + bm*bn", F / steps + bm * bn,
                    roofline_skip="pallas_call (jax.experimental.roofline has no rule for it; "
                    "its grid loop would be counted once)")


@_relation("ew_scale")
def _rel_ew_scale(kernel, p, dtype, backend, F):
    N = _prod(p["shape"])
    return _exact_or_converts(backend, dtype, F, 2 * 2 * N, "x*0.5+1",
                              ": 2 ops x (operand + result) = +4N", "elementwise-exact",
                              "1 flop per element per op")


@_relation("ew_add_fused", "ew_add_unfused")
def _rel_ew_add(kernel, p, dtype, backend, F):
    N, n = _prod(p["shape"]), p["inputs"]
    return _exact_or_converts(backend, dtype, F, 3 * (n - 1) * N, "a sum chain",
                              f": {n - 1} add(s) x (2 operands + result) = +{3 * (n - 1)}N",
                              "elementwise-exact", "1 flop per element per add")


@_relation("reduce_sum")
def _rel_reduce(kernel, p, dtype, backend, F):
    N, C = _prod(p["shape"]), int(p["shape"][-1])
    R = N // C
    _converts(backend, dtype, None, "reduce_sum")
    return Relation("reduce-n-1", f"a sum of C={C} is C-1 adds: F - R ({R} rows)", F - R,
                    artefacts=(_padded(R, C, 1),), roofline=F - R)


@_relation("softmax")
def _rel_softmax(kernel, p, dtype, backend, F):
    N, C = _prod(p["shape"]), int(p["shape"][-1])
    R = N // C
    _converts(backend, dtype, None, "softmax")
    return Relation("softmax-xla", "exp is a transcendental, max and sum C-1 per row, divide = "
                    "R reciprocals + N multiplies: F - N - R", F - N - R, float(N),
                    artefacts=(_padded(R, C, 2),), roofline=F - N)


@_relation("attention_naive", "attention_dpa", "attention_decode")
def _rel_attention(kernel, p, dtype, backend, F):
    B, S, H, D, T, Kh = K._attn_dims(p)
    N, R = B * H * S * T, B * H * S
    causal = bool(p.get("causal"))
    if kernel == "attention_dpa" and p.get("implementation") not in (None, "xla"):
        raise _NoRelation(f"dot_product_attention implementation {p.get('implementation')!r} is "
                          f"a custom call; the relation covers implementation 'xla'")
    _converts(backend, dtype, None, "attention")
    x, roof, mask = F - R, F, ""
    if causal:
        if kernel == "attention_dpa":
            x += N + S * T
            roof += 2 * N + 3 * S * T
        else:
            x += N + S * T + (S if T != S else 0)
            roof += N + S * T + S
        mask = " + causal mask (N selects, S*T compares)"
    return Relation("attention-xla", f"scale +N, exp a transcendental -N, reductions -R: F - R"
                    f"{mask}", x, float(N),
                    artefacts=((float(N), 1, "scale recomputed in two fusions"),
                               _padded(R, T, 2)), roofline=roof)


def relation(kernel: str, params: dict, dtype: str = "fp32", backend: str = "cpu",
             ours: float | None = None) -> Relation | None:
    """The named relation for one kernel row, given our flops ``ours`` (default: the op
    model's). None when no relation is derived (then only a match within TOLERANCE passes)."""
    fn = RELATIONS.get(kernel)
    if fn is None:
        return None
    if ours is None:
        ours = sum(_model_flops(op) for op in K.ops_list(kernel, params, dtype))
    try:
        return fn(kernel, params, dtype, backend, ours)
    except _NoRelation as e:
        return Relation("none", str(e), math.nan)


def _model_flops(op) -> float:
    from ..engine import evaluate_op

    hw = _hardware()
    return float(evaluate_op(op, hw)["flops"])


_HW: list = []


def _hardware():
    if not _HW:
        from .. import catalog

        _HW.append(catalog.load_hardware(HARDWARE))
    return _HW[0]


def expected_xla_flops(kernel: str, params: dict, dtype: str = "fp32", backend: str = "cpu",
                       ours: float | None = None) -> float:
    """XLA's compiled flops for one kernel predicted from our flops and its shapes (without
    the optional compile artefacts; NaN when no relation is derived)."""
    rel = relation(kernel, params, dtype, backend, ours)
    return math.nan if rel is None else rel.compiled_values()[0][0]


# ---- running jax ---------------------------------------------------------------------------

@contextmanager
def abstract_kernel_data():
    """Build kernels with ``jax.ShapeDtypeStruct`` arguments instead of filled arrays: lowering
    and cost analysis need shapes only, and the full suite's arrays would take over 1 GiB."""
    import jax

    real = K._data

    def spec(shape, dtype, seed):
        return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), K._jnp_dtype(dtype))

    K._data = spec
    try:
        yield
    finally:
        K._data = real


def cost_dict(ca) -> dict:
    """``cost_analysis()`` as one dict: it is a dict, a list of dicts (older jax: one per
    program, all the same) or None."""
    if ca is None:
        return {}
    if isinstance(ca, (list, tuple)):
        ca = next((c for c in ca if c), None) or {}
    return dict(ca)


def _primitives(jaxpr, out: set | None = None) -> set:
    """Names of every primitive in a jaxpr, nested jaxprs (jit, cond, while bodies) included."""
    out = set() if out is None else out
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (list, tuple)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


LOOP_PRIMITIVES = {"while", "scan", "fori_loop"}


def _executables(fn, args):
    """The executables one call of ``fn`` dispatches: ``fn`` itself when jitted, else (a Python
    chain of jitted calls, as ew_add_unfused) each call, with abstract arguments."""
    import jax
    from jax.extend.core import jaxpr_as_fun

    if hasattr(fn, "lower"):
        return [(fn, tuple(args))]
    closed = jax.make_jaxpr(fn)(*args)
    calls = []
    for eqn in closed.jaxpr.eqns:
        if eqn.primitive.name not in ("jit", "pjit"):
            raise SpecError(f"kernel function runs {eqn.primitive.name!r} outside a jitted call; "
                            f"perfmodel check compiles jitted calls only")
        calls.append((jax.jit(jaxpr_as_fun(eqn.params["jaxpr"])),
                      tuple(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype)
                            for v in eqn.invars)))
    return calls


def _nbytes(tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree_util.tree_leaves(tree))


def measure(kernel) -> dict:
    """XLA's and jax.experimental.roofline's counts for one kernel (summed over its calls)."""
    import jax

    with abstract_kernel_data():
        built = kernel.build()
    out = {"xla_flops": 0.0, "xla_bytes": 0.0, "xla_transcendentals": 0.0,
           "xla_flops_lowered": 0.0, "min_bytes": 0.0, "calls": 0}
    prims: set = set()
    for fn, args in _executables(built.fn, built.args):
        lowered = fn.lower(*args)
        comp = cost_dict(lowered.compile().cost_analysis())
        low = cost_dict(lowered.cost_analysis()) if hasattr(lowered, "cost_analysis") else {}
        out["xla_flops"] += float(comp.get("flops", 0.0))
        out["xla_bytes"] += float(comp.get("bytes accessed", 0.0))
        out["xla_transcendentals"] += float(comp.get("transcendentals", 0.0))
        if not low or out["xla_flops_lowered"] is None:  # no lowered analysis on this backend
            out["xla_flops_lowered"] = None
        else:
            out["xla_flops_lowered"] += float(low.get("flops", 0.0))
        out["min_bytes"] += _nbytes(args) + _nbytes(jax.eval_shape(fn, *args))
        out["calls"] += 1
        prims |= _primitives(jax.make_jaxpr(fn)(*args).jaxpr)
    skip = ("pallas_call (jax.experimental.roofline has no rule for it)"
            if "pallas_call" in prims else
            "loop (while/scan): its body would be counted once" if prims & LOOP_PRIMITIVES
            else "")
    out["roofline_skip"] = skip
    out["roofline_flops"] = out["roofline_bytes"] = None
    if not skip:
        try:
            from jax.experimental import roofline as jr
        except ImportError as e:  # absl-py missing
            out["roofline_skip"] = f"jax.experimental.roofline unavailable ({e})"
        else:
            _, res = jr.roofline(built.fn)(*built.args)
            out["roofline_flops"] = float(res.unfused_flops)
            out["roofline_bytes"] = float(res.unfused_hbm_bytes)
    return out


# ---- the check -----------------------------------------------------------------------------

def _close(a: float, b: float, tol: float = TOLERANCE) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    if b == 0:
        return abs(a) <= tol
    return abs(a / b - 1) <= tol


def _ratio(a, b):
    return None if a is None or not b else a / b


def shape_text(kernel) -> str:
    p = kernel.params
    if kernel.name.startswith("matmul"):
        s = f"{p['m']}x{p['k']}x{p['n']}"
        if p.get("batch", 1) > 1:
            s = f"{p['batch']}*{s}"
        if "block_m" in p:
            s += f" blk{p['block_m']}" + (" interp" if p.get("interpret") else "")
        return s
    if kernel.name.startswith("attention"):
        B, S, H, D, T, Kh = K._attn_dims(p)
        s = f"B{B} S{S} H{H} D{D}"
        s += f" K{Kh}" if Kh != H else ""
        s += f" T{T}" if T != S else ""
        return s + (" causal" if p.get("causal") else "")
    s = "x".join(str(x) for x in p["shape"])
    return s + (f" n={p['inputs']}" if kernel.name.startswith("ew_add") else "")


def check_kernel(kernel, hw=None, backend: str | None = None) -> dict:
    """One row: our and XLA's (and jax roofline's) counts, the relation and the status."""
    if hw is None:
        hw = _hardware()
    if backend is None:
        import jax

        backend = jax.default_backend()
    ours = K.op_costs(kernel.name, kernel.params, kernel.dtype, hw)
    m = measure(kernel)
    F, X = ours["flops"], m["xla_flops"]
    rel = relation(kernel.name, kernel.params, kernel.dtype, backend, ours=F)
    row = {"kernel": kernel.name, "shape": shape_text(kernel), "dtype": kernel.dtype,
           "params": kernel.params, "our_flops": F, "xla_flops": X, "flops_ratio": _ratio(X, F),
           "xla_flops_lowered": m["xla_flops_lowered"],
           "xla_transcendentals": m["xla_transcendentals"], "our_bytes": ours["hbm_bytes"],
           "xla_bytes": m["xla_bytes"], "bytes_ratio": _ratio(m["xla_bytes"], ours["hbm_bytes"]),
           "min_bytes": m["min_bytes"], "calls": m["calls"],
           "roofline_flops": m["roofline_flops"], "roofline_bytes": m["roofline_bytes"],
           "roofline_ratio": _ratio(m["roofline_flops"], F),
           "roofline_skip": m["roofline_skip"]}
    problems, explained = [], []
    # XLA (compiled)
    if rel is not None and rel.name != "none":
        row["relation"] = rel.name
        row["relation_reason"] = rel.reason
        values = rel.compiled_values()
        err = [abs(X / v - 1) if v else (0.0 if X == 0 else math.inf) for v, _ in values]
        best = min(range(len(values)), key=lambda i: err[i])  # ties: fewest artefacts
        row["expected_xla_flops"] = values[0][0]
        row["expected_xla_flops_lowered"] = rel.lowered
        row["relation_error"] = err[best] if math.isfinite(err[best]) else None
        hits = err[best] <= TOLERANCE
        row["relation_note"] = values[best][1] if hits else ""
        tr_ok = _close(m["xla_transcendentals"], rel.transcendentals)
        low = m["xla_flops_lowered"]
        low_ok = low is None or _close(low, rel.lowered)
        holds = hits and tr_ok and low_ok
        row["relation_holds"] = holds
        if not _close(X, F):
            if holds:
                explained.append(rel.name)
            else:
                problems.append(
                    f"XLA {X:.6g} flops vs ours {F:.6g}; relation {rel.name} predicts "
                    f"{values[0][0]:.6g}" + (" (or that plus compile artefacts)"
                                             if len(values) > 1 else "")
                    + ("" if tr_ok else f", transcendentals {rel.transcendentals:.6g} "
                       f"(XLA {m['xla_transcendentals']:.6g})")
                    + ("" if low_ok else f", lowered {rel.lowered:.6g} (XLA {low:.6g})"))
    else:
        row.update(relation=None, relation_reason=rel.reason if rel else "no relation derived",
                   expected_xla_flops=None, expected_xla_flops_lowered=None,
                   relation_error=None, relation_note="", relation_holds=False)
        if not _close(X, F):
            problems.append(f"XLA {X:.6g} flops vs ours {F:.6g}; {row['relation_reason']}")
    # jax.experimental.roofline
    R = m["roofline_flops"]
    if R is not None:
        exp_r = rel.roofline if rel is not None and rel.name != "none" else None
        row["expected_roofline_flops"] = exp_r
        if not _close(R, F):
            if exp_r is not None and _close(R, exp_r):
                if rel.name not in explained:
                    explained.append(rel.name)
            else:
                problems.append(f"jax roofline {R:.6g} unfused flops vs ours {F:.6g}"
                                + (f", relation predicts {exp_r:.6g}" if exp_r is not None else ""))
    elif rel is not None and rel.roofline_skip and not row["roofline_skip"]:
        row["roofline_skip"] = rel.roofline_skip
    # bytes
    flags = []
    mb = m["min_bytes"]
    if m["xla_bytes"] < mb * (1 - BYTES_SLACK):
        flags.append(f"XLA reports {m['xla_bytes']:.6g} B, less than the kernel's arguments and "
                     f"results ({mb:.6g} B)")
    if ours["hbm_bytes"] < mb * (1 - BYTES_SLACK):
        flags.append(f"the model moves {ours['hbm_bytes']:.6g} B, less than the kernel's "
                     f"arguments and results ({mb:.6g} B)")
    br = row["bytes_ratio"]
    if br is not None and not (1 / BYTES_GROSS <= br <= BYTES_GROSS):
        flags.append(f"bytes ratio {br:.3g} beyond {BYTES_GROSS:g}x")
    row["bytes_flag"] = "; ".join(flags)
    row["bytes_note"] = BYTES_NOTES.get(kernel.name, "")
    if problems:
        row["status"], row["reason"] = "MISMATCH", "; ".join(problems)
    elif explained:
        row["status"], row["reason"] = "explained", ", ".join(explained)
    else:
        row["status"], row["reason"] = "ok", ""
    return row


@dataclass
class CheckResult:
    rows: list = field(default_factory=list)
    backend: str = ""
    jax_version: str = ""

    @property
    def mismatches(self) -> list:
        return [r for r in self.rows if r["status"] == "MISMATCH"]

    def counts(self) -> dict:
        c = {"ok": 0, "explained": 0, "MISMATCH": 0}
        for r in self.rows:
            c[r["status"]] += 1
        return c

    def to_json(self) -> dict:
        used = sorted({r["relation"] for r in self.rows if r.get("relation")})
        return {"schema_version": 1, "backend": self.backend, "jax_version": self.jax_version,
                "tolerance": TOLERANCE, "summary": {**self.counts(), "kernels": len(self.rows),
                "bytes_flags": sum(1 for r in self.rows if r["bytes_flag"]),
                "roofline_skipped": sum(1 for r in self.rows if r["roofline_skip"])},
                "relations": {n: _relation_doc(n) for n in used},
                "bytes_notes": {k: v for k, v in BYTES_NOTES.items()
                                if any(r["kernel"] == k for r in self.rows)},
                "rows": self.rows}


def _relation_doc(name: str) -> str:
    """The relation's paragraph of this module's docstring."""
    key = f"``{name}``"
    for para in __doc__.split("\n- "):
        if para.startswith(key):
            return " ".join(para.split("\n\n")[0].split())
    return ""


def run_check(mode: str = "full", kernels: str | None = None, progress=None) -> CheckResult:
    """Check every kernel of a bench suite mode (optionally filtered by glob patterns)."""
    import jax

    from .bench import select

    backend = jax.default_backend()
    ks = select(K.suite(mode, backend), kernels)
    hw = _hardware()
    res = CheckResult(backend=backend, jax_version=jax.__version__)
    for i, k in enumerate(ks):
        if progress:
            progress(i, len(ks), k)
        res.rows.append(check_kernel(k, hw, backend))
    return res


# ---- text ----------------------------------------------------------------------------------

def _g(x, digits=4) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def table_text(res: CheckResult) -> str:
    head = ["kernel", "shape", "dtype", "our flops", "XLA flops", "ratio", "our bytes",
            "XLA bytes", "ratio", "roofline", "status"]
    body = []
    for r in res.rows:
        roof = _g(r["roofline_ratio"]) if r["roofline_flops"] is not None else "skipped"
        status = r["status"] if r["status"] != "explained" else f"explained: {r['reason']}"
        if r["status"] == "explained" and r.get("relation_note"):
            status += f" ({r['relation_note']})"
        if r["status"] == "MISMATCH":
            status = "MISMATCH"
        body.append([r["kernel"], r["shape"], r["dtype"], _g(r["our_flops"]), _g(r["xla_flops"]),
                     _g(r["flops_ratio"]), _g(r["our_bytes"]), _g(r["xla_bytes"]),
                     _g(r["bytes_ratio"], 3) + (" !" if r["bytes_flag"] else ""), roof, status])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    right = {3, 4, 5, 6, 7, 8, 9}

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [f"perfmodel check: our FLOPs and bytes vs XLA cost_analysis ({res.backend}, jax "
           f"{res.jax_version}); ratio = XLA / ours; roofline = jax.experimental.roofline "
           f"unfused flops / ours", line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    c = res.counts()
    out.append("")
    out.append(f"{len(res.rows)} kernels: {c['ok']} ok, {c['explained']} explained, "
               f"{c['MISMATCH']} MISMATCH (FLOPs tolerance {TOLERANCE:.0%})")
    used = sorted({r["relation"] for r in res.rows if r["status"] == "explained"})
    if used:
        out.append("explanations (perfmodel/calibrate/xla.py):")
        for n in used:
            out.append(f"  {n} {_relation_doc(n).removeprefix(f'``{n}`` ')}")
        notes = sorted({r["relation_note"] for r in res.rows
                        if r["status"] == "explained" and r.get("relation_note")})
        for n in notes:
            k = sum(1 for r in res.rows if r.get("relation_note") == n)
            out.append(f"  ({n}: {k} row(s))")
    skipped = [r for r in res.rows if r["roofline_skip"]]
    if skipped:
        reasons = sorted({r["roofline_skip"] for r in skipped})
        out.append(f"jax.experimental.roofline skipped for {len(skipped)} kernel(s): "
                   + "; ".join(reasons))
        if any(r["kernel"] == "matmul_pallas" for r in res.rows):
            out.append("  XLA cost_analysis counts loop bodies once: the Pallas interpret rows "
                       "compare one grid step (relation pallas-loop-body).")
    kinds = []
    for r in res.rows:
        if r["kernel"] not in kinds:
            kinds.append(r["kernel"])
    out.append("bytes (XLA / ours; fusion decides what XLA moves, so only gross inconsistencies "
               "are flagged '!'):")
    for k in kinds:
        rs = [r["bytes_ratio"] for r in res.rows if r["kernel"] == k and r["bytes_ratio"]]
        lo, hi = (f"{min(rs):.3g}", f"{max(rs):.3g}") if rs else ("-", "-")
        rng = lo if lo == hi else f"{lo}-{hi}"
        out.append(f"  {k} (here {rng}x): {BYTES_NOTES.get(k, '')}")
    for r in res.rows:
        if r["bytes_flag"]:
            out.append(f"  ! {r['kernel']} {r['shape']} {r['dtype']}: {r['bytes_flag']}")
    for r in res.mismatches:
        out.append(f"MISMATCH {r['kernel']} {r['shape']} {r['dtype']}: {r['reason']}")
    return "\n".join(out)


__all__ = ["Relation", "RELATIONS", "TOLERANCE", "BYTES_NOTES", "relation", "expected_xla_flops",
           "cost_dict", "measure", "check_kernel", "run_check", "table_text", "CheckResult"]
