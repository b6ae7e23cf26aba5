"""A workload's result as one JSON object: the engine's rows, their totals, a transformer's
step summary and the price figures. Above the model layer, because the step summary is the
model's (perfmodel.model.summary) and the engine's rows are its input.

A transformer workload's JSON is also compiled per structure (perfmodel.trace): the second
time one structure (chip, mesh, strategies, dtypes, every field but the numbers) is asked for,
the computation is recorded once more over traced numbers and compiled into one function of
those numbers, checked against the answer just computed; later configurations of that
structure are that function's call when its guards hold (``TRACE_STATS`` counts).
"""

from __future__ import annotations

import collections
import functools
import math
import operator
import typing

import numpy as np

from . import trace
from .engine import SCHEMA_VERSION, per_chip, evaluate_rows, price_columns, totals
from .formula import compile_needed, compile_py, json_code, refs, split_steps, to_excel
from .model import expand_workload, expansion
from .model.summary import step_summary
from .specs import Hardware, SpecError, TransformerOp, Workload, bare_type

MAX_VARIANTS = 8  # recordings per structure (each a different set of guard outcomes)
MAX_RECORDED = 256  # structures whose recordings are kept (each about half a megabyte)
_RECORDED: collections.deque = collections.deque()
TRACE_STATS = {"compiled": 0, "recorded": 0, "refused": 0}


def to_json(hw: Hardware, wl: Workload, rows: list[dict] | None = None) -> dict:
    """The rows and their ``total``. For a transformer workload the total is the step's
    (perfmodel.model.summary): t_lower overlaps each layer's communication with its compute,
    and it adds MFU, tokens/s, memory per chip and the inference latencies."""
    if rows is None and hw.calibration is None:
        src = _source(wl)
        if src is not None:
            return _compiled_json(hw, wl, src)
    return _to_json(hw, wl, rows)


def _to_json(hw: Hardware, wl: Workload, rows: list[dict] | None = None) -> dict:
    wl = expand_workload(wl)
    rows = rows if rows is not None else evaluate_rows(hw, wl)
    total = totals(rows)
    step = step_summary(hw, wl, rows)
    if step is not None:
        total.update(step)
    total.update(price_columns(hw.price_per_hour, total))
    return {"schema_version": SCHEMA_VERSION, "hardware": hw.name, "workload": wl.name, "ops": rows,
            "total": total}


# ---- compiled per structure ---------------------------------------------------------------

def _source(wl: Workload) -> Workload | None:
    """The workload as written when it is one transformer op (what is compiled), else None."""
    x = expansion(wl)
    src = x.source if x is not None else wl
    if len(src.ops) != 1 or not isinstance(src.ops[0], TransformerOp):
        return None
    return src


@functools.lru_cache(maxsize=None)
def _fields(cls) -> tuple:
    """(numeric fields, the rest) of a spec class: the numbers are traced, the rest (and which
    numbers are unset) make the structure."""
    numeric = tuple(f for f, info in cls.model_fields.items()
                    if bare_type(info.annotation)[0] in (int, float))
    rest = tuple(f for f in cls.model_fields if f not in numeric)
    return (numeric, rest, operator.attrgetter(*numeric), operator.attrgetter(*rest),
            tuple(f"in:{f}" for f in numeric))


def _frozen(v):
    """``v`` hashable: dicts and lists as tuples (the rest of a spec is text, bools, None)."""
    if v.__class__ in (str, bool, type(None)):
        return v
    if isinstance(v, dict):
        return tuple((k, _frozen(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


class _Structure:
    """The recorded variants of one structure on one chip."""

    def __init__(self):
        self.seen = 0
        self.variants: list[_Variant] = []
        self.refused: str | None = None  # why it could not be recorded (never tried again)


class _Variant:
    """One recording: its trace and the recorded result (traced numbers in it; ``real``, the
    result evaluated at the recorded numbers, gives each output its JSON type); ``json`` is the
    compiled to_json (None when a guard
    fails); ``arrays`` the compiled outputs on arrays of numbers (sweeps), per selection."""

    def __init__(self, t: trace.Trace, template: dict, real: dict):
        self.trace, self.template = t, template
        self.json = _compile(t, template, real)
        self._arrays: dict[tuple, typing.Callable] = {}

    def arrays(self, row_columns: tuple, total_columns: tuple) -> typing.Callable:
        key = (row_columns, total_columns)
        if key not in self._arrays:
            self._arrays[key] = _compile_arrays(self, row_columns, total_columns)
        return self._arrays[key]


def _structure_of(hw: Hardware, src: Workload) -> tuple[_Structure, dict]:
    """The structure of ``src`` (one transformer op) on ``hw`` and its numbers, as the
    compiled functions read them."""
    spec = src.ops[0]
    numeric, rest, get_numeric, get_rest, names = _fields(type(spec))
    values = get_numeric(spec)
    key = (_frozen([v for k, v in src.__dict__.items() if k != "ops"]),
           type(spec), _frozen(get_rest(spec)), tuple(v is None for v in values))
    return (per_chip(hw, ("to_json", key), _Structure),
            {k: v for k, v in zip(names, values) if v is not None})


def _compiled_json(hw: Hardware, wl: Workload, src: Workload) -> dict:
    st, cells = _structure_of(hw, src)
    for v in st.variants:
        out = v.json(cells)
        if out is not None:
            TRACE_STATS["compiled"] += 1
            return out
    result = _to_json(hw, wl)
    st.seen += 1
    if st.seen >= 2 and st.refused is None and len(st.variants) < MAX_VARIANTS:
        _record(hw, src, cells, result, st)
    return result


def _record(hw: Hardware, src: Workload, cells: dict, result: dict, st: _Structure
            ) -> "_Variant | None":
    """Record ``to_json`` of ``src`` over traced numbers and add it to the structure's
    variants if its compiled function gives ``result`` back at these numbers (returned; None
    if the recording was refused)."""
    spec = src.ops[0]
    inputs = trace.traced_inputs(cells)
    traced = src.model_copy(update={"ops": [spec.model_copy(
        update={k.removeprefix("in:"): v for k, v in inputs.items()})]})
    try:
        with trace.tracing() as t:
            # the op's own validation as guards: sweep_arrays' configurations are validated
            # no other way (a combination such as seq > sliding_window, top_k > experts)
            trace.check_numbers(traced.ops[0])
            template = _to_json(hw, traced)
        v = _Variant(t, template, result)
        if not _same(v.json(cells), result):
            raise trace.TraceLeak("the compiled function disagrees with the evaluation")
    except Exception as e:  # noqa: BLE001 - a recording that fails leaves the ordinary path
        st.refused = f"{type(e).__name__}: {e}"
        TRACE_STATS["refused"] += 1
        return None
    st.variants.append(v)
    TRACE_STATS["recorded"] += 1
    if len(st.variants) == 1:
        _RECORDED.append(st)
        if len(_RECORDED) > MAX_RECORDED:  # the oldest structure forgotten: memory bounded
            old = _RECORDED.popleft()
            old.variants = []
            old.seen = 0
    return v


def sweep_arrays(hw: Hardware, rep: Workload, arrays: dict, row_columns: tuple,
                 total_columns: tuple) -> dict | None:
    """``to_json``'s figures for many configurations of one transformer structure at once:
    ``rep`` is one configuration (validated), ``arrays`` numpy arrays of some of its op's
    numeric fields (one entry per configuration). Returns {"ops": [(name, {column: array})],
    "total": {column: array}, "bounds": {group: labels}} (the rows' ``row_columns``, the
    total's ``total_columns``), or None when some configuration fails a guard of the
    recording (the caller evaluates those the ordinary way)."""
    src = _source(rep)
    if src is None or hw.calibration is not None:
        return None
    st, cells = _structure_of(hw, src)
    many = {**cells, **{f"in:{k}": v for k, v in arrays.items()}}
    for v in st.variants:
        out = v.arrays(row_columns, total_columns)(many)
        if out is not None:
            TRACE_STATS["compiled"] += 1
            return out
    if st.refused is not None or len(st.variants) >= MAX_VARIANTS or \
            any(v.json(cells) is not None for v in st.variants):
        return None  # no recording at ``rep`` would cover more than those that failed
    try:
        result = _to_json(hw, rep)
    except SpecError:
        return None  # the ordinary path says what is wrong
    v = _record(hw, src, cells, result, st)
    out = v.arrays(row_columns, total_columns)(many) if v is not None else None
    TRACE_STATS["compiled"] += out is not None
    return out


_HOLE = "\x00"  # never in a repr: marks where an output's variable goes


def _compile(t: trace.Trace, template, real) -> typing.Callable:
    """One function of the input numbers: None when a guard fails, else the JSON ``real``
    has at the recorded numbers, recomputed (``template``: the recording's result, traced
    numbers where ``real`` has numbers)."""
    steps = list(t.steps)
    outs: list[str] = []

    def src(tv, rv) -> str:
        if type(tv) is trace.Traced:
            if isinstance(rv, (dict, list, tuple)):
                raise trace.TraceLeak("a traced number where the result has a container")
            var = f"out:{len(outs)}"
            steps.append((var, tv.expr))
            outs.append(var)
            return json_code(f"{_HOLE}{len(outs) - 1}{_HOLE}", rv)
        if isinstance(tv, dict):
            if not isinstance(rv, dict) or list(tv) != list(rv):
                raise trace.TraceLeak("the recording's keys differ from the result's")
            return "{" + ", ".join(f"{k!r}: {src(v, rv[k])}" for k, v in tv.items()) + "}"
        if isinstance(tv, (list, tuple)):
            if type(rv) is not type(tv) or len(rv) != len(tv):
                raise trace.TraceLeak("the recording's lists differ from the result's")
            body = ", ".join(src(v, r) for v, r in zip(tv, rv))
            return f"[{body}]" if isinstance(tv, list) else f"({body}{',' if len(tv) == 1 else ''})"
        if not _same(tv, rv) or (isinstance(tv, float) and not math.isfinite(tv)):
            raise trace.TraceLeak(f"a constant {tv!r} where the result has {rv!r}")
        return repr(tv)

    body = src(template, real)
    guards = _guard_steps(t, steps)

    def returns(name) -> str:
        text = body.split(_HOLE)
        for i in range(1, len(text), 2):
            text[i] = name(outs[int(text[i])])
        check = " and ".join(name(v) if ok else f"not {name(v)}" for v, ok in guards) or "True"
        return f"(None if not ({check}) else {''.join(text)})"
    return compile_py(steps, t.consts, [(v, v) for v in outs] + [(v, v) for v, _ in guards],
                      floats=True, returns=returns)


def _compile_arrays(v: _Variant, row_columns: tuple, total_columns: tuple) -> typing.Callable:
    """The recording's rows' and total's chosen columns and its group bounds, as numpy code
    over arrays of numbers (what does not depend on an array is computed once, in floats);
    None when a guard fails for any configuration."""
    steps, outs = list(v.trace.steps), []

    def take(x, key):
        if type(x) is trace.Traced:
            steps.append((key, x.expr))
            outs.append(key)
            return None
        return x
    ops = [(r["name"], {c: take(r.get(c), f"op:{i}:{c}") for c in row_columns})
           for i, r in enumerate(v.template["ops"])]
    total = {c: take(v.template["total"].get(c), f"total:{c}") for c in total_columns}
    bounds = {g: take(b, f"bound:{g}")
              for g, b in (v.template["total"].get("bounds") or {}).items()}
    guards = _guard_steps(v.trace, steps)
    wanted = outs + [g for g, _ in guards]
    functions: dict[frozenset, tuple] = {}

    def compiled(arrays: frozenset) -> tuple:
        """(float function, numpy function) for these array inputs: the steps that read no
        array are computed once with floats."""
        if arrays not in functions:
            scalar, vector = split_steps(compile_needed(steps, wanted), set(arrays))
            need = set(wanted).union(*(set().union(*map(refs, e)) if isinstance(e, list)
                                       else refs(e) for _, e in vector))
            many = {x for x, _ in vector}
            functions[arrays] = (
                compile_py(scalar, v.trace.consts, [(x, x) for x, _ in scalar if x in need],
                           floats=True),
                compile_py(vector, v.trace.consts, [(x, x) for x in wanted if x in many],
                           arrays=True))
        return functions[arrays]

    def run(cells: dict):
        once, many = compiled(frozenset(k for k, x in cells.items() if np.ndim(x)))
        out = once(cells)
        out.update(many({**cells, **out}))
        for g, ok in guards:
            x = out[g]
            if bool(x) is not ok if np.ndim(x) == 0 else not np.all(x if ok else ~x):
                return None

        def get(key, const):
            return out[key] if key in out else const
        return {"ops": [(n, {c: get(f"op:{i}:{c}", x) for c, x in cols.items()})
                        for i, (n, cols) in enumerate(ops)],
                "total": {c: get(f"total:{c}", x) for c, x in total.items()},
                "bounds": {g: get(f"bound:{g}", x) for g, x in bounds.items()}}
    return run


def _guard_steps(t: trace.Trace, steps: list) -> list[tuple[str, bool]]:
    """The recording's guards appended to ``steps``, each decision once (the same comparison
    is met in many places): [(step name, the outcome it must have)]."""
    seen: dict[str, tuple] = {}
    for e, ok in t.guards:
        seen.setdefault(to_excel(e, str), (e, ok))
    out = []
    for i, (e, ok) in enumerate(seen.values()):
        steps.append((f"guard:{i}", e))
        out.append((f"guard:{i}", ok))
    return out


def _same(a, b) -> bool:
    """Equal JSON values (numbers to 1e-12 relative: the compiled function computes in
    float64 where the evaluation multiplies whole numbers exactly)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        return type(a) is type(b) and a == b
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or type(a) is not type(b):
        return False
    return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
