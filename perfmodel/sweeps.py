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
from .specs import SpecError, Workload

OUT_COLUMNS = ["flops", "hbm_bytes", "intensity", "t_compute", "t_memory", "t_lower", "t_upper",
               "bound"]
MAX_VALUES = 10_000_000
EXCEL_ROWS = 1_048_576
_RANGE = re.compile(r"^\s*(.*?)\s*\.\.\s*([^:]*?)\s*(?::\s*(\S*))?\s*$")


@dataclass(frozen=True)
class Vary:
    field: str
    values: tuple  # numbers or strings/bools

    @functools.cached_property
    def numeric(self) -> bool:
        kinds = {type(v) for v in self.values}  # a few types for thousands of values
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
                raise SpecError(f"--vary {arg!r}: {n:,} values is more than {MAX_VALUES:,}; "
                                f"use a larger STEP or log2.")
            vals = (lo + st * np.arange(n)).tolist()
        arr = np.asarray(vals, dtype=float)
        vals = arr.astype(np.int64).tolist() if np.all(arr == np.floor(arr)) else \
            [int(v) if float(v).is_integer() else v for v in vals]
    else:
        import yaml

        vals = []
        for s in spec.split(","):
            s = s.strip()
            if not s:
                raise SpecError(f"--vary {arg!r}: empty value in the list.")
            vals.append(yaml.safe_load(s))
    return Vary(field, tuple(vals))


def _unknown_field(field: str, known, what: str) -> SpecError:
    import difflib

    close = difflib.get_close_matches(field, sorted(known), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return SpecError(f"--vary {field}: {what}.{hint} Fields: {', '.join(sorted(known))}.")


def _validate(wl: Workload, varies: list[Vary]) -> None:
    fields_any = {f for op in wl.ops for f in type(op).model_fields}
    for v in varies:
        if v.field not in fields_any:
            raise _unknown_field(v.field, fields_any, f"no op in workload {wl.name!r} has a field "
                                                      f"{v.field!r}")
        for op in wl.ops:
            if v.field not in type(op).model_fields:
                continue
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
          max_rows: int | None = 20_000_000) -> pd.DataFrame:
    """One row per (configuration, hardware, op): the varied fields, op, hardware and the
    roofline columns. ``vary`` holds Vary objects or '--vary' strings."""
    varies = [parse_vary(v) if isinstance(v, str) else v for v in vary]
    from .model import expansion

    if expansion(workload) is not None:
        return _sweep_model(workload, hardware, varies, progress=progress)
    _validate(workload, varies)
    cat = [v for v in varies if not v.numeric]
    num = [v for v in varies if v.numeric]
    grids = np.meshgrid(*[np.asarray(v.values, dtype=float) for v in num], indexing="ij") if num else []
    flat = {v.field: g.ravel() for v, g in zip(num, grids)}
    n_num = int(np.prod([len(v.values) for v in num])) if num else 1
    n_cat = int(np.prod([len(v.values) for v in cat])) if cat else 1
    rows = n_num * n_cat * len(hardware) * len(workload.ops)
    if max_rows is not None and rows > max_rows:
        raise SpecError(f"sweep of {rows:,} rows is larger than {max_rows:,}: vary fewer values, "
                        f"or aggregate (sweep_totals) instead of listing every op.")
    frames = []
    combos = list(itertools.product(*[v.values for v in cat])) if cat else [()]
    it = [(hw, combo) for hw in hardware for combo in combos]
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="sweep", unit="chip-config", leave=False, delay=1.0)  # only if slow
    for hw, combo in it:
        upd = dict(zip([v.field for v in cat], combo))
        for op in workload.ops:
            frames.append(_eval_op(op, hw, workload, upd, flat, n_num))
    df = pd.concat(frames, ignore_index=True)
    df.attrs["prices"] = {hw.name: hw.price_per_hour for hw in hardware}
    for v in num:  # whole-number fields (m, seq, ...) read back as integers
        if all(float(x).is_integer() for x in (min(v.values), max(v.values))) and \
                all(isinstance(x, int) for x in v.values):
            df[v.field] = df[v.field].astype(np.int64)
    return df


MAX_MODEL_CONFIGS = 100_000


def _sweep_model(workload: Workload, hardware: list, varies: list, progress: bool) -> pd.DataFrame:
    """Sweep the fields of a transformer op (batch, seq, d_model, tp sizes...): each
    configuration is expanded again (its op shapes and collectives change with the fields), so
    this path loops over configurations (about a millisecond each) instead of vectorising the
    op formulas. Totals (``sweep_totals``) are the step totals of results.to_json."""
    from .engine import evaluate_rows
    from .results import to_json
    from .model import expand_workload, expansion, source_workload
    from .specs import TransformerOp

    src = source_workload(workload)
    spec = expansion(workload).spec
    fields = TransformerOp.model_fields
    for v in varies:
        if v.field not in fields:
            raise _unknown_field(v.field, fields, f"workload {workload.name!r} is a transformer; "
                                                  f"vary its fields (e.g. batch, seq, d_model)")
    # calibrated chips price one-row products with their own fitted group, chosen per row:
    # those configurations take the per-configuration loop
    if varies and all(v.field in BATCHED_FIELDS and v.numeric for v in varies) and \
            all(hw.calibration is None for hw in hardware):
        return _sweep_batched(src, spec, hardware, varies)
    combos = list(itertools.product(*[v.values for v in varies]))
    if len(combos) * len(hardware) > MAX_MODEL_CONFIGS:
        raise SpecError(f"a transformer sweep of {len(combos) * len(hardware):,} configurations is "
                        f"more than {MAX_MODEL_CONFIGS:,} (each is expanded again): vary fewer values.")
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
            rr = evaluate_rows(hw, wl)
            for r in rr:
                rows.append({**upd, "op": r["name"], "hardware": hw.name, **{c: r.get(c) for c in OUT_COLUMNS}})
            t = to_json(hw, wl, rr)["total"]
            totals.append({**upd, "hardware": hw.name, **{c: t.get(c) for c in OUT_COLUMNS if c != "bound"},
                           "bound": "/".join(sorted(set((t.get("bounds") or {}).values()))) or None,
                           **{c: t[c] for c in ("tokens_per_s", "mfu", "usd_per_step", "usd_per_mtok",
                                                "flop_per_usd") if c in t}})
    df = pd.DataFrame(rows)
    tot = pd.DataFrame(totals)
    tot["intensity"] = tot["flops"] / tot["hbm_bytes"]
    extra = [c for c in ("tokens_per_s", "mfu", "usd_per_step", "usd_per_mtok", "flop_per_usd")
             if c in tot.columns]
    df.attrs["totals"] = tot[names + ["hardware"] + OUT_COLUMNS + extra]
    return df


# transformer fields that change only numbers, not the ledger's structure: evaluated over
# arrays after one expansion (model/batched.py)
BATCHED_FIELDS = ("batch", "grad_accum", "microbatches")
BOUNDS = ("compute", "memory", "comm")  # roofline's bound labels
TOTAL_EXTRAS = ("tokens_per_s", "mfu", "usd_per_step", "usd_per_mtok", "flop_per_usd")


def _sweep_batched(src: Workload, spec, hardware: list, varies: list) -> pd.DataFrame:
    """A transformer sweep over batch, grad_accum and microbatches: one expansion per chip,
    every configuration evaluated at once on arrays (the same figures as to_json of each)."""
    from .model.batched import Structure
    from .model.transformer import make_plan

    names = [v.field for v in varies]
    grids = np.meshgrid(*[np.asarray(v.values, dtype=np.int64) for v in varies], indexing="ij")
    flat = {f: g.ravel() for f, g in zip(names, grids)}
    n = next(iter(flat.values())).size
    if n * len(hardware) > MAX_MODEL_CONFIGS * 100:
        raise SpecError(f"a transformer sweep of {n * len(hardware):,} configurations is more "
                        f"than {MAX_MODEL_CONFIGS * 100:,}: vary fewer values.")
    batch = flat.get("batch", np.full(n, spec.batch))
    accum = flat.get("grad_accum", np.full(n, spec.grad_accum))
    plan = make_plan(spec, src.mesh)
    micro = flat.get("microbatches", np.full(n, plan.microbatches))
    for v in varies:  # each value valid for the op (the sharding is checked below)
        for x in (min(v.values), max(v.values)):
            try:
                type(spec).model_validate({**spec.model_dump(exclude_none=True), v.field: x})
            except Exception as e:  # pydantic ValidationError
                errs = getattr(e, "errors", lambda: [])()
                msg = errs[0]["msg"].removeprefix("Value error, ") if errs else str(e)
                raise SpecError(f"--vary {v.field}: value {x!r} is invalid for op "
                                f"{spec.name!r} ({msg})") from None
    shards = plan.batch_shards
    bad = batch % (shards * micro * accum) != 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError(f"--vary {', '.join(f'{k}={int(v[i])}' for k, v in flat.items())}: "
                        f"invalid transformer: batch {int(batch[i])} does not split into "
                        f"{shards} batch shards x {int(micro[i])} microbatches x grad_accum "
                        f"{int(accum[i])}; vary values that divide")
    upd = {"batch": int(batch[0]), "grad_accum": int(accum[0])}
    if "pipeline" in spec.parallelism:
        upd["microbatches"] = int(micro[0])
    rep = _validated(src, spec, upd)
    frames, totals = [], []
    chips = [hw.name for hw in hardware]
    frames, totals = [], []
    for hi, hw in enumerate(hardware):
        rows: list = []
        res = Structure(hw, rep).evaluate(batch, micro, accum, rows=rows)
        k = len(rows)
        # names as categories (codes, not a million repeated strings, which build slowly)
        cols = {f: np.tile(v, k) for f, v in flat.items()}
        cols["op"] = pd.Categorical.from_codes(np.repeat(np.arange(k), n), [r[0] for r in rows])
        cols["hardware"] = pd.Categorical.from_codes(np.full(n * k, hi), chips)
        for c in OUT_COLUMNS:
            if c == "bound":
                labels = np.concatenate([np.broadcast_to(np.asarray(r[1][c], dtype=str), (n,))
                                         for r in rows])
                codes = np.full(labels.shape, BOUNDS.index("comm"))
                codes[labels == "compute"] = BOUNDS.index("compute")
                codes[labels == "memory"] = BOUNDS.index("memory")
                cols[c] = pd.Categorical.from_codes(codes, BOUNDS)
            else:
                cols[c] = np.concatenate([np.broadcast_to(np.asarray(r[1][c], dtype=float), (n,))
                                          for r in rows])
        frames.append(cols)
        tot = {**flat, "hardware": pd.Categorical.from_codes(np.full(n, hi), chips)}
        for c in OUT_COLUMNS:
            if c == "intensity":
                tot[c] = None  # below, from the sums
            elif c == "bound":
                tot[c] = res["bounds"]
            else:
                tot[c] = res.get(c, sum(np.broadcast_to(np.asarray(r[1][c]), (n,))
                                        for r in rows))
        tot.update({c: res[c] for c in TOTAL_EXTRAS if c in res})
        tot["intensity"] = tot["flops"] / tot["hbm_bytes"]
        totals.append(tot)
    df = pd.DataFrame(_joined(frames))
    df.attrs["totals"] = pd.DataFrame(_joined(totals))
    return df


def _joined(parts: list[dict]) -> dict:
    """Column-wise concatenation of dicts of arrays (categoricals keep their categories)."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    for c in parts[0]:
        vals = [p[c] for p in parts]
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
    varies = [parse_vary(v) if isinstance(v, str) else v for v in vary]
    _validate(workload, varies)
    if any(not v.numeric for v in varies):
        raise SpecError("sweep_totals_chunked takes numeric --vary fields only; loop over the "
                        "others or use sweep().")
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
            out["intensity"] = acc["flops"] / acc["hbm_bytes"]
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
    tot["intensity"] = tot["flops"] / tot["hbm_bytes"]
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
    lines = []
    others = [c for c in df.columns if c not in OUT_COLUMNS + ["op", "hardware", field]]
    for key, g in df.groupby(["hardware", "op"] + others, sort=False):
        g = g.sort_values(field)
        b = g["bound"].to_numpy()
        x = g[field].to_numpy()
        for i in np.flatnonzero(b[1:] != b[:-1]):
            ctx = ", ".join(f"{o}={k}" for o, k in zip(others, key[2:]))
            lines.append(f"{key[1]} on {key[0]}{' (' + ctx + ')' if ctx else ''}: {b[i]} -> "
                         f"{b[i + 1]} between {field}={_fmt(x[i])} and {field}={_fmt(x[i + 1])}")
    tot = sweep_totals(df)
    chips = list(dict.fromkeys(tot["hardware"]))
    for a, c in itertools.combinations(chips, 2):
        ta = tot[tot.hardware == a].sort_values(field)
        tc = tot[tot.hardware == c].sort_values(field)
        if len(others) or len(ta) != len(tc):
            continue
        faster = np.where(ta["t_lower"].to_numpy() <= tc["t_lower"].to_numpy(), a, c)
        x = ta[field].to_numpy()
        for i in np.flatnonzero(faster[1:] != faster[:-1]):
            lines.append(f"{faster[i + 1]} overtakes {faster[i]} (total t_lower) between "
                         f"{field}={_fmt(x[i])} and {field}={_fmt(x[i + 1])}")
    return lines


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"
