"""Fuzzing results.to_json compiled per structure (perfmodel.trace) against the ordinary
evaluation: a random transformer op on a random chip, mesh and parallelism is recorded at one
configuration (A), then other numbers of the same structure (B) must give the evaluation's
JSON, or the same SpecError where B is invalid; sweeps through the recording must give the
per-configuration loop's tables. Every recording of an ordinary configuration must succeed
(a refusal is a place where the trace machinery leaks a number).

The default run is short (and the same each time); ``PERFMODEL_FUZZ_EXAMPLES=2000`` hunts
for longer with fresh random examples, ``PERFMODEL_FUZZ_CONFIGS=30`` tries more configurations
per recorded structure (past results.MAX_VARIANTS recordings)."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from perfmodel import catalog, results, sweeps
from perfmodel.model import expand_workload
from perfmodel.specs import SpecError, Workload
from perfmodel.sweeps import parse_varies

from .test_traced import _frames_equal

EXAMPLES = int(os.environ.get("PERFMODEL_FUZZ_EXAMPLES", "50"))
# other configurations per recorded one (more than results.MAX_VARIANTS fill a structure)
CONFIGS = int(os.environ.get("PERFMODEL_FUZZ_CONFIGS", "6"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="PERFMODEL_FUZZ_EXAMPLES"
                not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

# (chip, slice, slices, mesh, parallelism, MoE only): the layouts of the built-in workloads
# and their neighbours (one chip, an 8-GPU node, two nodes, a v5p cube, two slices over DCN)
LAYOUTS = [
    ("h100", None, 1, None, {}, False),
    ("tpu-v5e", None, 1, None, {}, False),
    ("mi300x", None, 1, None, {}, False),
    ("h100", "8", 1, {"data": 8}, {"data": "data"}, False),
    ("h100", "8", 1, {"tensor": 8}, {"tensor": "tensor"}, False),
    ("h100", "8", 1, {"fsdp": 8}, {"fsdp": "fsdp"}, False),
    ("h100", "2x4", 1, {"data": 2, "tensor": 4}, {"data": "data", "tensor": "tensor"}, False),
    ("h100", "2x4", 1, {"pipe": 2, "tensor": 4}, {"pipeline": "pipe", "tensor": "tensor"}, False),
    ("h100", "2x8", 1, {"node": 2, "gpu": 8}, {"fsdp": "node", "tensor": "gpu"}, False),
    ("h100", "2x4", 1, {"data": 2, "expert": 4}, {"data": "data", "expert": "expert"}, True),
    ("tpu-v5p", "2x2x2", 1, {"fsdp": 8}, {"fsdp": "fsdp"}, False),
    ("tpu-v5p", "2x2x2", 1, {"data": 2, "tensor": 4}, {"data": "data", "tensor": "tensor"},
     False),
    ("tpu-v5p", "2x2x2", 1, {"pipe": 2, "data": 2, "tensor": 2},
     {"pipeline": "pipe", "data": "data", "tensor": "tensor"}, False),
    ("tpu-v5p", "2x2x2", 1, {"pipe": 4, "fsdp": 2}, {"pipeline": "pipe", "fsdp": "fsdp"}, False),
    ("tpu-v5p", "2x2x2", 1, {"seq": 2, "tensor": 4}, {"sequence": "seq", "tensor": "tensor"},
     False),
    ("tpu-v5p", "2x2x2", 1, {"x": 2, "y": 4}, {"fsdp": ["x", "y"]}, False),
    ("tpu-v5p", "2x4", 1, {"fsdp": 2, "expert": 4}, {"fsdp": "fsdp", "expert": "expert"}, True),
    ("tpu-v5p", "2x2x1", 2, {"dcn": 2, "fsdp": 4}, {"data": "dcn", "fsdp": "fsdp"}, False),
]
HW = {c: catalog.load_hardware(c) for c in {lay[0] for lay in LAYOUTS}}
DTYPES = ("bf16", "fp16", "fp32", "fp8")
SEEN = {"examples": 0, "compiled": 0, "evaluated": 0, "invalid": 0, "refused": {},
        "not a SpecError": []}


def _sizes(mesh, par) -> dict:
    size = {}
    for s in ("data", "fsdp", "tensor", "sequence", "expert", "pipeline"):
        axes = par.get(s, ())
        axes = [axes] if isinstance(axes, str) else axes
        n = 1
        for a in axes:
            n *= mesh[a]
        size[s] = n
    return size


# ---- strategies ---------------------------------------------------------------------------

@st.composite
def structures(draw, moe_layout: bool | None = None):
    """A layout and the op's non-numeric fields."""
    pool = [lay for lay in LAYOUTS if moe_layout is None or lay[5] == moe_layout]
    chip, slice_, slices, mesh, par, moe_only = draw(st.sampled_from(pool))
    mode = draw(st.sampled_from(["train", "prefill", "decode"]))
    train = mode == "train"
    s = {"mlp": draw(st.sampled_from(["gated", "plain"])), "mode": mode,
         "attention": draw(st.sampled_from(["naive", "fused", "flash"])),
         "causal": draw(st.booleans()), "dtype": draw(st.sampled_from(DTYPES)),
         "tie_embeddings": draw(st.booleans()), "qkv_bias": draw(st.booleans()),
         "overlap": draw(st.booleans())}
    params = ["bf16", "fp32", "fp8", "int8"] + ([] if train else ["int4", "fp4"])
    s["param_dtype"] = draw(st.sampled_from(params))
    if s["param_dtype"] == "int8" and draw(st.booleans()):
        s["compute_dtype"] = "int8"  # W8A8
    if not train and draw(st.booleans()):
        s["kv_dtype"] = draw(st.sampled_from(["int8", "fp8", "bf16", "fp32"]))
    if s["dtype"] == "fp32" and draw(st.booleans()):
        s["precision"] = draw(st.sampled_from(["high", "highest"]))
    if train:
        s["remat"] = draw(st.sampled_from(["none", "dots", "full"]))
        s["optimizer"] = draw(st.sampled_from(["adam", "sgd"]))
    moe = moe_only or draw(st.integers(0, 3)) == 0
    extra = {"moe": moe, "capacity": moe and draw(st.booleans()),
             "window": draw(st.integers(0, 4)) == 0,
             "microbatches": "pipeline" in par and draw(st.booleans()),
             "grad_accum": train and draw(st.booleans())}
    return (chip, slice_, slices, mesh, par), s, extra


def _units(draw, extra) -> dict:
    """The free numbers of a configuration (each field is a multiple of what must divide it)."""
    big = draw(st.integers(0, 3)) == 0  # now and then model-sized numbers (long contexts,
    # big batches: other bounds, flash blocks, memory fits, decode's compute-bound search)
    u = {"layers": draw(st.integers(1, 40 if big else 6)),
         "d_model": draw(st.integers(1, 30000 if big else 6000)),
         "heads": draw(st.integers(1, 16 if big else 8)), "kv": draw(st.integers(0, 7)),
         "head_dim": draw(st.sampled_from([1, 3, 16, 64, 80, 128, 256])),
         "d_ff": draw(st.integers(1, 20000 if big else 3000)),
         "vocab": draw(st.integers(1, 260000 if big else 40000)),
         "seq": draw(st.integers(1, 131072 if big else 4096)),
         "batch": draw(st.integers(1, 2048 if big else 12))}
    if extra["moe"]:
        u["experts"] = draw(st.integers(1, 4))
        u["top_k"] = draw(st.integers(1, 8))
    if extra["capacity"]:
        u["capacity_factor"] = draw(st.sampled_from([0.5, 1.0, 1.25, 2.0, 3.7]))
    if extra["window"]:
        u["window"] = draw(st.integers(0, 5000))
    if extra["microbatches"]:
        u["microbatches"] = draw(st.integers(1, 4))
    if extra["grad_accum"]:
        u["grad_accum"] = draw(st.integers(1, 4))
    return u


def _numbers(layout, u: dict) -> dict:
    """The op's numeric fields from the free numbers: every divisibility the plan needs."""
    _, _, _, mesh, par = layout
    z = _sizes(mesh or {}, par)
    tp, sp, ep, pp = z["tensor"], z["sequence"], z["expert"], z["pipeline"]
    heads = tp * u["heads"]
    # kv_heads divides heads and either divides tp or is a multiple of it
    kvs = [k for k in range(1, heads + 1) if heads % k == 0 and (k % tp == 0 or tp % k == 0)]
    n = {"layers": pp * u["layers"], "d_model": u["d_model"], "heads": heads,
         "kv_heads": kvs[u["kv"] % len(kvs)], "head_dim": u["head_dim"],
         "d_ff": tp * u["d_ff"], "vocab": tp * u["vocab"], "seq": sp * u["seq"]}
    m = u.get("microbatches", pp if pp > 1 else 1)
    if "microbatches" in u:
        n["microbatches"] = m
    g = u.get("grad_accum", 1)
    if "grad_accum" in u:
        n["grad_accum"] = g
    n["batch"] = z["data"] * z["fsdp"] * ep * m * g * u["batch"]
    if "experts" in u:
        n["experts"] = ep * u["experts"]
        n["top_k"] = 1 + (u["top_k"] - 1) % n["experts"]
    if "capacity_factor" in u:
        n["capacity_factor"] = u["capacity_factor"]
    if "window" in u:
        n["sliding_window"] = n["seq"] + u["window"]
    return n


def workload(layout, s: dict, numbers: dict, name: str) -> Workload:
    chip, slice_, slices, mesh, par = layout
    w = {"name": name, "ops": [{"name": "m", "kind": "transformer", **s, **numbers,
                                "parallelism": par}]}
    if slice_ is not None:
        w.update(slice=slice_, mesh=mesh)
        if slices > 1:
            w["slices"] = slices
    return Workload.model_validate(w)


def _other(draw, u: dict) -> dict:
    """Other free numbers: each kept, doubled, or drawn afresh."""
    out = {}
    for k, v in u.items():
        how = draw(st.sampled_from(["keep", "keep", "double", "fresh"]))
        if how == "keep" or k in ("capacity_factor",) and how == "double":
            out[k] = v
        elif how == "double":
            out[k] = 2 * v if k not in ("kv", "window") else v
        else:
            out[k] = None
    fresh = _units(draw, {"moe": "experts" in u, "capacity": "capacity_factor" in u,
                          "window": "window" in u, "microbatches": "microbatches" in u,
                          "grad_accum": "grad_accum" in u})
    return {k: fresh[k] if v is None else v for k, v in out.items()}


# invalid configurations of a valid structure: numbers the plan refuses (make_plan), or
# kernels too large for float64 counts (the expansion)
BREAKS = ("batch", "heads", "layers", "seq", "experts", "huge")


def _broken(layout, n: dict, how: str) -> dict | None:
    _, _, _, mesh, par = layout
    z = _sizes(mesh or {}, par)
    n = dict(n)
    if how == "batch" and n["batch"] > 1:
        n["batch"] += 1
    elif how == "heads" and z["tensor"] > 1:
        n["heads"] += 1  # not a multiple of tensor any more
        n["kv_heads"] = 1  # still dividing heads
    elif how == "layers" and z["pipeline"] > 1:
        n["layers"] += 1
    elif how == "seq" and z["sequence"] > 1:
        n["seq"] += 1
        if "sliding_window" in n:
            n["sliding_window"] += 1
    elif how == "experts" and "experts" in n and z["expert"] > 1:
        n["experts"] += 1
    elif how == "huge":
        n["seq"] *= 2**33
        n.pop("sliding_window", None)
    else:
        return None
    return n


_NAMES = itertools.count()


def _fresh_name() -> str:
    return f"fuzz-{next(_NAMES)}"  # a structure of its own: recorded afresh in each example


def _valid(hw, wl) -> bool:
    try:
        results._to_json(hw, wl)
        return True
    except SpecError:
        return False
    except ValueError as e:  # pydantic's, from model_flops: the last regression test below
        SEEN["not a SpecError"].append(str(e).splitlines()[0])
        return False


def _record(hw, wl) -> results._Structure:
    results.to_json(hw, wl)
    results.to_json(hw, wl)  # the second time records the structure
    st_ = results._structure_of(hw, results._source(wl))[0]
    if st_.refused is not None:
        SEEN["refused"][st_.refused] = SEEN["refused"].get(st_.refused, 0) + 1
    return st_


def _check(hw, wl, expanded: bool = False) -> None:
    """to_json (maybe compiled) is the evaluation, or both raise the same SpecError
    (``expanded``: to_json is given the workload expanded, as the commands load it)."""
    before = results.TRACE_STATS["compiled"]
    try:
        slow = results._to_json(hw, wl)
    except (SpecError, ValueError) as e:  # ValueError: pydantic's (a bug, see _valid)
        SEEN["invalid"] += 1
        if not isinstance(e, SpecError):
            SEEN["not a SpecError"].append(str(e).splitlines()[0])
        with pytest.raises(type(e)) as got:
            results.to_json(hw, wl)
        assert str(got.value) == str(e)
        return
    fast = results.to_json(hw, expand_workload(wl) if expanded else wl)
    compiled = results.TRACE_STATS["compiled"] > before
    SEEN["compiled" if compiled else "evaluated"] += 1
    assert results._same(fast, slow), _first_difference(fast, slow)


def _first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            if not results._same(a[k], b[k]):
                return _first_difference(a[k], b[k], f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if not results._same(x, y):
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: compiled {a!r} != evaluated {b!r}"


# ---- the properties -----------------------------------------------------------------------

def _drawn(data, name: str):
    """(layout, slice, chip, units, numbers, workload) of a drawn structure and numbers."""
    layout, s, extra = data.draw(structures())
    u = _units(data.draw, extra)
    n = _numbers(layout, u)
    return layout, s, HW[layout[0]], u, n, workload(layout, s, n, name)


@FUZZ
@given(st.data())
def test_compiled_json_is_the_evaluated_json(data):
    name = _fresh_name()
    layout, s, hw, u, _, a = _drawn(data, name)
    assume(_valid(hw, a))
    note(f"A: {a.ops[0].model_dump(exclude_defaults=True)}")
    st_ = _record(hw, a)
    assert st_.refused is None, st_.refused
    assert len(st_.variants) == 1
    SEEN["examples"] += 1
    # the recorded configuration itself, then others: each B may record another variant
    _check(hw, a)
    for _ in range(data.draw(st.integers(1, CONFIGS))):
        n = _numbers(layout, _other(data.draw, u))
        if data.draw(st.integers(0, 5)) == 0:
            n = _broken(layout, n, data.draw(st.sampled_from(BREAKS))) or n
        try:
            b = workload(layout, s, n, name)
        except Exception:  # noqa: BLE001 - pydantic refuses it before to_json is asked
            continue
        note(f"B: {n}")
        _check(hw, b, data.draw(st.booleans()))


# fields a sweep of a transformer varies: numbers, each with values that keep the structure's
# divisibility (multiples of the recorded value), pairs whose validity depends on both fields
# at once among them (top_k with experts, kv_heads with heads, seq with sliding_window);
# capacity_factor, the one float, has its own regression test below
SWEEPABLE = ("batch", "seq", "layers", "d_model", "heads", "kv_heads", "d_ff", "vocab",
             "head_dim", "grad_accum", "microbatches", "experts", "top_k")


@FUZZ
@given(st.data())
def test_traced_sweep_is_the_loop(data):
    layout, s, hw, u, n, wl = _drawn(data, _fresh_name())
    assume(_valid(hw, wl))
    hws = [hw]
    # one chip: now and then two kinds (a priced chip beside an unpriced one too)
    others = [c for c in ("h100", "tpu-v5e", "mi300x") if c != layout[0]]
    if layout[1] is None and others and data.draw(st.booleans()):
        hws.append(HW[data.draw(st.sampled_from(others))])
    note(f"op: {wl.ops[0].model_dump(exclude_defaults=True)}")
    fields = [f for f in SWEEPABLE if f in n]
    chosen = data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True))
    varies = []
    for f in chosen:
        mult = data.draw(st.lists(st.sampled_from([1, 2, 3, 4, 8]), min_size=1, max_size=3,
                                  unique=True))
        varies.append(f"{f}=" + ",".join(str(n[f] * m) for m in sorted(mult)))
    note(f"vary {varies}")
    expanded = expand_workload(wl)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sweeps, "_sweep_traced", lambda *a: None)
        m.setattr(sweeps, "_batched", lambda *a: False)  # the per-configuration loop
        try:
            loop = sweeps.sweep(expanded, hws, varies)
        except SpecError:
            loop = None
    if data.draw(st.booleans()):  # recorded by to_json, else by the sweep at its first values
        for h in hws:
            results.to_json(h, wl)
            results.to_json(h, wl)
    if loop is None:
        with pytest.raises(SpecError):
            sweeps.sweep(expanded, hws, varies)
        return
    spec = wl.ops[0]
    traced = sweeps._sweep_traced(wl, spec, hws, parse_varies(varies))
    SEEN["compiled" if traced is not None else "evaluated"] += 1
    full = sweeps.sweep(expanded, hws, varies)  # the public path, whichever it takes
    for got in (traced, full):
        if got is None:
            continue
        _frames_equal(got, loop)
        _frames_equal(got.attrs["totals"], loop.attrs["totals"])


def test_zz_fuzz_statistics():
    """Not a check: what the fuzzing saw (pytest -s prints it)."""
    print(f"\ntraced fuzz: {SEEN}, TRACE_STATS {results.TRACE_STATS}")


# ---- bugs this fuzzing found, fixed (regression tests) ------------------------------------

def _loop_sweep(wl, hws, vary):
    """sweeps.sweep by the per-configuration loop (no recording, no batched arrays)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sweeps, "_sweep_traced", lambda *a: None)
        m.setattr(sweeps, "_batched", lambda *a: False)
        return sweeps.sweep(wl, hws, vary)


def _small(**fields) -> Workload:
    op = {"name": "m", "kind": "transformer", "layers": 2, "d_model": 256, "heads": 4,
          "kv_heads": 4, "head_dim": 64, "d_ff": 512, "vocab": 1000, "mlp": "gated",
          "mode": "prefill", "batch": 2, "seq": 1024, **fields}
    return expand_workload(Workload.model_validate({"name": _fresh_name(), "ops": [op]}))


def test_traced_sweep_of_capacity_factor_keeps_fractions():
    hw = HW["h100"]
    wl = _small(experts=8, top_k=2, capacity_factor=1.0)
    vary = ["capacity_factor=1.0,1.5,2.0"]
    traced, loop = sweeps.sweep(wl, [hw], vary), _loop_sweep(wl, [hw], vary)
    # 1.5 more expert slots than 1.0: more FLOPs (the loop's figures differ per value)
    assert len(set(loop.attrs["totals"]["flops"])) == 3
    _frames_equal(traced.attrs["totals"], loop.attrs["totals"])


@pytest.mark.parametrize("fields,vary", [
    ({"sliding_window": 4096}, ["seq=1024,4096", "sliding_window=1024,4096"]),
    ({"experts": 8, "top_k": 2}, ["experts=2,8", "top_k=1,4"]),
])
def test_traced_sweep_refuses_combinations_invalid_together(fields, vary):
    hw = HW["h100"]
    wl = _small(**fields)
    with pytest.raises(SpecError, match="invalid transformer"):
        _loop_sweep(wl, [hw], vary)
    with pytest.raises(SpecError):
        sweeps.sweep(wl, [hw], vary)


def test_compiled_json_refuses_counts_just_above_2_53():
    hw = HW["h100"]
    op = {"name": "m", "kind": "transformer", "layers": 1, "d_model": 1, "heads": 1,
          "kv_heads": 1, "head_dim": 1, "d_ff": 1, "vocab": 1, "mlp": "plain",
          "mode": "prefill", "batch": 3, "seq": 5}
    name = _fresh_name()

    def wl(**u):
        return Workload.model_validate({"name": name, "ops": [{**op, **u}]})
    _record(hw, wl())
    big = wl(seq=3002399751580331)  # 3 x 3002399751580331 = 2**53 + 1 tokens
    with pytest.raises(SpecError, match="expands to kernel"):
        results._to_json(hw, big)
    with pytest.raises(SpecError, match="expands to kernel"):
        results.to_json(hw, big)


def test_unsharded_model_flops_too_large_is_a_spec_error():
    hw = HW["h100"]
    op = {"name": "m", "kind": "transformer", "layers": 1, "d_model": 1, "heads": 1,
          "kv_heads": 1, "head_dim": 1, "d_ff": 1024, "vocab": 1, "mlp": "gated",
          "mode": "prefill", "batch": 8, "seq": 2**41, "parallelism": {"data": "data"}}
    wl = Workload.model_validate({"name": _fresh_name(), "slice": "8", "mesh": {"data": 8},
                                  "ops": [op]})
    expand_workload(wl)  # per chip: 2**41 tokens x 1024 = 2**51 elements, valid
    with pytest.raises(SpecError):  # unsharded: 2**54 elements in the MLP activation
        results._to_json(hw, wl)


@pytest.mark.parametrize("chips", [("h100", "mi300x"), ("mi300x", "h100")])
def test_traced_sweep_of_priced_and_unpriced_chips_is_the_loop(chips):
    hws = [HW[c] for c in chips]
    wl = _small()
    vary = ["seq=1024,2048"]
    loop = _loop_sweep(wl, hws, vary)
    assert "usd_per_step" in loop.attrs["totals"].columns
    traced = sweeps.sweep(wl, hws, vary)
    _frames_equal(traced.attrs["totals"], loop.attrs["totals"])


def test_traced_sweep_accepts_combinations_valid_together():
    hw = HW["h100"]
    wl = _small(heads=4, kv_heads=4)
    vary = ["heads=8", "kv_heads=8"]
    loop = _loop_sweep(wl, [hw], vary)
    traced = sweeps.sweep(wl, [hw], vary)
    _frames_equal(traced.attrs["totals"], loop.attrs["totals"])
