"""``perfmodel plan``: search chips, slices, meshes, strategies, remat, gradient accumulation and
batch sizes for one transformer, and rank the configurations that fit.

The workload holds one transformer op. For a plan it may omit ``mode``, ``batch``,
``parallelism``, ``remat``, ``grad_accum``, ``microbatches`` and the workload's ``slice`` and
``mesh``; the fields it states are fixed (flags override), the others are searched:

- slice: every shape of the chip count on the chip (its ``slices:`` list and their axis
  orders; without a list, every factorisation into the torus's axes; a GPU: one node of N, or
  N/domain nodes of a full NVLink domain), with the wraparound topology.py gives it;
- mesh and strategies: each physical axis of length > 1 goes to one strategy (data, fsdp,
  tensor, sequence, pipeline; expert for a mixture of experts); neighbouring axes with the same
  strategy form one mesh axis. In decode, data/fsdp shard the KV cache over the batch and
  sequence shards it over its length. Assignments that only permute identical axes (same
  length, wraparound and links) are evaluated once;
- remat none | dots | full and grad_accum 1, 2, 4, 8 (training); pipeline microbatches =
  pipeline size x 1, 2, 4; batch (``--batch``, else the workload's, else 1, 2, 4, ... 1024).

Every configuration is priced by the same model as ``perfmodel roofline`` on the equivalent
workload (``explain_yaml`` writes it), evaluated one structure at a time over arrays of batch,
microbatches and grad_accum (model/batched.py). A configuration is infeasible, counted by its
first failing reason, when the batch does not split over its shards (or a strategy does not
divide the model: ``divisibility``), its memory per chip exceeds ``hbm_fraction`` of HBM
(``memory``), or it misses a limit (``max_ttft`` in prefill, ``max_tpot`` in decode,
``min_tokens_per_s``). Infeasible configurations are never ranked.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .formula import Ref, evaluate
from .units import fmt_capacity, fmt_si
from .model import hf_config
from .model.transformer import make_plan
from .specs import SpecError, TransformerOp, Workload, load_model, read_yaml
from .topology import GPU_TOPOLOGIES, TORUS_DIMS, format_shape, parse_shape, physical_axes

SCHEMA_VERSION = 1
REASONS = ("divisibility", "memory", "max_ttft", "max_tpot", "min_tokens_per_s")
DEFAULT_BATCHES = tuple(2 ** i for i in range(11))
REMATS = ("none", "dots", "full")
GRAD_ACCUMS = (1, 2, 4, 8)
MICRO_FACTORS = (1, 2, 4)  # pipeline microbatches = pipeline size x these
DENSE_STRATEGIES = ("data", "fsdp", "tensor", "sequence", "pipeline")
OBJECTIVES = ("tokens_per_s", "cost", "latency")
SEARCHED_FIELDS = ("mode", "batch", "parallelism", "remat", "grad_accum", "microbatches")
BATCH_STRATEGIES = ("data", "fsdp", "expert")

# A configuration's derived columns, defined once: evaluated over the search's arrays for the
# table (JSON, CSV, text) and rendered by the Plan sheet as live formulas over the row's cells.
PLAN_FORMULAS = {"tokens_per_s_per_chip": Ref("tokens_per_s") / Ref("chips")}
# the bytes per chip a plan may fill (--hbm-fraction of HBM); the 'memory' reason is not fitting
MEMORY_LIMIT = Ref("hbm_fraction") * Ref("hbm_capacity")
FITS_MEMORY = Ref("memory_bytes_per_chip") <= MEMORY_LIMIT


def memory_limit(req: Request, hbm_capacity):
    return evaluate(MEMORY_LIMIT, {"hbm_fraction": req.hbm_fraction,
                                   "hbm_capacity": hbm_capacity})


# ---- the request --------------------------------------------------------------------------

@dataclass
class Request:
    """What to search: the op as stated, the fixed fields and the searched values."""

    name: str
    path: Path
    op: dict                      # the transformer op as written (searched fields removed)
    mode: str
    batches: tuple[int, ...]
    remats: tuple[str, ...]
    grad_accums: tuple[int, ...]
    microbatches: int | None      # stated (fixed) or None (searched)
    slice: str | None             # stated workload slice
    mesh: dict | None             # stated workload mesh
    parallelism: dict | None      # stated strategies
    max_ttft: float | None = None
    max_tpot: float | None = None
    min_tokens_per_s: float | None = None
    objective: str = "tokens_per_s"
    hbm_fraction: float = 0.9


def resolve_workload(name: str) -> Path:
    """A path, a plan model in workloads/models/, or a built-in workload name."""
    from .catalog import DATA, _resolve

    models = DATA / "workloads" / "models" / f"{name}.yaml"
    if "/" not in name and not name.endswith((".yaml", ".yml")) and models.exists():
        return models
    return _resolve(name, "workloads")


def load_request(workload: str, *, mode=None, batches=None, max_ttft=None, max_tpot=None,
                 min_tokens_per_s=None, objective="tokens_per_s",
                 hbm_fraction=0.9) -> Request:
    """Read the workload as written (a plan may omit mode, batch, ...), validate the stated
    fields with the usual file/line errors, and decide what is searched."""
    path = resolve_workload(workload)
    data, node = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a workload mapping with name and ops")
    data = hf_config.resolve_workload(data, path)  # config: PATH fills the architecture
    ops = data.get("ops")
    if not isinstance(ops, list) or len(ops) != 1 or not isinstance(ops[0], dict) \
            or ops[0].get("kind") != "transformer":
        raise SpecError(f"{path}: ops: plan needs a workload with exactly one op of kind "
                        f"transformer (a whole model); this one has "
                        f"{len(ops) if isinstance(ops, list) else 'no'} op(s)")
    op = dict(ops[0])
    op.pop("config", None)  # its fields are filled in: --explain's YAML stands alone
    mode = mode or op.get("mode")
    if mode is None:
        raise SpecError(f"{path}: ops[0].mode is not stated: state mode (train, prefill or "
                        f"decode) in the workload or pass --mode")
    if objective not in OBJECTIVES:
        raise SpecError(f"--objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if not 0 < hbm_fraction <= 1:
        raise SpecError(f"--hbm-fraction {hbm_fraction}: the share of HBM a plan may fill must "
                        f"be in (0, 1], e.g. 0.9")
    for flag, value, ok in (("--max-ttft", max_ttft, "prefill"), ("--max-tpot", max_tpot,
                                                                    "decode")):
        if value is not None and mode != ok:
            raise SpecError(f"{flag} limits {ok} (mode is {mode}): pass --mode {ok} or drop "
                            f"{flag}")
        if value is not None and not value > 0:
            raise SpecError(f"{flag} {value}: a latency limit must be positive (seconds)")
    if batches is None:
        batches = (op["batch"],) if "batch" in op else DEFAULT_BATCHES
    batches = tuple(sorted(set(int(b) for b in batches)))
    if not batches or min(batches) < 1:
        raise SpecError(f"--batch {batches}: batch sizes must be whole numbers >= 1")
    train = mode == "train"
    remats = (op["remat"],) if "remat" in op else (REMATS if train else ("none",))
    accums = (op["grad_accum"],) if "grad_accum" in op else (GRAD_ACCUMS if train else (1,))
    stated_par = op.get("parallelism")
    if stated_par is not None and not data.get("mesh"):
        raise SpecError(f"{path}: ops[0].parallelism is stated but the workload has no mesh: "
                        f"state slice, mesh and parallelism together, or omit parallelism to "
                        f"search it")
    if data.get("mesh") and not data.get("slice"):
        raise SpecError(f"{path}: mesh is stated without slice: state the slice the mesh lies "
                        f"on (e.g. slice: 2x4), or omit both to search them")
    # validate what is stated, with the searched fields at a harmless value
    probe = {k: v for k, v in op.items() if k not in ("parallelism", "microbatches")}
    probe.update(mode=mode, batch=batches[0])
    if mode != "train":
        for k in ("remat", "grad_accum", "optimizer"):
            if k in probe and probe[k] == TransformerOp.model_fields[k].default:
                del probe[k]
    probe_wl = {k: v for k, v in data.items() if k not in ("mesh", "slices")}
    probe_wl["ops"] = [probe]
    load_model(path, Workload, probe_wl, node)  # raises SpecError naming file, line, field
    if data.get("slices", 1) != 1:
        raise SpecError(f"{path}: slices: {data['slices']}: plan searches one slice (ICI); "
                        f"remove slices")
    base = {k: v for k, v in op.items() if k not in SEARCHED_FIELDS}
    return Request(name=str(data.get("name", path.stem)), path=path, op=base, mode=mode,
                   batches=batches, remats=tuple(remats), grad_accums=tuple(accums),
                   microbatches=op.get("microbatches"),
                   slice=str(data["slice"]) if data.get("slice") is not None else None,
                   mesh=data.get("mesh"), parallelism=stated_par, max_ttft=max_ttft,
                   max_tpot=max_tpot, min_tokens_per_s=min_tokens_per_s, objective=objective,
                   hbm_fraction=hbm_fraction)


# ---- slices and layouts -------------------------------------------------------------------

def slice_shapes(hw, chips: int) -> list[str]:
    """Every slice of ``chips`` chips on ``hw``: the shapes it is sold in (all axis orders),
    else every factorisation into its torus axes; a GPU: one node or whole NVLink domains."""
    ic = hw.interconnect
    if chips == 1:
        return ["1x1" if ic.topology in TORUS_DIMS else "1"]
    if ic.topology in TORUS_DIMS:
        nd = TORUS_DIMS[ic.topology]
        sold = [parse_shape(s) for s in (hw.slices or [])]
        sold = [s + (1,) * (nd - len(s)) for s in sold if math.prod(s) == chips]
        if hw.slices and not sold:
            shown = ", ".join(f"{s} ({math.prod(parse_shape(s))})" for s in hw.slices)
            raise SpecError(f"--chips {chips}: {hw.name} is not sold in a slice of {chips} "
                            f"chips; its slices are {shown}")
        if sold:
            shapes = {p for s in sold for p in itertools.permutations(s)}
        else:  # every factorisation the chip's documented shapes allow (topology.py)
            shapes = {f for f in _factorisations(chips, nd) if _valid(hw, f)}
            if not shapes:
                physical_axes(hw, next(_factorisations(chips, nd)))  # raises: says why
        return [format_shape(s) for s in sorted(shapes)]
    if ic.topology in GPU_TOPOLOGIES:
        dom = ic.domain_size or chips
        if chips <= dom:
            return [str(chips)]
        if chips % dom:
            raise SpecError(f"--chips {chips}: {hw.name} comes in nodes of {dom} GPUs "
                            f"(interconnect.domain_size); use a multiple of {dom} or at most "
                            f"{dom}")
        return [f"{chips // dom}x{dom}"]
    raise SpecError(f"--chips {chips}: {hw.name} has no chip-to-chip interconnect; use "
                    f"--chips 1")


def _valid(hw, shape: tuple) -> bool:
    try:
        physical_axes(hw, shape)
    except SpecError:
        return False
    return True


def _factorisations(n: int, k: int):
    if k == 1:
        yield (n,)
        return
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _factorisations(n // d, k - 1):
                yield (d,) + rest


def default_chips(hw) -> list[int]:
    if not hw.slices:
        node = hw.interconnect.domain_size if hw.interconnect is not None else None
        eg = f"1,{node},{2 * node}" if node else "1,8,16"
        raise SpecError(f"{hw.name} lists no slices (the shapes it is sold in): pass --chips "
                        f"N[,N...], e.g. --chips {eg} (one chip, one "
                        f"{'node' if node else 'host'}, two)")
    return sorted({math.prod(parse_shape(s)) for s in hw.slices})


@dataclass(frozen=True)
class Layout:
    slice: str
    mesh: tuple            # ((axis, size), ...), outermost first; () on one chip
    parallelism: tuple     # ((strategy, (axes...)), ...)

    @property
    def mesh_dict(self) -> dict:
        return dict(self.mesh)

    @property
    def par_dict(self) -> dict:
        return {s: list(a) for s, a in self.parallelism}

    def sizes(self) -> dict[str, int]:
        m = self.mesh_dict
        return {s: math.prod(m[a] for a in axes) for s, axes in self.parallelism}

    def describe(self) -> str:
        return ",".join(f"{s}={n}" for s, n in self.sizes().items()) or "single"


def _strategies(op: dict) -> tuple[str, ...]:
    return DENSE_STRATEGIES + (("expert",) if op.get("experts") else ())


def layouts(hw, chips: int, req: Request) -> list[Layout]:
    """The slice/mesh/strategy layouts to search on ``chips`` chips (stated fields fixed)."""
    if req.slice is not None:
        shapes = [req.slice]
    else:
        shapes = slice_shapes(hw, chips)
    strategies = _strategies(req.op)
    out, seen = [], set()
    for shape in shapes:
        axes = physical_axes(hw, shape)
        if math.prod(a.length for a in axes) != chips:
            raise SpecError(f"{req.path}: slice {shape} has {math.prod(a.length for a in axes)} "
                            f"chips, not {chips}: drop --chips or the workload's slice")
        if req.mesh is not None:  # the mesh is stated: its axes take strategies
            if req.parallelism:
                par = tuple((s, tuple([a] if isinstance(a, str) else a))
                            for s, a in req.parallelism.items())
                out.append(Layout(shape, tuple(req.mesh.items()), par))
                continue
            for assign in itertools.product(strategies, repeat=len(req.mesh)):
                par: dict[str, list[str]] = {}
                for name, s in zip(req.mesh, assign):
                    par.setdefault(s, []).append(name)
                out.append(Layout(shape, tuple(req.mesh.items()),
                                  tuple((s, tuple(a)) for s, a in par.items())))
            continue
        real = [a for a in axes if a.length > 1]
        if not real:
            out.append(Layout(shape, (), ()))
            continue
        for assign in itertools.product(strategies, repeat=len(real)):
            key = (tuple(sorted((a.length, a.wraps, a.links, a.level, s)
                                for a, s in zip(real, assign))),
                   tuple(a.length for a, s in zip(real, assign) if s == "pipeline"))
            if key in seen:  # a permutation of identical axes: the same costs
                continue
            seen.add(key)
            out.append(_layout_of(shape, real, assign))
    return out


def _layout_of(shape, real, assign) -> Layout:
    runs: list[list] = []  # [strategy, size]
    for a, s in zip(real, assign):
        if runs and runs[-1][0] == s:
            runs[-1][1] *= a.length
        else:
            runs.append([s, a.length])
    count = {s: sum(1 for r in runs if r[0] == s) for s, _ in runs}
    mesh, par, k = [], {}, {}
    for s, size in runs:
        k[s] = k.get(s, 0) + 1
        name = s if count[s] == 1 else f"{s}{k[s]}"
        mesh.append((name, size))
        par.setdefault(s, []).append(name)
    return Layout(shape, tuple(mesh), tuple((s, tuple(a)) for s, a in par.items()))


def _divides(base: TransformerOp, lay: Layout) -> str | None:
    """Why a layout cannot hold the model (None: it can): make_plan's own checks, on a batch of
    one sequence per shard (the batch's own divisibility is checked over the whole grid)."""
    shards = math.prod(lay.sizes().get(s, 1) for s in BATCH_STRATEGIES)
    op = base.model_copy(update={"parallelism": lay.par_dict, "batch": shards,
                                 "microbatches": 1, "grad_accum": 1})
    try:
        make_plan(op, lay.mesh_dict)
    except SpecError as e:
        return str(e)
    return None


# ---- the search ---------------------------------------------------------------------------

@dataclass
class Result:
    req: Request
    hardware: list
    table: pd.DataFrame            # every evaluated configuration (reason '' = feasible)
    layouts: list                  # Layout by layout_id
    searched: int
    infeasible: dict
    seconds: float
    not_evaluated: list = field(default_factory=list)  # (hw, chips, layout, why) structures

    @property
    def feasible(self) -> pd.DataFrame:
        return self.table[self.table["reason"] == ""]

    def ranked(self) -> pd.DataFrame:
        f = self.feasible
        obj = self.req.objective
        if obj == "cost":
            keys, asc = ["usd_per_mtok", "tokens_per_s"], [True, False]
        elif obj == "latency":
            keys, asc = ["t_step", "tokens_per_s"], [True, False]
        else:
            keys, asc = ["tokens_per_s", "tokens_per_s_per_chip", "memory_bytes_per_chip"], \
                [False, False, True]
        return f.sort_values(keys, ascending=asc, kind="stable").reset_index(drop=True)


def search(req: Request, hardware: list, chips: list[int] | None = None,
           progress: bool = False) -> Result:
    """Evaluate every configuration of ``req`` on the chips (``chips``: chip counts, else each
    chip's sold slices, or the stated slice's)."""
    from .model.batched import prepare_all

    if req.objective == "cost":
        missing = [h.name for h in hardware if h.price_per_hour is None]
        if missing:
            raise SpecError(f"--objective cost needs price_per_hour on every chip searched; "
                            f"{', '.join(missing)} has none (add it with a source, or drop "
                            f"that chip)")
    t0 = time.perf_counter()
    jobs = []  # (hw index, chips, layout)
    all_layouts: list[Layout] = []
    for hi, hw in enumerate(hardware):
        if req.slice is not None:
            n_stated = math.prod(parse_shape(req.slice))
            if chips and set(chips) != {n_stated}:
                raise SpecError(f"--chips {','.join(map(str, chips))} disagrees with the "
                                f"workload's slice {req.slice} ({n_stated} chips): drop one")
            counts = [n_stated]
        else:
            counts = chips or default_chips(hw)
        for n in counts:
            for lay in layouts(hw, n, req):
                jobs.append((hi, n, len(all_layouts)))
                all_layouts.append(lay)
    structures = [(j, r) for j in jobs for r in req.remats]
    it = structures
    if progress:
        from tqdm import tqdm

        it = tqdm(structures, desc="plan", unit="structure", leave=False, delay=1.0,
                  disable=None)
    B = np.asarray(req.batches, dtype=np.int64)
    base = TransformerOp.model_validate(candidate_op(req, Layout("", (), ()), "none", 1, 1, 1, 1))
    frames = []
    counts = dict.fromkeys(REASONS, 0)
    searched = 0
    skipped = []
    pending: list = []  # prepared structures, evaluated together (model/batched.py)
    for (hi, n, li), remat in it:
        hw, lay = hardware[hi], all_layouts[li]
        sizes = lay.sizes()
        pp = sizes.get("pipeline", 1)
        if req.microbatches is not None:
            micro = (req.microbatches,)
        else:
            micro = tuple(pp * f for f in MICRO_FACTORS) if pp > 1 else (1,)
        grid = np.array(list(itertools.product(B, micro, req.grad_accums)), dtype=np.int64)
        b, m, g = grid[:, 0], grid[:, 1], grid[:, 2]
        searched += len(grid)
        why = _divides(base, lay)
        if why is not None:
            counts["divisibility"] += len(grid)
            skipped.append((hi, n, li, why))
            continue
        shards = math.prod(sizes.get(s, 1) for s in BATCH_STRATEGIES)
        ok = b % (shards * m * g) == 0
        counts["divisibility"] += int((~ok).sum())
        if not ok.any():
            skipped.append((hi, n, li, f"no batch splits into {shards} shards x microbatches x "
                                       f"grad_accum"))
            continue
        b, m, g = b[ok], m[ok], g[ok]
        wl = candidate_workload(req, lay, remat, int(b[0]), int(m[0]), int(g[0]), pp)
        for idx, prepared in prepare_all(hw, wl, b, m, g):
            pending.append(((hw, hi, n, li, remat, b[idx], m[idx], g[idx]), prepared))
        if len(pending) >= PENDING:
            frames += _evaluate(req, pending)
            pending = []
    frames += _evaluate(req, pending)
    table = pd.DataFrame({c: np.concatenate([f[c] for f in frames]) for c in frames[0]}) \
        if frames else pd.DataFrame(
        columns=["hi", "chip", "chips", "layout_id", "remat", "batch", "microbatches",
                 "grad_accum", "t_step", "tokens_per_s", "reason"])
    if len(table):
        reason = np.full(len(table), "", dtype=object)
        table["fits_memory"] = evaluate(FITS_MEMORY, {
            "memory_bytes_per_chip": table["memory_bytes_per_chip"].to_numpy(),
            "hbm_capacity": table["hbm_capacity"].to_numpy(), "hbm_fraction": req.hbm_fraction})
        checks = [("memory", ~table["fits_memory"].to_numpy())]
        lat = table["t_step"].to_numpy()
        if req.max_ttft is not None:
            checks.append(("max_ttft", lat > req.max_ttft))
        if req.max_tpot is not None:
            checks.append(("max_tpot", lat > req.max_tpot))
        if req.min_tokens_per_s is not None:
            checks.append(("min_tokens_per_s",
                           table["tokens_per_s"].to_numpy() < req.min_tokens_per_s))
        for name, bad in checks:
            hit = bad & (reason == "")
            reason[hit] = name
            counts[name] += int(hit.sum())
        table["reason"] = reason
    return Result(req=req, hardware=hardware, table=table, layouts=all_layouts,
                  searched=searched, infeasible=counts, seconds=time.perf_counter() - t0,
                  not_evaluated=skipped)


PENDING = 2000  # structures prepared before they are evaluated together


def _evaluate(req, pending: list) -> list[dict]:
    from .model.batched import evaluate_many

    results = evaluate_many([p for _, p in pending])
    return [_frame(req, *meta, res) for (meta, _), res in zip(pending, results)]


def _frame(req, hw, hi, n, li, remat, b, m, g, res) -> dict:
    k = len(b)
    out = {"hi": np.full(k, hi), "chip": np.full(k, hw.name, dtype=object),
           "chips": np.full(k, n), "layout_id": np.full(k, li),
           "remat": np.full(k, remat, dtype=object), "batch": b, "microbatches": m,
           "grad_accum": g, "t_step": res["t_step"], "tokens_per_s": res["tokens_per_s"],
           "mfu": res["mfu"], "memory_bytes_per_chip": res["memory_bytes_per_chip"],
           "hbm_capacity": np.full(k, float(hw.hbm_capacity))}
    out.update({c: evaluate(f, out) for c, f in PLAN_FORMULAS.items()})
    out["usd_per_mtok"] = res.get("usd_per_mtok", np.full(k, np.nan))
    return out


def candidate_op(req: Request, lay: Layout, remat: str, batch: int, micro: int, accum: int,
                 pp: int) -> dict:
    op = dict(req.op)
    op.update(mode=req.mode, batch=int(batch))
    if lay.parallelism:
        op["parallelism"] = lay.par_dict
    if req.mode == "train":
        op.update(remat=remat, grad_accum=int(accum))
    if pp > 1:
        op["microbatches"] = int(micro)
    return op


def candidate_data(req, lay, remat, batch, micro, accum, pp) -> dict:
    data = {"name": f"{req.name}-plan", "slice": lay.slice}
    if lay.mesh:
        data["mesh"] = lay.mesh_dict
    data["ops"] = [candidate_op(req, lay, remat, batch, micro, accum, pp)]
    return data


def candidate_workload(req, lay, remat, batch, micro, accum, pp) -> Workload:
    return Workload.model_validate(candidate_data(req, lay, remat, batch, micro, accum, pp))


# ---- presenting ---------------------------------------------------------------------------

COLUMNS = ["chip", "chips", "slice", "mesh", "parallelism", "microbatches", "remat",
           "grad_accum", "batch", "t_step", "tokens_per_s", "tokens_per_s_per_chip", "mfu",
           "memory_bytes_per_chip", "fits_memory"]


def latency_column(mode: str) -> str | None:
    return {"prefill": "ttft", "decode": "t_per_token"}.get(mode)


def top(result: Result, k: int) -> pd.DataFrame:
    """The best ``k`` feasible configurations with the issue's columns."""
    r = result.ranked().head(k).copy()
    lays = [result.layouts[i] for i in r["layout_id"]]
    r["slice"] = [lay.slice for lay in lays]
    r["mesh"] = [",".join(f"{a}:{n}" for a, n in lay.mesh) or "-" for lay in lays]
    r["parallelism"] = [lay.describe() for lay in lays]
    cols = list(COLUMNS)
    lat = latency_column(result.req.mode)
    if lat:
        r[lat] = r["t_step"]
        cols.append(lat)
    if r["usd_per_mtok"].notna().any():
        cols.append("usd_per_mtok")
    r.insert(0, "rank", np.arange(1, len(r) + 1))
    return r[["rank"] + cols + ["layout_id", "hi"]]


def candidate_yaml(result: Result, row) -> str:
    """The workload YAML of one configuration (``perfmodel roofline`` evaluates it alike)."""
    import yaml

    lay = result.layouts[int(row["layout_id"])]
    pp = lay.sizes().get("pipeline", 1)
    data = candidate_data(result.req, lay, row["remat"], int(row["batch"]),
                          int(row["microbatches"]), int(row["grad_accum"]), pp)
    data["name"] = f"{result.req.name}-plan-{row['chip']}-{int(row['chips'])}"
    return yaml.safe_dump(data, sort_keys=False, width=100)


def to_json(result: Result, k: int) -> dict:
    t = top(result, k)
    cands = []
    for _, row in t.iterrows():
        lay = result.layouts[int(row["layout_id"])]
        c = {"rank": int(row["rank"]), "chip": row["chip"], "chips": int(row["chips"]),
             "slice": lay.slice, "mesh": lay.mesh_dict,
             "parallelism": lay.par_dict, "microbatches": int(row["microbatches"]),
             "remat": row["remat"], "grad_accum": int(row["grad_accum"]),
             "batch": int(row["batch"])}
        for col in ("t_step", "tokens_per_s", "tokens_per_s_per_chip", "mfu",
                    "memory_bytes_per_chip", "ttft", "t_per_token", "usd_per_mtok"):
            if col in row and pd.notna(row[col]):
                c[col] = float(row[col])
        c["fits_memory"] = bool(row["fits_memory"])
        cands.append(c)
    return {"schema_version": SCHEMA_VERSION, "workload": result.req.name,
            "mode": result.req.mode, "objective": result.req.objective,
            "searched": int(result.searched), "feasible": int(len(result.feasible)),
            "infeasible_by_reason": {k: int(v) for k, v in result.infeasible.items()},
            "seconds": result.seconds, "candidates": cands}


def _fmt_b(x: float) -> str:
    return fmt_si(x, "B", 4)


def why_lines(result: Result) -> list[str]:
    """Per chip and chip count: the best feasible configuration, or why none is."""
    from .units import fmt_si

    req, t = result.req, result.table
    lines = []
    for hi, hw in enumerate(result.hardware):
        counts = {int(n) for h, n, _, _ in result.not_evaluated if h == hi}
        if len(t):
            counts |= set(t.loc[t["hi"] == hi, "chips"].astype(int))
        for n in sorted(counts):
            sub = t[(t["hi"] == hi) & (t["chips"] == n)] if len(t) else t
            feas = sub[sub["reason"] == ""] if len(sub) else sub
            shapes = sorted({result.layouts[i].slice for i in sub["layout_id"]}) if len(sub) \
                else []
            head = f"{hw.name} x{n}" + (f" ({', '.join(shapes[:4])})" if shapes else "")
            if len(feas):
                best = feas.sort_values("tokens_per_s", ascending=False).iloc[0]
                lines.append(f"{head}: {len(feas):,} feasible; best "
                             f"{best['tokens_per_s']:,.0f} tokens/s "
                             f"({best['tokens_per_s_per_chip']:,.0f} per chip), step "
                             f"{fmt_si(best['t_step'], 's')}")
                continue
            if not len(sub):
                lines.append(f"{head}: none feasible: no layout divides the model or batch")
                continue
            lines.append(f"{head}: none feasible: {_why_none(req, hw, sub)}")
        feasible_sizes = [n for n in sorted(counts) if len(t) and (
            (t["hi"] == hi) & (t["chips"] == n) & (t["reason"] == "")).any()]
        if feasible_sizes:
            lines.append(f"{hw.name}: the smallest feasible slice has {feasible_sizes[0]} chips")
    return lines


def _why_none(req: Request, hw, sub: pd.DataFrame) -> str:
    """Why none of ``sub`` (evaluated configurations) is feasible: the closest miss."""
    from .units import fmt_si

    limit = memory_limit(req, hw.hbm_capacity)
    why = []
    mem = sub["memory_bytes_per_chip"].min()
    fit = sub[sub["fits_memory"]]
    if not len(fit):
        why.append(f"memory: the smallest need is {_fmt_b(mem)} per chip > {_fmt_b(limit)} "
                   f"({req.hbm_fraction:g} of {fmt_capacity(hw.hbm_capacity)} HBM)")
    else:
        for flag, lim in (("max_ttft", req.max_ttft), ("max_tpot", req.max_tpot)):
            if lim is not None:
                why.append(f"{flag.replace('_', '-')}: the fastest that fits memory takes "
                           f"{fmt_si(fit['t_step'].min(), 's')} > {fmt_si(lim, 's')}")
        if req.min_tokens_per_s is not None:
            why.append(f"min-tokens-per-s: the most that fits memory is "
                       f"{fit['tokens_per_s'].max():,.0f} < {req.min_tokens_per_s:,.0f}")
    return "; ".join(why) or "see the counts"


def single_strategy_lines(result: Result) -> list[str]:
    """Each strategy alone over the whole slice (pure data parallelism, pure FSDP, ...)."""
    req, t = result.req, result.table
    lines = []
    for li, lay in enumerate(result.layouts):
        if len(lay.parallelism) != 1:
            continue
        (s, _), = lay.parallelism
        sub = t[t["layout_id"] == li] if len(t) else t
        n = math.prod(lay.mesh_dict.values())
        head = f"{s} {n} ({lay.slice})"
        if not len(sub):
            why = [w for h, c, i, w in result.not_evaluated if i == li]
            lines.append(f"{head}: infeasible (divisibility: {why[0] if why else '-'})")
            continue
        feas = sub[sub["reason"] == ""]
        hw = result.hardware[int(sub["hi"].iloc[0])]
        if len(feas):
            best = feas.sort_values("tokens_per_s", ascending=False).iloc[0]
            lines.append(f"{head} on {hw.name}: feasible, best {best['tokens_per_s']:,.0f} "
                         f"tokens/s (remat {best['remat']}, grad_accum "
                         f"{int(best['grad_accum'])}, batch {int(best['batch'])})")
        else:
            lines.append(f"{head} on {hw.name}: infeasible ({_why_none(req, hw, sub)})")
    return lines


def table_text(result: Result, k: int) -> str:
    from .units import fmt_si

    t = top(result, k)
    req = result.req
    head = (f"plan {req.name} ({req.mode}), objective {req.objective}: searched "
            f"{result.searched:,} configurations in {result.seconds:.2f} s; feasible "
            f"{len(result.feasible):,}; infeasible "
            + (", ".join(f"{r} {c:,}" for r, c in result.infeasible.items() if c) or "0"))
    lines = [head]
    if len(t):
        show = t.drop(columns=["layout_id", "hi"]).copy()
        # columns that say nothing here: training-only fields in inference, and a fits_memory
        # that every shown (feasible) candidate passes (JSON and CSV keep them all)
        quiet = [c for c in ("microbatches", "remat", "grad_accum") if req.mode != "train"
                 and c in show and show[c].nunique() <= 1]
        if "fits_memory" in show and show["fits_memory"].astype(bool).all():
            quiet.append("fits_memory")
        show = show.drop(columns=quiet)
        for c in ("t_step", "ttft", "t_per_token"):
            if c in show:
                show[c] = [fmt_si(v, "s") for v in show[c]]
        show["memory_bytes_per_chip"] = [_fmt_b(v) for v in show["memory_bytes_per_chip"]]
        for c in ("tokens_per_s", "tokens_per_s_per_chip"):
            show[c] = [f"{v:,.0f}" for v in show[c]]
        show["mfu"] = [f"{100 * v:.1f}%" for v in show["mfu"]]
        if "usd_per_mtok" in show:
            show["usd_per_mtok"] = [f"{v:.4g}" for v in show["usd_per_mtok"]]
        with pd.option_context("display.width", 250, "display.max_columns", 30,
                               "display.max_colwidth", 40):
            lines.append(show.to_string(index=False))
    else:
        lines.append("no feasible configuration")
    lines.append("\nby chip and size:")
    lines += ["  " + s for s in why_lines(result)]
    ss = single_strategy_lines(result)
    if ss:
        lines.append("\none strategy over the whole slice:")
        lines += ["  " + s for s in ss]
    return "\n".join(lines)


def explain_text(result: Result, rank: int) -> str:
    """The rank's workload YAML and why it ranks there: its step by ledger group, memory,
    and the best configuration of every other strategy layout."""
    from .results import to_json as engine_json
    from .model import expand_workload
    from .units import fmt_si
    import yaml

    ranked = result.ranked()
    if not 1 <= rank <= len(ranked):
        raise SpecError(f"--explain {rank}: there are {len(ranked)} feasible configurations; "
                        f"give a rank from 1 to {len(ranked)}")
    row = ranked.iloc[rank - 1]
    text = candidate_yaml(result, row)
    hw = result.hardware[int(row["hi"])]
    wl = expand_workload(Workload.model_validate(yaml.safe_load(text)))
    tot = engine_json(hw, wl)["total"]
    out = [f"# rank {rank} on {hw.name}: perfmodel roofline -H {hw.name} -w FILE gives the same "
           f"figures", text.rstrip(), "", "why:"]
    out.append(f"  step {fmt_si(tot['t_step'], 's')} ({tot['t_step_basis']}), "
               f"{tot['tokens_per_s']:,.0f} tokens/s, MFU {100 * tot['mfu']:.1f}%")
    for g, tl in tot["group_times"].items():
        out.append(f"  {g:<10} {fmt_si(tl, 's'):>10}  {tot['bounds'][g]}-bound")
    parts = ", ".join(f"{k} {_fmt_b(v)}" for k, v in tot["memory_parts"].items() if v)
    out.append(f"  memory per chip {_fmt_b(tot['memory_bytes_per_chip'])} of "
               f"{_fmt_b(memory_limit(result.req, hw.hbm_capacity))} allowed: {parts}")
    f = result.feasible
    others = f[(f["layout_id"] != row["layout_id"]) & (f["chips"] == row["chips"])
               & (f["hi"] == row["hi"])]
    if len(others):
        best = others.groupby("layout_id")["tokens_per_s"].max().sort_values(ascending=False)
        out.append("  the best of other layouts on the same chips:")
        for li, tps in best.head(4).items():
            out.append(f"    {result.layouts[li].describe():<36} {tps:,.0f} tokens/s "
                       f"({tps / row['tokens_per_s'] - 1:+.1%})")
    return "\n".join(out)


def csv_table(result: Result, k: int) -> pd.DataFrame:
    return top(result, k).drop(columns=["layout_id", "hi"])
