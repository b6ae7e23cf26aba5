"""Fit the calibrated model (perfmodel/calibrated.py) to measured kernel timings.

Per group of kernels (matmul, elementwise, softmax, ...) we fit, by least squares on log time
(scipy, soft-L1 so one odd shape cannot drag the fit):

    t(op) = overhead + combine(flops_exec / P_eff, t_mem)
    P_eff = P / (1 + d0/m + d0/n + dk/k)                                 (matmuls only)
    t_mem = hbm_bytes * (hit / W_cache + (1 - hit) / W),  hit = 1 / (1 + (working_set / C)^h)

(calibrated.py) and a kernel's time is the sum over its ops (an unfused chain pays the overhead
per call). ``combine`` (sum or max), the shape knees and the cache term are chosen per group by
AICc; the cache size C is continuous (several starting points, since the fit is not convex in
it), its sharpness h a choice between a gradual fall and a cliff (SHARPNESS). A rate the
group's kernels never exercise is pinned to the spec sheet (UNDETERMINED_SHARE). Shapes are
split deterministically into fit and held-out sets per group: the largest shape is held out
(flagged as extrapolation) and every third of the rest. Unstable rows (cv > 0.2 in
most passes) are reported but not fitted. Decode attention is not fitted: it is predicted from
its parts' groups (QK^T, softmax, AV), an out-of-sample test of the composition. Pure
numpy/scipy: no jax here.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .. import calibrated
from ..engine import evaluate_op
from ..formula import NS
from ..ops import REGISTRY, OpContext
from ..specs import Hardware, SpecError
from .kernels import ops_list

# kernel -> calibration group of its elementwise/matmul ops. matmul, elementwise and softmax
# calibrate workload ops (calibrated.column); reductions and interpreted Pallas describe only
# their own kernels. Naive attention (and jax.nn.dot_product_attention, which is XLA's naive
# attention on CPU: the JAX API docs' 'xla' implementation) has a group of its own: it can take
# longer than the sum of its QK^T, softmax and AV parts (docs/calibration.md). Decode attention
# is not in it: one query row per kv head (or a few) makes its products matrix-vector kernels,
# so it is predicted from its parts (gemv, softmax, gemv), an out-of-sample test of the
# composition.
GROUP = {"matmul": "matmul", "matmul_pallas": "matmul_pallas", "ew_scale": "elementwise",
         "ew_add_fused": "elementwise", "ew_add_unfused": "elementwise", "reduce_sum": "reduction",
         "softmax": "softmax", "attention_naive": "attention_naive",
         "attention_dpa": "attention_naive"}
COMPOSITE = "composite"
CACHE_STARTS = 6  # starting points for the cache size, spread over the fit set's working sets
UNSTABLE_CV = 0.2
LONG_S = 1e-3  # the acceptance metric is over held-out kernels of 1 ms or more


@dataclass
class Row:
    kernel: str
    params: str
    dtype: str
    group: str
    measured_s: float         # median over passes of the per-pass medians
    passes: list[float]
    cv: float                 # median cv over passes
    spec_s: float             # the spec-sheet roofline's t_lower (sum over ops)
    feats: list[dict]         # per part: group, flops_exec, hbm_bytes, dims (m, k, n) or None
    heldout: bool = False
    extrapolation: bool = False
    predicted_s: float = math.nan

    @property
    def unstable(self) -> bool:
        return self.cv > UNSTABLE_CV


@dataclass
class GroupFit:
    group: str
    params: dict              # peak_flops, bandwidth, overhead, small_dim, cache_bytes, cache_bandwidth
    combine: str
    fit_error: float          # median relative error on the fit set
    pinned: tuple = ()        # rates the kernels do not measure, kept at the spec sheet's value


@dataclass
class FitResult:
    base: Hardware
    rows: list[Row]
    groups: dict[str, GroupFit]
    noise: dict
    errors: dict = field(default_factory=dict)
    source: str = ""

    def hardware(self, name: str | None = None) -> Hardware:
        """The calibrated spec: the base chip plus ``calibration`` (validated)."""
        data = self.base.model_dump(exclude_none=True)
        data["name"] = name or f"{self.base.name}-calibrated"
        kinds = {}
        for g, f in self.groups.items():
            p = f.params
            k = {"peak_flops": f"{p['peak_flops']!r} FLOP/s", "bandwidth": f"{p['bandwidth']!r} B/s",
                 "overhead": f"{p['overhead']!r} s", "combine": f.combine}
            for knee in ("small_dim", "small_k"):
                if p.get(knee):
                    k[knee] = float(p[knee])
            if p.get("cache_bytes"):
                k["cache_bytes"] = float(p["cache_bytes"])
                k["cache_bandwidth"] = f"{p['cache_bandwidth']!r} B/s"
                k["cache_sharpness"] = float(p["cache_sharpness"])
            kinds[g] = k
        data["calibration"] = {"kinds": kinds, "provenance": self.provenance()}
        data.setdefault("sources", {})["calibration"] = (
            f"perfmodel calibrate, fitted to {self.source} on "
            f"{_dt.date.today().isoformat()}; see calibration.provenance")
        return Hardware.model_validate(data)

    def provenance(self) -> dict:
        return {"when": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "measurements": self.source, "base": self.base.name,
                "rows": len(self.rows), "heldout_rows": sum(r.heldout for r in self.rows),
                "where": self.errors.get("where", {}),
                "heldout_error_1ms": self.errors.get("heldout_1ms", {}),
                "noise_floor": self.noise,
                "combine": {g: f.combine for g, f in self.groups.items()},
                "pinned_to_spec": {g: list(f.pinned) for g, f in self.groups.items() if f.pinned}}


# ---- model, vectorised over a group's (row, op) entries -------------------------------------

SHAPES = {"none": (), "mn": ("small_dim",), "k": ("small_k",), "mnk": ("small_dim", "small_k")}


def _predict(theta: np.ndarray, F, B, m, k, n, row_idx, nrows, combine, cache,
             shape="none", rep=1.0, ws=None):
    """Kernel times of a group's (row, op) entries for parameters ``theta`` (log space), summed
    per row: calibrated.kernel_time itself, on numpy arrays, so the fit and the engine and
    workbook share one formula."""
    P, W, t0 = np.exp(theta[:3])
    e = NS({"cal_x_peak_flops": P, "cal_x_bandwidth": W, "cal_x_overhead": t0,
            "cal_x_small_dim": 0.0, "cal_x_small_k": 0.0})
    i = 3
    for name in SHAPES[shape]:
        e[f"cal_x_{name}"] = np.exp(theta[i]); i += 1
    if cache is not None:  # the cache's sharpness
        for name in CACHE_PARAMS:
            e[f"cal_x_{name}"] = np.exp(theta[i]); i += 1
        e["cal_x_cache_sharpness"] = cache
    dims = (m, k, n) if shape != "none" else None
    t = calibrated.kernel_time(e, "x", combine, F, B, dims, cache=cache is not None,
                               working_set=ws)
    return np.bincount(row_idx, weights=t * rep, minlength=nrows)


CACHE_PARAMS = ("cache_bytes", "cache_bandwidth")
# the cache's sharpness is a structural choice, like sum or max: a gradual fall (the hit share
# goes from 90% to 10% over a 4x range of working sets) or a cliff (over 9%). Fitting it as a
# third continuous cache parameter costs more AICc than a dozen shapes per group can pay.
GRADUAL, CLIFF = 3.0, 50.0
SHARPNESS = (CLIFF, GRADUAL)


UNDETERMINED_SHARE = 0.1
PRIOR_WEIGHT = 0.05  # a weak pull of log peak / log bandwidth toward the base spec's values


def _fit_group(rows: list[Row], matmul: bool, prior: tuple[float, float], combines=("sum", "max"),
               rss_floor: float = 1e-4):
    """Best model of a group for each combine rule: {combine: (score, GroupFit)}.

    ``prior`` = the base spec's (peak, bandwidth): a weak regulariser, so a parameter the data
    cannot pin down (decode attention's FLOPs and bytes move together) stays near the spec
    sheet instead of running off to a bound, while data that do pin it down win easily."""
    from scipy.optimize import least_squares

    fit = [r for r in rows if not r.heldout and not r.unstable]
    if len(fit) < 3:  # too few stable shapes: fit the unstable ones too rather than nothing
        fit = [r for r in rows if not r.heldout]
    ent = [(j, f) for j, r in enumerate(fit) for f in r.feats]
    F = np.array([f["flops_exec"] / f.get("repeat", 1) for _, f in ent], float)  # per instance
    B = np.array([f["hbm_bytes"] / f.get("repeat", 1) for _, f in ent], float)
    WS = np.array([f.get("working_set", f["hbm_bytes"] / f.get("repeat", 1)) for _, f in ent], float)
    m, k, n = (np.array([f["dims"][i] if f["dims"] else np.inf for _, f in ent], float)
               for i in range(3))
    idx = np.array([j for j, _ in ent])
    rep = np.array([f.get("repeat", 1) for _, f in ent], float)
    y = np.log([r.measured_s for r in fit])
    tmin = min(r.measured_s for r in fit)
    p0 = max(max(f["flops_exec"] for f in r.feats) / r.measured_s for r in fit)
    w0 = max(sum(f["hbm_bytes"] for f in r.feats) / r.measured_s for r in fit)
    n_fit = len(fit)
    # a per-call overhead is microseconds: capped at 1 ms (and below the fastest kernel) so a
    # poorly fitting group cannot hide its error in a constant
    t0_hi = math.log(max(min(tmin * 1.5, 1e-3), 1e-7))
    # cache sizes to start from: between neighbouring working sets of the fit set
    sizes = np.unique(np.log(WS))
    mids = (sizes[1:] + sizes[:-1]) / 2
    starts = mids[np.unique(np.linspace(0, len(mids) - 1, min(CACHE_STARTS, len(mids))).astype(int))] \
        if len(mids) else []
    best_by = {}
    lp, lw = math.log(prior[0]), math.log(prior[1])
    for combine, cache, shape in itertools.product(combines, (None,) + SHARPNESS,
                                                   list(SHAPES) if matmul else ["none"]):
        x0 = [math.log(max(p0, 1.0)), math.log(max(w0, 1.0)), min(math.log(tmin / 3), t0_hi)]
        lo = [math.log(1e3), math.log(1e3), math.log(1e-8)]
        hi = [math.log(1e18), math.log(1e16), t0_hi]
        for _ in SHAPES[shape]:
            x0.append(math.log(16.0)); lo.append(math.log(1e-3)); hi.append(math.log(1e5))
        nparams = len(x0) + len(CACHE_PARAMS) * (cache is not None)
        if n_fit < nparams:
            continue
        # AICc needs n > k + 1; with fewer shapes only the 3-parameter model is allowed
        if n_fit - nparams - 1 > 0:
            corr = 2 * nparams * (nparams + 1) / (n_fit - nparams - 1)
        elif nparams == 3:
            corr = 0.0
        else:
            continue
        # start from the spec sheet's peak and from the fastest kernel's FLOP/s: where FLOPs
        # and bytes grow together (softmax) either term can explain the time, and the local
        # optimum found depends on where the search starts
        tries = []
        for lp0, c0 in itertools.product((min(max(lp, lo[0]), hi[0]), x0[0]),
                                         starts if cache is not None else [None]):
            if c0 is None:
                tries.append(([lp0] + x0[1:], lo, hi))
            else:  # the cache spans the fit set's working sets
                tries.append(([lp0] + x0[1:] + [c0, math.log(max(w0, 1.0) * 2)],
                              lo + [sizes[0], math.log(1e3)], hi + [sizes[-1], math.log(1e17)]))
        def solve(x, lo_, hi_):
            return least_squares(
                lambda th: np.concatenate([
                    np.log(_predict(th, F, B, m, k, n, idx, n_fit, combine, cache, shape, rep, WS)) - y,
                    PRIOR_WEIGHT * np.array([th[0] - lp, th[1] - lw])]),
                np.clip(x, lo_, hi_), bounds=(lo_, hi_), loss="soft_l1", f_scale=0.1)

        def share(th, i):
            """The largest share of a fitted kernel's time that rate ``i`` accounts for."""
            t = _predict(th, F, B, m, k, n, idx, n_fit, combine, cache, shape, rep, WS)
            th2 = th.copy()
            th2[i] = 60.0  # the rate taken to infinity
            return float(np.max(1 - _predict(th2, F, B, m, k, n, idx, n_fit, combine, cache,
                                             shape, rep, WS) / t))

        for x, lo_, hi_ in tries:
            res = solve(x, lo_, hi_)
            # a rate whose term never makes up UNDETERMINED_SHARE of any fitted kernel's time
            # is not measured by these kernels (an elementwise chain's FLOP/s): pin it to the
            # spec sheet's value rather than report noise as a fitted parameter
            pinned = tuple(name for i, name in ((0, "peak_flops"), (1, "bandwidth"))
                           if share(res.x, i) < UNDETERMINED_SHARE)
            if pinned:
                x, lo_, hi_ = list(res.x), list(lo_), list(hi_)
                for name in pinned:
                    i, v = (0, lp) if name == "peak_flops" else (1, lw)
                    x[i], lo_[i], hi_[i] = v, v - 1e-9, v + 1e-9
                res = solve(x, lo_, hi_)
            fun = res.fun[:-2]  # the data residuals only, for the error and the model choice
            err = float(np.median(np.abs(np.expm1(fun))))
            # model choice by AICc on the log residuals (small-sample AIC, with a floor at the
            # measured noise: fits closer than the timings repeat are ties, so an extra term
            # cannot buy its way in on noise): a term must pay for itself. Sum, no
            # cache and a cliff are the default structure: each alternative (max, a cache term,
            # a gradual cache) must win by strong evidence (6 AICc units), so noisy groups do
            # not flip structure from run to run.
            rss = max(float(np.mean(fun ** 2)), rss_floor)
            score = (n_fit * math.log(rss) + 2 * nparams + corr + 6 * (combine == "max")
                     + 6 * (cache is not None) + 6 * (cache == GRADUAL))
            # (a later start must do clearly better: equal fits keep the spec-sheet start)
            if combine not in best_by or score < best_by[combine][0] - 0.01:
                best_by[combine] = (score, err, res.x, combine, cache, shape, pinned)
    return {c: (b[0], _group_fit(rows[0].group, b)) for c, b in best_by.items()}


def _group_fit(group: str, best) -> GroupFit:
    _, err, th, combine, cache, shape, pinned = best
    params = {"peak_flops": float(np.exp(th[0])), "bandwidth": float(np.exp(th[1])),
              "overhead": float(np.exp(th[2]))}
    i = 3
    for name in SHAPES[shape] + (CACHE_PARAMS if cache is not None else ()):
        params[name] = float(np.exp(th[i])); i += 1
    if cache is not None:
        params["cache_sharpness"] = cache
    return GroupFit(group, params, combine, err, pinned)


def _predict_row(r: Row, groups: dict) -> float:
    """A row's calibrated time through the same formula the engine and workbook use."""
    def key(g):  # without a gemv group, matrix-vector parts take the matmul group's (as column)
        return g.replace("gemv", "matmul", 1) if g not in groups and g.startswith("gemv") else g

    if any(key(f["group"]) not in groups for f in r.feats):
        return math.nan
    e = NS()
    for g, gf in groups.items():
        for k in calibrated.PARAMS:
            e[f"cal_{g}_{k}"] = np.float64(gf.params.get(k) or 0.0)
    return float(sum(f.get("repeat", 1) * calibrated.kernel_time(
        e, key(f["group"]), groups[key(f["group"])].combine,
        np.float64(f["flops_exec"] / f.get("repeat", 1)), np.float64(f["hbm_bytes"] / f.get("repeat", 1)),
        f["dims"], cache=bool(groups[key(f["group"])].params.get("cache_bytes")),
        working_set=f.get("working_set")) for f in r.feats))


# ---- data -----------------------------------------------------------------------------------

def _parts(kernel: str, op, ctx, params: dict | None = None) -> list[dict]:
    """The fitted kernels one op runs as: itself, or QK^T + softmax + AV for attention."""
    params = params or {}
    p = REGISTRY[op.kind].inputs(op, ctx)
    if op.kind == "attention" and kernel not in GROUP:
        e = NS({k: np.float64(v) for k, v in p.items()})
        mm = calibrated.attention_matmul_group(op)
        return [{"group": calibrated.group(mm if g == "matmul" else g, op.dtype),
                 "flops_exec": float(f), "hbm_bytes": float(b),
                 "dims": None if d is None else tuple(float(x) for x in d)}
                for g, f, b, d in calibrated.naive_attention_parts(e)]
    ev = evaluate_op(op, ctx.hardware)
    e = NS({k: np.float64(v) for k, v in p.items()})
    dims = ((p["m"], p["k"], p["n"]) if op.kind == "matmul" else  # the shape knees' dims
            tuple(float(x) for x in calibrated.attention_dims(e)) if op.kind == "attention" else None)
    base = op.calibrate_as or GROUP.get(kernel, kernel)
    if base == "matmul":
        base = calibrated.matmul_group(op.m, op.n)
    part = {"group": calibrated.group(base, op.dtype),
            "flops_exec": ev["flops_exec"], "hbm_bytes": ev["hbm_bytes"], "dims": dims}
    ws = calibrated.working_set(op, e)
    if ws is not None:  # as calibrated.column prices it
        part["working_set"] = float(ws)
    if kernel == "matmul_pallas" and params.get("interpret"):
        # the Pallas interpreter runs the grid as a loop: each step a (block_m, block_k,
        # block_n) matmul whose slicing touches the whole operands (at a fixed block the time
        # per step grows with the array size), so steps x full-array bytes
        bm, bk, bn = (params[f"block_{x}"] for x in "mkn")
        steps = math.ceil(op.m / bm) * math.ceil(op.k / bk) * math.ceil(op.n / bn)
        part.update(repeat=steps, dims=(float(bm), float(bk), float(bn)),
                    hbm_bytes=ev["hbm_bytes"] * steps)
    return [part]


def rows_from_measurements(df, base: Hardware) -> list[Row]:
    """Merge passes per shape and attach the model features of each kernel's parts."""
    rows = []
    for (kernel, params, dtype), g in df.groupby(["kernel", "params", "dtype"], sort=False):
        feats, spec = [], 0.0
        for op in ops_list(kernel, json.loads(params), dtype):
            try:
                spec += evaluate_op(op, base)["t_lower"]
                feats += _parts(kernel, op, OpContext(None, base), json.loads(params))
            except SpecError as e:
                raise SpecError(f"measurement {kernel} {params} {dtype}: {e}") from None
        groups = {f["group"] for f in feats}
        group = groups.pop() if len(groups) == 1 else COMPOSITE
        passes = sorted(float(x) for x in g["median_s"])
        rows.append(Row(kernel, params, dtype, group, float(np.median(passes)), passes,
                        float(np.median(g["cv"])), spec, feats,
                        heldout=group == COMPOSITE))  # composites are only ever predicted
    return rows


def split(rows: list[Row]) -> None:
    """Deterministic fit / held-out split per group: the largest shape (extrapolation) and
    every third of the rest are held out."""
    by = {}
    for r in rows:
        if r.group != COMPOSITE:
            by.setdefault(r.group, []).append(r)
    for g in by.values():
        g.sort(key=lambda r: sum(f["flops_exec"] + f["hbm_bytes"] for f in r.feats))
        if len(g) < 4:
            continue  # too few to spare any
        g[-1].heldout = g[-1].extrapolation = True
        for r in g[1:-1:3]:
            r.heldout = True


def noise_floor(rows: list[Row]) -> dict:
    """How far one pass is from the mean of the other passes (the best any model can do)."""
    d = []
    for r in rows:
        if len(r.passes) < 2:
            continue
        for i, x in enumerate(r.passes):
            rest = r.passes[:i] + r.passes[i + 1:]
            d.append(abs(x - np.mean(rest)) / np.mean(rest))
    return _stats(d)


def _stats(errs) -> dict:
    if not len(errs):
        return {"n": 0, "median": None, "p90": None, "worst": None}
    a = np.asarray(errs, float)
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "worst": float(a.max())}


def fit(df, base: Hardware, source: str = "") -> FitResult:
    rows = rows_from_measurements(df, base)
    split(rows)
    noise = noise_floor(rows)
    # no structure is told apart below the noise of the timings (one pass vs the others; at
    # least 1%): two models fitting within it tie, and the default structure is kept
    rss_floor = max(noise["median"] or 0.0, 0.01) ** 2
    fits = {}
    for name in dict.fromkeys(r.group for r in rows if r.group != COMPOSITE):
        members = [r for r in rows if r.group == name]
        dtype = members[0].dtype
        prior = (base.peak_flops.get(dtype) or max(base.peak_flops.values()), base.hbm_bandwidth)
        # naive attention runs as a sequence of kernels (QK^T, the softmax passes, AV): its
        # compute and memory phases follow one another, so they add (no max)
        combines = ("sum",) if name.startswith("attention") else ("sum", "max")
        by = _fit_group(members, matmul=any(f["dims"] for r in members for f in r.feats), prior=prior,
                        combines=combines, rss_floor=rss_floor)
        if by:
            fits[name] = by
    groups = {name: min(by.values(), key=lambda sb: sb[0])[1] for name, by in fits.items()}
    for r in rows:
        r.predicted_s = _predict_row(r, groups)
    res = FitResult(base, rows, groups, noise, source=source)
    res.errors = summarize(rows)
    return res


def summarize(rows: list[Row]) -> dict:
    def errs(sel, attr):
        return [float(calibrated.relative_error(getattr(r, attr), r.measured_s)) for r in sel
                if np.isfinite(getattr(r, attr))]
    held = [r for r in rows if r.heldout]
    # the acceptance metric: held-out kernels of 1 ms or more whose timing is stable (cv <= 0.2
    # in the median pass); unstable rows are reported apart, neither fitted nor scored blindly
    long = [r for r in held if r.measured_s >= LONG_S and not r.unstable]
    shaky = [r for r in held if r.measured_s >= LONG_S and r.unstable]
    return {
        "heldout_1ms": {"spec_roofline": _stats(errs(long, "spec_s")),
                        "calibrated": _stats(errs(long, "predicted_s"))},
        "heldout_1ms_unstable": {"spec_roofline": _stats(errs(shaky, "spec_s")),
                                 "calibrated": _stats(errs(shaky, "predicted_s"))},
        "heldout_all": {"spec_roofline": _stats(errs(held, "spec_s")),
                        "calibrated": _stats(errs(held, "predicted_s"))},
        "fit": {"calibrated": _stats(errs([r for r in rows if not r.heldout], "predicted_s"))},
    }


def report_text(res: FitResult) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"
    lines = ["held-out kernels >= 1 ms, stable (cv <= 0.2)   n   median    p90   worst"]
    e, u = res.errors["heldout_1ms"], res.errors["heldout_1ms_unstable"]
    for label, s in (("spec-sheet roofline (t_lower)", e["spec_roofline"]),
                     ("calibrated model (t_calibrated)", e["calibrated"]),
                     ("noise floor (one pass vs the rest)", res.noise),
                     ("unstable held-out rows: spec", u["spec_roofline"]),
                     ("unstable held-out rows: calibrated", u["calibrated"])):
        lines.append(f"{label:44s} {s['n']:3d}   {pct(s['median']):>6} {pct(s['p90']):>6} {pct(s['worst']):>6}")
    lines.append("")
    lines.append("group              combine  peak FLOP/s  bandwidth B/s  overhead  d_mn   d_k"
                 "   cache  cache B/s  sharp  fit err")
    for g, f in res.groups.items():
        p = f.params
        if p.get("cache_bytes"):
            cache = (f"{p['cache_bytes'] / 2**20:6.1f}MiB {p['cache_bandwidth']:10.3e} "
                     f"{p['cache_sharpness']:5.1f}")
        else:
            cache = f"{'-':>9} {'-':>10} {'-':>5}"
        lines.append(f"{g:18s} {f.combine:7s} {p['peak_flops']:11.3e} {p['bandwidth']:14.3e} "
                     f"{p['overhead'] * 1e6:7.1f}us {p.get('small_dim', 0):5.1f} {p.get('small_k', 0):5.1f} "
                     f"{cache} {100 * f.fit_error:7.1f}%"
                     + (f"  ({', '.join(f.pinned)} = spec: not measured by these kernels)"
                        if f.pinned else ""))
    return "\n".join(lines)


def bench_workload(res: FitResult):
    """The measured kernels as a workload (one op per kernel part, calibration groups set), so
    the workbook computes each kernel's prediction with live formulas. Returns the workload and,
    per fit row, the indices of its ops."""
    from ..specs import Workload

    ops, index = [], []
    for i, r in enumerate(res.rows):
        idx = []
        for j, op in enumerate(ops_list(r.kernel, json.loads(r.params), r.dtype)):
            upd = {"name": f"{r.kernel}#{i}.{j}"}
            base = op.calibrate_as or GROUP.get(r.kernel, r.kernel)
            if op.kind != "attention" and base != op.kind:  # else the op's own kind picks it
                upd["calibrate_as"] = base                   # (matmul or gemv, as the fitter)
            data = {**op.model_dump(exclude_none=True), **upd}
            idx.append(len(ops))
            ops.append(data)
        index.append(idx)
    return Workload.model_validate({"name": "calibration-kernels", "ops": ops}), index
