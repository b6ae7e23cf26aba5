"""Sweeps: every combination of varied op fields, evaluated vectorised with numpy.

``--vary FIELD=LO..HI:STEP`` (numeric step), ``FIELD=LO..HI:log2`` (LO, 2 LO, 4 LO, ... <= HI)
or ``FIELD=a,b,c``. A field applies to every op that has it. Numeric fields become numpy arrays
fed through the same op formulas as single evaluations; non-numeric ones (impl, dtype, causal)
are looped over. Each distinct value is validated as the op spec would validate it.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .engine import op_columns
from .formula import NS, Labels
from .limits import (CSV_CHUNK_ROWS, EXCEL_ROWS, MAX_BATCHED_CONFIGS, MAX_GRID_POINTS,
                     MAX_MODEL_CONFIGS, MAX_ROWS, MAX_VARY_VALUES)
from .roofline import COLUMNS
from .specs import SpecError, Workload

OUT_COLUMNS = ["flops", "hbm_bytes", "intensity", "t_compute", "t_memory", "t_lower", "t_upper",
               "bound"]
MAX_VALUES = MAX_VARY_VALUES
__all__ = ["EXCEL_ROWS", "MAX_MODEL_CONFIGS", "MAX_ROWS", "sweep", "sweep_chunks", "sweep_rows",
           "sweep_totals", "crossovers", "parse_vary", "parse_varies"]
_RANGE = re.compile(r"^\s*(.*?)\s*\.\.\s*([^:]*?)\s*(?::\s*(\S*))?\s*$")


@dataclass(frozen=True)
class Vary:
    field: str
    values: tuple  # numbers or strings/bools

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The values as one float array (numeric Varys; computed once)."""
        return np.asarray(self.values, dtype=float)

    @functools.cached_property
    def numeric(self) -> bool:
        kinds = set(map(type, self.values))  # a few types for thousands of values
        return all(issubclass(t, (int, float)) and not issubclass(t, bool) for t in kinds)


def _number(s: str, arg: str):
    try:
        x = float(s)
    except ValueError:
        raise SpecError(f"--vary {arg!r}: {s!r} is not a number.") from None
    if not math.isfinite(x):
        raise SpecError(f"--vary {arg!r}: {s!r} must be finite.")
    return int(x) if x.is_integer() else x


def parse_vary(arg: str) -> Vary:
    field, eq, spec = arg.partition("=")
    field = field.strip()
    if not eq or not field or not spec.strip():
        raise SpecError(f"--vary {arg!r}: expected FIELD=LO..HI:STEP, FIELD=LO..HI:log2 or "
                        f"FIELD=a,b,c (e.g. m=128..4096:log2).")
    m = _RANGE.match(spec)
    if m:
        lo, hi = _number(m[1], arg), _number(m[2], arg)
        step = m[3] or "1"
        if hi < lo:
            raise SpecError(f"--vary {arg!r}: LO {lo} is above HI {hi}.")
        if step == "log2":
            if lo <= 0:
                raise SpecError(f"--vary {arg!r}: a log2 range needs LO > 0.")
            n = int(math.floor(math.log2(hi / lo) + 1e-9)) + 1
            vals = [lo * 2**i for i in range(n)]
        else:
            st = _number(step, arg)
            if st <= 0:
                raise SpecError(f"--vary {arg!r}: STEP must be positive (or 'log2'), got {step}.")
            n = int(math.floor((hi - lo) / st + 1e-9)) + 1
            if n > MAX_VALUES:
                raise SpecError(f"--vary {arg!r}: {n:,} values is more than the limit of "
                                f"{MAX_VALUES:,} (MAX_VARY_VALUES); use a larger STEP or log2.")
            vals = lo + st * np.arange(n)
        arr = np.asarray(vals, dtype=float)
        vals = arr.astype(np.int64).tolist() if np.all(arr == np.floor(arr)) else \
            [int(v) if v.is_integer() else v for v in arr.tolist()]
        out = Vary(field, tuple(vals))
        out.__dict__.update(array=arr, numeric=True)  # the cached properties, known here
        return out
    else:
        import yaml

        vals = []
        for s in spec.split(","):
            s = s.strip()
            if not s:
                raise SpecError(f"--vary {arg!r}: empty value in the list.")
            vals.append(yaml.safe_load(s))
        if len(set(map(repr, vals))) != len(vals):
            raise SpecError(f"--vary {arg!r}: a value is listed twice; list each once.")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            vals = sorted(vals)  # numbers in order: crossovers read along them
    return Vary(field, tuple(vals))


def parse_varies(args: list) -> list[Vary]:
    """Every --vary (strings or Vary objects); a field varied twice is an error."""
    varies = [parse_vary(v) if isinstance(v, str) else v for v in args]
    seen = set()
    for v in varies:
        if v.field in seen:
            raise SpecError(f"--vary {v.field}: the field is varied twice; give one --vary per "
                            f"field (a list covers several values: {v.field}=a,b,c).")
        seen.add(v.field)
    return varies


def _unknown_field(field: str, known, what: str) -> SpecError:
    import difflib

    close = difflib.get_close_matches(field, sorted(known), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return SpecError(f"--vary {field}: {what}.{hint} Fields: {', '.join(sorted(known))}.")


def _int_field(model, field: str) -> bool:
    """Whether ``model.field`` holds whole numbers (Count, Optional[Count], ...)."""
    from .specs import bare_type

    return bare_type(model.model_fields[field].annotation)[0] is int


def _validate(wl: Workload, varies: list[Vary]) -> None:
    fields_any = {f for op in wl.ops for f in type(op).model_fields}
    for v in varies:
        if v.field not in fields_any:
            raise _unknown_field(v.field, fields_any, f"no op in workload {wl.name!r} has a field "
                                                      f"{v.field!r}")
        for op in wl.ops:
            if v.field not in type(op).model_fields:
                continue
            if v.numeric and _int_field(type(op), v.field):
                frac = next((x for x in v.values if not float(x).is_integer()), None)
                if frac is not None:
                    raise SpecError(f"--vary {v.field}: value {frac!r} is invalid for op "
                                    f"{op.name!r} ({v.field} is a count: not a whole number); "
                                    f"use a whole-number STEP (e.g. {v.field}=1..1024:1) or log2.")
            # every distinct value when few; the extremes otherwise (integrality checked below)
            check = v.values if len(v.values) <= 2000 else (min(v.values), max(v.values))
            for x in check:
                try:
                    type(op).model_validate({**op.model_dump(), v.field: x})
                except Exception as e:  # pydantic ValidationError
                    errs = getattr(e, "errors", lambda: [])()
                    msg = errs[0]["msg"].removeprefix("Value error, ") if errs else str(e)
                    raise SpecError(f"--vary {v.field}: value {x!r} is invalid for op "
                                    f"{op.name!r} ({msg}); write FIELD=LO..HI:STEP, "
                                    f"FIELD=LO..HI:log2 or FIELD=a,b,c.") from None


def sweep(workload: Workload, hardware: list, vary: list, *, progress: bool = False,
          max_rows: int | None = MAX_ROWS) -> pd.DataFrame:
    """One row per (configuration, hardware, op): the varied fields, op, hardware and the
    roofline columns. ``vary`` holds Vary objects or '--vary' strings. More than ``max_rows``
    rows (``limits.MAX_ROWS`` by default; None: no cap) is refused before any is computed."""
    frames = list(sweep_chunks(workload, hardware, vary, progress=progress, max_rows=max_rows))
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    df.attrs = dict(frames[0].attrs)
    return df


def _grid(workload: Workload, hardware: list, varies: list[Vary]):
    """(numeric Varys, categorical Varys, grid points, rows) of a kernel-workload sweep."""
    cat = [v for v in varies if not v.numeric]
    num = [v for v in varies if v.numeric]
    n_num = math.prod(len(v.values) for v in num)
    n_cat = math.prod(len(v.values) for v in cat)
    if n_num * n_cat > MAX_GRID_POINTS:
        raise SpecError(f"--vary {' '.join(v.field for v in varies)}: {n_num * n_cat:,} "
                        f"configurations is more than the limit of {MAX_GRID_POINTS:,} "
                        f"(MAX_GRID_POINTS); vary fewer values.")
    return num, cat, n_num, n_num * n_cat * len(hardware) * len(workload.ops)


def sweep_rows(workload: Workload, hardware: list, vary: list) -> int:
    """How many rows ``sweep`` would return (validating ``vary``; nothing is evaluated)."""
    varies = parse_varies(vary)
    from .model import expansion

    if expansion(workload) is not None:
        combos = _model_configs(workload, hardware, varies)
        return combos * len(hardware) * len(workload.ops)
    _validate(workload, varies)
    return _grid(workload, hardware, varies)[3]


def _too_many(rows: int, max_rows: int) -> SpecError:
    return SpecError(f"a sweep of {rows:,} rows is more than the row limit of {max_rows:,} "
                     f"(MAX_ROWS, or --max-rows / max_rows= where given): vary fewer values, "
                     f"raise the limit, or aggregate (--totals, sweep_totals_chunked).")


def sweep_chunks(workload: Workload, hardware: list, vary: list, *, progress: bool = False,
                 max_rows: int | None = MAX_ROWS, chunk_rows: int = CSV_CHUNK_ROWS):
    """``sweep``'s table in pieces of about ``chunk_rows`` rows (a generator). Each piece holds
    every op of the configurations it covers, so ``sweep_totals`` of a piece is complete; the
    grid is never built whole, so memory stays bounded however many rows there are."""
    varies = parse_varies(vary)
    from .model import expansion

    if expansion(workload) is not None:
        rows = sweep_rows(workload, hardware, varies)
        if max_rows is not None and rows > max_rows:
            raise _too_many(rows, max_rows)
        yield _sweep_model(workload, hardware, varies, progress=progress)
        return
    _validate(workload, varies)
    num, cat, n_num, rows = _grid(workload, hardware, varies)
    if max_rows is not None and rows > max_rows:
        raise _too_many(rows, max_rows)
    values = [np.asarray(v.values, dtype=float) for v in num]
    shape = tuple(len(v) for v in values)
    ints = [v.field for v in num if all(isinstance(x, int) for x in v.values)]
    prices = {hw.name: hw.price_per_hour for hw in hardware}
    per = max(1, chunk_rows // max(1, len(workload.ops) * len(hardware)))  # grid points per piece
    combos = list(itertools.product(*[v.values for v in cat])) if cat else [()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rows, desc="sweep", unit="row", unit_scale=True, leave=False,
                   delay=1.0)  # shown only if the sweep takes a while
    try:
        for combo in combos:
            upd = dict(zip([v.field for v in cat], combo))
            for a in range(0, n_num, per):
                b = min(n_num, a + per)
                idx = np.unravel_index(np.arange(a, b), shape) if num else ()
                flat = {v.field: vals[i] for v, vals, i in zip(num, values, idx)}
                # every chip in each piece, so chips can be compared as the pieces stream
                frames = [_eval_op(op, hw, workload, upd, flat, b - a)
                          for hw in hardware for op in workload.ops]
                df = pd.concat(frames, ignore_index=True)
                for f in ints:  # whole-number fields (m, seq, ...) read back as integers
                    df[f] = df[f].astype(np.int64)
                df.attrs["prices"] = prices
                if bar is not None:
                    bar.update(len(df))
                yield df
    finally:
        if bar is not None:
            bar.close()


def _model_configs(workload: Workload, hardware: list, varies: list) -> int:
    """Configurations of a transformer sweep, checked against MAX_MODEL_CONFIGS."""
    from .specs import TransformerOp

    fields = TransformerOp.model_fields
    for v in varies:
        if v.field not in fields:
            raise _unknown_field(v.field, fields, f"workload {workload.name!r} is a transformer; "
                                                  f"vary its fields (e.g. batch, seq, d_model)")
        if v.numeric and _int_field(TransformerOp, v.field):
            vals = v.array  # a million values: one numpy pass
            odd = np.flatnonzero(vals != np.floor(vals))
            frac = v.values[odd[0]] if odd.size else None
            if frac is not None:
                raise SpecError(f"--vary {v.field}: value {frac!r} is not a whole number, but "
                                f"{v.field} is a count; use a whole-number STEP or log2.")
    n = math.prod(len(v.values) for v in varies)
    if _batched(hardware, varies):
        if n * len(hardware) > MAX_BATCHED_CONFIGS:
            raise SpecError(f"a transformer sweep of {n * len(hardware):,} configurations is "
                            f"more than the limit of {MAX_BATCHED_CONFIGS:,} "
                            f"(MAX_BATCHED_CONFIGS): vary fewer values.")
    elif n * len(hardware) > MAX_MODEL_CONFIGS:
        raise SpecError(f"a transformer sweep of {n * len(hardware):,} configurations is more "
                        f"than the limit of {MAX_MODEL_CONFIGS:,} (MAX_MODEL_CONFIGS; each is "
                        f"expanded again): vary fewer values.")
    return n


def _batched(hardware: list, varies: list) -> bool:
    """Whether a transformer sweep takes the array path (model/batched.py): numeric batch,
    grad_accum or microbatches only, on uncalibrated chips (calibrated ones price one-row
    products with their own fitted group, chosen per row: the per-configuration loop)."""
    return bool(varies) and all(v.field in BATCHED_FIELDS and v.numeric for v in varies) and \
        all(hw.calibration is None for hw in hardware)


def _sweep_model(workload: Workload, hardware: list, varies: list, progress: bool) -> pd.DataFrame:
    """Sweep the fields of a transformer op (batch, seq, d_model, attention...). Numbers go
    through to_json's recording on arrays (_sweep_traced); when a configuration leaves it (a
    guard fails), batch, grad_accum and microbatches through the batched expansion
    (_sweep_batched), anything else through a loop over configurations, each to_json's (the
    compiled function where a recording covers it, else expanded again, about a millisecond).
    Totals (``sweep_totals``) are the step totals of results.to_json."""
    from .results import to_json
    from .model import expand_workload, expansion, source_workload

    src = source_workload(workload)
    spec = expansion(workload).spec  # the varied fields were checked (sweep_rows)
    df = _sweep_traced(src, spec, hardware, varies)
    if df is not None:
        return df
    if _batched(hardware, varies):
        return _sweep_batched(src, spec, hardware, varies)
    combos = list(itertools.product(*[v.values for v in varies]))
    it = combos
    if progress:
        from tqdm import tqdm

        it = tqdm(combos, desc="sweep", unit="config", leave=False, delay=1.0)
    rows, totals = [], []
    names = [v.field for v in varies]
    for combo in it:
        upd = dict(zip(names, combo))
        ops = [({**op.model_dump(exclude_none=True), **upd} if op is spec else op.model_dump(exclude_none=True))
               for op in src.ops]
        try:
            wl = expand_workload(Workload.model_validate({**src.model_dump(exclude={"ops"}), "ops": ops}))
        except Exception as e:  # pydantic ValidationError or SpecError from the expansion
            msg = str(e).splitlines()
            raise SpecError(f"--vary {', '.join(f'{k}={v}' for k, v in upd.items())}: invalid "
                            f"transformer: {msg[2].strip() if len(msg) > 2 else msg[0]}") from None
        for hw in hardware:
            j = to_json(hw, wl)  # compiled per structure when its recording covers wl
            for r in j["ops"]:
                rows.append({**upd, "op": r["name"], "hardware": hw.name, **{c: r.get(c) for c in OUT_COLUMNS}})
            t = j["total"]
            totals.append({**upd, "hardware": hw.name, **{c: t.get(c) for c in OUT_COLUMNS if c != "bound"},
                           "bound": "/".join(sorted(set((t.get("bounds") or {}).values()))) or None,
                           **{c: t[c] for c in TOTAL_EXTRAS if c in t}})
    # chip, then op, then configuration: the order of the array paths (_frames), whichever
    # path a sweep takes
    chip = {hw.name: i for i, hw in enumerate(hardware)}
    op_at: dict[tuple, int] = {}
    rows = [r for _, r in sorted(enumerate(rows), key=lambda ir: (
        chip[ir[1]["hardware"]], op_at.setdefault((ir[1]["hardware"], ir[1]["op"]), len(op_at)),
        ir[0]))]
    totals.sort(key=lambda t: chip[t["hardware"]])  # stable: configurations stay in order
    df = pd.DataFrame(rows)
    tot = pd.DataFrame(totals)
    tot["intensity"] = _intensity(tot)
    extra = [c for c in TOTAL_EXTRAS if c in tot.columns]
    df.attrs["totals"] = tot[names + ["hardware"] + OUT_COLUMNS + extra]
    return df


# transformer fields that change only numbers, not the ledger's structure: evaluated over
# arrays after one expansion (model/batched.py)
BATCHED_FIELDS = ("batch", "grad_accum", "microbatches")
BOUNDS = ("compute", "memory", "comm")  # roofline's bound labels


_INTENSITY = dict(COLUMNS)["intensity"]


def _intensity(columns):
    """roofline.COLUMNS' intensity of a total's summed flops and hbm_bytes."""
    return _INTENSITY(NS(flops=columns["flops"], hbm_bytes=columns["hbm_bytes"]))
TOTAL_EXTRAS = ("tokens_per_s", "mfu", "memory_bytes_per_chip", "fits_memory", "usd_per_step",
                "usd_per_mtok", "flop_per_usd")


def _check_values(spec, varies: list) -> None:
    """Each varied value valid for the op (its smallest and largest; sharding is checked by
    the evaluation)."""
    for v in varies:
        for x in (min(v.values), max(v.values)):
            try:
                type(spec).model_validate({**spec.model_dump(exclude_none=True), v.field: x})
            except Exception as e:  # pydantic ValidationError
                errs = getattr(e, "errors", lambda: [])()
                msg = errs[0]["msg"].removeprefix("Value error, ") if errs else str(e)
                raise SpecError(f"--vary {v.field}: value {x!r} is invalid for op "
                                f"{spec.name!r} ({msg})") from None


def _grids(varies: list) -> dict:
    """Every combination of the varied values, one flat array per field (int64 where every
    value is whole, as a count's are; float otherwise, as capacity_factor's)."""
    grids = np.meshgrid(*[v.array.astype(np.int64) if np.all(v.array == np.floor(v.array))
                          else v.array for v in varies], indexing="ij")
    return {v.field: g.ravel() for v, g in zip(varies, grids)}


def _sweep_traced(src: Workload, spec, hardware: list, varies: list) -> pd.DataFrame | None:
    """A transformer sweep over numeric fields through results.to_json compiled per structure
    (perfmodel.trace): every configuration evaluated at once by the recording's formulas on
    arrays, so the figures are to_json's. None when a configuration takes another branch
    of the code than the recorded one (a guard fails): the caller evaluates the ordinary way."""
    from .model.batched import bound_labels
    from .results import sweep_arrays

    if not varies or not all(v.numeric for v in varies) or \
            any(hw.calibration is not None for hw in hardware):
        return None
    # no value is checked alone here (heads=64 with kv_heads=64 is valid together): the
    # first configuration is validated, and the recording's guards hold the others to the
    # same checks (a configuration that fails one is the loop's, which says what is wrong)
    flat = _grids(varies)
    try:
        rep = _validated(src, spec, {f: a[0].item() for f, a in flat.items()})
    except SpecError:
        return None  # the ordinary path says what is wrong, and with which values
    arrays = {f: a.astype(float) for f, a in flat.items()}
    per_chip = []
    for hw in hardware:
        out = sweep_arrays(hw, rep, arrays, tuple(OUT_COLUMNS),
                           tuple(c for c in OUT_COLUMNS + list(TOTAL_EXTRAS) if c != "bound"))
        if out is None:
            return None
        tot = {c: v for c, v in out["total"].items() if v is not None}
        tot["bound"] = bound_labels(list(out["bounds"].values()), next(iter(arrays.values())).size)
        per_chip.append((out["ops"], tot))
    return _frames(flat, hardware, per_chip)


def _sweep_batched(src: Workload, spec, hardware: list, varies: list) -> pd.DataFrame:
    """A transformer sweep over batch, grad_accum and microbatches: one expansion per chip,
    every configuration evaluated at once on arrays (the same figures as to_json of each)."""
    from .model.batched import Structure
    from .model.transformer import make_plan

    flat = _grids(varies)
    n = next(iter(flat.values())).size
    batch = flat.get("batch", np.full(n, spec.batch))
    accum = flat.get("grad_accum", np.full(n, spec.grad_accum))
    plan = make_plan(spec, src.mesh)
    micro = flat.get("microbatches", np.full(n, plan.microbatches))
    _check_values(spec, varies)
    shards = plan.batch_shards
    bad = batch % (shards * micro * accum) != 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError(f"--vary {', '.join(f'{k}={int(v[i])}' for k, v in flat.items())}: "
                        f"invalid transformer: batch {int(batch[i])} does not split into "
                        f"{shards} batch shards x {int(micro[i])} microbatches x grad_accum "
                        f"{int(accum[i])}; vary values that divide"
                        + (f", e.g. batch={int(shards * micro[i] * accum[i])}..{int(batch.max())}"
                           f" (multiples of {int(shards * micro[i] * accum[i])})"
                           if "batch" in flat else ""))
    upd = {"batch": int(batch[0]), "grad_accum": int(accum[0])}
    if "pipeline" in spec.parallelism:
        upd["microbatches"] = int(micro[0])
    rep = _validated(src, spec, upd)
    per_chip = []
    for hw in hardware:
        rows: list = []
        res = Structure(hw, rep).evaluate(batch, micro, accum, rows=rows,
                                          row_columns=tuple(OUT_COLUMNS))
        tot = {c: res[c] for c in [*OUT_COLUMNS, *TOTAL_EXTRAS] if c in res and c != "bound"}
        tot["bound"] = res["bounds"]
        per_chip.append((rows, tot))
    return _frames(flat, hardware, per_chip)


def _frames(flat: dict, hardware: list, per_chip: list) -> pd.DataFrame:
    """The sweep table of a transformer swept on arrays (one row per configuration, chip and
    ledger op) with its totals in ``attrs["totals"]``; ``per_chip``: (rows, totals) per chip,
    rows as (op name, {column: array}), totals {column: array} (the rows' sums where absent)."""
    n = next(iter(flat.values())).size
    chips = [hw.name for hw in hardware]
    floats = [c for c in OUT_COLUMNS if c != "bound"]
    blocks, bounds, op_codes, hw_codes, op_names, totals = [], [], [], [], None, []
    for hi, (rows, res) in enumerate(per_chip):
        k = len(rows)
        op_names = [r[0] for r in rows]
        # one float block (column-major per row of ops), filled in place: the frame is built
        # on it without a copy
        # one chip: the frame is built on this block (several are joined into a new one)
        block = _block(len(floats), k * n) if len(per_chip) == 1 else np.empty((len(floats), k * n))
        codes = np.empty(k * n, dtype=np.int8)
        for j, (_, cols) in enumerate(rows):
            sl = slice(j * n, (j + 1) * n)
            for f, c in enumerate(floats):
                block[f, sl] = cols[c]
            codes[sl] = _bound_codes(cols["bound"])
        blocks.append(block)
        bounds.append(codes)
        op_codes.append(np.repeat(np.arange(k, dtype=np.int16), n))
        hw_codes.append(np.full(n * k, hi, dtype=np.int16))
        tot = {**flat, "hardware": _categorical(np.full(n, hi, dtype=np.int16), chips)}
        for f, c in enumerate(floats):
            if c != "intensity":  # below, from the sums
                tot[c] = (np.broadcast_to(np.asarray(res[c], dtype=float), (n,)) if c in res
                          else block[f].reshape(k, n).sum(axis=0))
        tot["bound"] = res["bound"]
        tot.update({c: np.broadcast_to(res[c], (n,)) for c in TOTAL_EXTRAS if c in res})
        tot["intensity"] = _intensity(tot)
        totals.append({c: tot[c] for c in [*flat, "hardware", *OUT_COLUMNS, *TOTAL_EXTRAS]
                       if c in tot})
    block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    cols = {}
    reps = len(op_codes[0]) // n * len(hardware)
    for f, v in flat.items():
        cols[f] = np.tile(v, reps)
    cols["op"] = _categorical(np.concatenate(op_codes), op_names)
    cols["hardware"] = _categorical(np.concatenate(hw_codes), chips)
    for f, c in enumerate(floats):
        cols[c] = block[f]
    cols["bound"] = _categorical(np.concatenate(bounds), BOUNDS)
    df = pd.DataFrame(cols, copy=False)
    df.attrs["totals"] = pd.DataFrame(_joined(totals), copy=False)
    return df


def _block(rows: int, cols: int) -> np.ndarray:
    """An empty float block for a sweep table's columns. One of at least 1 MiB is allocated
    as at least 4 MiB: numpy asks Linux for huge pages for an allocation that large
    (numpy/_core/src/multiarray/alloc.c, indicate_hugepages), so filling it costs a few page
    faults instead of one per 4 KiB (about a third of a 4,096-batch transformer sweep's time
    on the benchmark's machine, docs/measurements.md)."""
    n = rows * cols
    size = max(n, HUGE // 8 + 512) if n * 8 >= 1 << 20 else n  # + 512: page alignment slack
    return np.empty(size)[:n].reshape(rows, cols)


HUGE = 1 << 22  # numpy's huge-page threshold, bytes
_DTYPES: dict[tuple, pd.CategoricalDtype] = {}


def _categorical(codes: np.ndarray, categories) -> pd.Categorical:
    """Codes built here index their categories by construction: not checked again (a check
    of every code of a million-row sweep); one dtype per list of categories."""
    key = tuple(categories)
    dtype = _DTYPES.get(key)
    if dtype is None:
        if len(_DTYPES) > 1024:
            _DTYPES.clear()
        dtype = _DTYPES[key] = pd.CategoricalDtype(list(key))
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _bound_codes(label):
    """A row's roofline bound ('compute', 'memory' or 'comm'; one or one per configuration)
    as codes into BOUNDS."""
    if np.ndim(label) == 0:
        return BOUNDS.index(str(label))
    if isinstance(label, Labels):
        return np.array([BOUNDS.index(x) for x in label.names], dtype=np.int8)[label.codes]
    label = np.asarray(label)
    return np.where(label == "compute", BOUNDS.index("compute"),
                    np.where(label == "memory", BOUNDS.index("memory"), BOUNDS.index("comm")))


def _joined(parts: list[dict]) -> dict:
    """Column-wise concatenation of dicts of arrays (categoricals keep their categories)."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    # every chip's columns; one a chip lacks (a price, on a chip without one) is NaN there
    for c in dict.fromkeys(c for p in parts for c in p):
        vals = [p[c] if c in p else np.full(len(p["hardware"]), np.nan) for p in parts]
        if isinstance(vals[0], pd.Categorical):
            out[c] = pd.Categorical.from_codes(np.concatenate([v.codes for v in vals]),
                                               vals[0].categories)
        else:
            out[c] = np.concatenate(vals)
    return out


def _validated(src: Workload, spec, upd: dict) -> Workload:
    ops = [({**op.model_dump(exclude_none=True), **upd} if op is spec
            else op.model_dump(exclude_none=True)) for op in src.ops]
    try:
        return Workload.model_validate({**src.model_dump(exclude={"ops"}), "ops": ops})
    except Exception as e:  # pydantic ValidationError or SpecError from the plan
        msg = str(e).splitlines()
        raise SpecError(f"--vary {', '.join(f'{k}={v}' for k, v in upd.items())}: invalid "
                        f"transformer: {msg[2].strip() if len(msg) > 2 else msg[0]}") from None


def sweep_totals_chunked(workload: Workload, hardware: list, vary: list, *, chunk: int = 100_000,
                         progress: bool = False) -> pd.DataFrame:
    """Totals per (configuration, chip) without listing every op: numeric configurations are
    evaluated in chunks, so millions of configurations of a many-op workload fit in memory."""
    from .model import expansion

    if expansion(workload) is not None:
        return sweep_totals(sweep(workload, hardware, vary, progress=progress))
    varies = parse_varies(vary)
    _validate(workload, varies)
    if any(not v.numeric for v in varies):
        raise SpecError("sweep_totals_chunked takes numeric --vary fields only; loop over the "
                        "others or use sweep().")
    _grid(workload, hardware, varies)  # MAX_GRID_POINTS before any array is built
    grids = np.meshgrid(*[np.asarray(v.values, dtype=float) for v in varies], indexing="ij")
    flat = {v.field: g.ravel() for v, g in zip(varies, grids)}
    n = next(iter(flat.values())).size
    starts = range(0, n, chunk)
    frames = []
    from .ops import REGISTRY, OpContext

    for hw in hardware:
        it = starts
        if progress:
            from tqdm import tqdm

            it = tqdm(starts, desc=f"sweep {hw.name}", unit="chunk", leave=False, delay=1.0)
        for a in it:
            part = {k: v[a:a + chunk] for k, v in flat.items()}
            m = next(iter(part.values())).size
            acc = {c: np.zeros(m) for c in ("flops", "hbm_bytes", "t_compute", "t_memory", "t_lower", "t_upper")}
            for op in workload.ops:
                arr = {k: v for k, v in part.items() if k in type(op).model_fields}
                vec = op.model_copy(update=arr) if arr else op
                _, cost, roof = op_columns(op, hw, workload, inputs=REGISTRY[op.kind].inputs(vec, OpContext(workload, hw)))
                vals = {**cost, **roof}
                for c in acc:
                    acc[c] += vals[c]
            out = {**part, "hardware": np.full(m, hw.name, dtype=object), **acc}
            out["intensity"] = _intensity(acc)
            frames.append(pd.DataFrame(out))
    return pd.concat(frames, ignore_index=True)


def _eval_op(op, hw, wl, cat_update: dict, flat: dict, n: int) -> pd.DataFrame:
    fields = type(op).model_fields
    upd = {k: v for k, v in cat_update.items() if k in fields}
    base = type(op).model_validate({**op.model_dump(), **upd}) if upd else op
    arr = {k: v for k, v in flat.items() if k in fields}
    vec = base.model_copy(update=arr) if arr else base  # values validated in _validate
    from .ops import REGISTRY, OpContext

    inputs = REGISTRY[op.kind].inputs(vec, OpContext(wl, hw))
    _, cost, roof = op_columns(base, hw, wl, inputs=inputs)
    out = {k: np.broadcast_to(v, n) for k, v in flat.items()}
    for k, v in cat_update.items():
        out[k] = np.full(n, str(v) if not isinstance(v, bool) else v, dtype=object)
    out["op"] = np.full(n, op.name, dtype=object)
    out["hardware"] = np.full(n, hw.name, dtype=object)
    vals = {**cost, **roof}
    for c in OUT_COLUMNS:
        out[c] = np.broadcast_to(np.asarray(vals[c]), n)
    return pd.DataFrame(out)


def sweep_totals(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, hardware): sums over ops; bound = the bound of the largest
    share of t_lower."""
    if "totals" in df.attrs:  # a transformer sweep: the step totals (overlap within groups)
        return df.attrs["totals"]
    prices = df.attrs.get("prices", {})
    keys = [c for c in df.columns if c not in OUT_COLUMNS and c != "op"]
    g = df.groupby(keys, sort=False, dropna=False)
    tot = g[["flops", "hbm_bytes", "t_compute", "t_memory", "t_lower", "t_upper"]].sum()
    tot["intensity"] = _intensity(tot)
    share = df.groupby(keys + ["bound"], sort=False, dropna=False)["t_lower"].sum().reset_index()
    top = share.loc[share.groupby(keys, sort=False, dropna=False)["t_lower"].idxmax()]
    tot = tot.reset_index().merge(top[keys + ["bound"]], on=keys, how="left")
    return _priced(tot[keys + OUT_COLUMNS], prices)


def _priced(tot: pd.DataFrame, prices: dict) -> pd.DataFrame:
    """Add $ per step / per million tokens / FLOP per $ for chips with a price_per_hour."""
    from .engine import price_columns

    if not any(p is not None for p in prices.values()):
        return tot
    tot = tot.copy()
    for hw, price in prices.items():
        sel = tot["hardware"] == hw
        cols = price_columns(price, {c: tot.loc[sel, c].to_numpy(dtype=float) for c in tot.columns
                                     if c in ("t_step", "t_lower", "flops", "chips", "tokens_per_step")})
        for c, v in cols.items():
            tot.loc[sel, c] = v
    return tot


def crossovers(df: pd.DataFrame, field: str) -> list[str]:
    """Where an op's bound changes along ``field``, and where one chip overtakes another
    (total t_lower), with the other varied fields at each of their values."""
    found = Crossovers(field)
    found.feed(df)
    return found.lines()


class Crossovers:
    """``crossovers`` over a sweep read in pieces (``sweep_chunks``): feed each piece in order.

    Each op's bound is compared along ``field`` within each (chip, op, other fields) line; the
    last row of every line is carried to the next piece. Along a line the pieces arrive in
    ``field`` order (it is the outermost numeric axis of the grid and its values are sorted).
    Chip overtakes (total t_lower) are looked for when ``field`` is the only varied field;
    each piece holds every chip, so the faster chip of each pair is carried the same way.
    Memory: the carried rows, one per line, never the table.
    """

    def __init__(self, field: str):
        self.field = field
        self.found: list[tuple[int, float, str]] = []  # (line's first-seen order, x, text)
        self.order: dict[tuple, int] = {}
        self.carry: pd.DataFrame | None = None
        self.others: list[str] | None = None
        self.chips: list[str] = []
        self.last: dict[tuple, tuple] = {}  # chip pair -> (x, faster chip) at the last point
        self.overtakes: list[tuple[int, float, str]] = []

    def feed(self, df: pd.DataFrame) -> None:
        f = self.field
        if self.others is None:
            self.others = [c for c in df.columns if c not in OUT_COLUMNS + ["op", "hardware", f]]
        keys = ["hardware", "op"] + self.others
        part = df[keys + [f, "bound"]]
        if self.carry is not None:
            part = pd.concat([self.carry, part], ignore_index=True)
        part = part.sort_values(f, kind="stable")  # along each line; pieces keep their order
        g = part.groupby(keys, sort=False, dropna=False)
        prev_b, prev_x = g["bound"].shift(), g[f].shift()
        changed = prev_b.notna() & (prev_b != part["bound"])
        for i in np.flatnonzero(changed.to_numpy()):
            row = part.iloc[i]
            key = tuple(row[k] for k in keys)
            ctx = ", ".join(f"{o}={k}" for o, k in zip(self.others, key[2:]))
            text = (f"{key[1]} on {key[0]}{' (' + ctx + ')' if ctx else ''}: {prev_b.iloc[i]} -> "
                    f"{row['bound']} between {f}={_fmt(prev_x.iloc[i])} and {f}={_fmt(row[f])}")
            self.found.append((self.order.setdefault(key, len(self.order)), float(row[f]), text))
        self.carry = g.tail(1)
        if not self.others:
            self._overtakes(df)

    def _overtakes(self, df: pd.DataFrame) -> None:
        f = self.field
        tot = sweep_totals(df)
        self.chips += [c for c in dict.fromkeys(tot["hardware"]) if c not in self.chips]
        wide = tot.pivot_table(index=f, columns="hardware", values="t_lower", sort=True)
        x = wide.index.to_numpy()
        for n, (a, c) in enumerate(itertools.combinations(self.chips, 2)):
            if a not in wide or c not in wide:
                continue
            faster = np.where(wide[a].to_numpy() <= wide[c].to_numpy(), a, c)
            xs, fs = x, faster
            if (a, c) in self.last:
                px, pf = self.last[(a, c)]
                xs, fs = np.concatenate([[px], x]), np.concatenate([[pf], faster])
            for i in np.flatnonzero(fs[1:] != fs[:-1]):
                self.overtakes.append((n, float(xs[i + 1]),
                                       f"{fs[i + 1]} overtakes {fs[i]} (total t_lower) between "
                                       f"{f}={_fmt(xs[i])} and {f}={_fmt(xs[i + 1])}"))
            self.last[(a, c)] = (x[-1], faster[-1])

    def lines(self) -> list[str]:
        return ([t for _, _, t in sorted(self.found, key=lambda x: (x[0], x[1]))]
                + [t for _, _, t in sorted(self.overtakes, key=lambda x: (x[0], x[1]))])


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"
