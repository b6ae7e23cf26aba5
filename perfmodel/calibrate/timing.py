"""Robust wall-clock timing of one built kernel (see kernels.Built).

Procedure: run ``warmup`` calls first (the first one compiles), then time single calls, each
``fn(*args)`` followed by ``jax.block_until_ready`` on the result, with Python's garbage
collector paused. A donated kernel gets its previous output back as ``args[0]`` (so the input
buffer is reused instead of a fresh output allocation per call, which on CPU otherwise dominates
memory-bound kernels). A non-donated kernel's previous output is released before the next call.

Stop after at least ``min_reps`` timed calls when either the time budget is spent or the spread
has settled: with 6 or more calls, the robust relative standard error of the median,
1.2533 * 1.4826 * MAD / sqrt(n) / median, is below ``target_rse``. Never more than ``max_reps``.
A kernel slower than budget / min_reps takes min_reps calls (plus warm-up) regardless.
Kept: median, min, 20th percentile, coefficient of variation (sample std / mean over all timed
calls, outliers included: it is the row's honesty flag) and the number of timed calls.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import numpy as np

from .kernels import Built

UNSTABLE_CV = 0.2  # rows with a larger cv are flagged unstable (bench.unstable, the fitter)


@dataclass(frozen=True)
class Budget:
    seconds: float = 1.0      # timed-loop budget per kernel per pass (min_reps may exceed it)
    min_reps: int = 5
    max_reps: int = 2000
    target_rse: float = 0.01  # stop early once the median is known this well
    warmup: int = 2


BUDGETS = {
    "full": Budget(seconds=1.0, min_reps=5, max_reps=2000, target_rse=0.01, warmup=2),
    "quick": Budget(seconds=0.5, min_reps=3, max_reps=1000, target_rse=0.01, warmup=2),
    "tiny": Budget(seconds=0.02, min_reps=3, max_reps=50, target_rse=0.05, warmup=1),
}


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    p20_s: float
    cv: float
    reps: int

    @property
    def unstable(self) -> bool:
        return self.cv > UNSTABLE_CV


def summarize(samples) -> Timing:
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no timing samples")
    cv = float(x.std(ddof=1) / x.mean()) if x.size > 1 and x.mean() > 0 else 0.0
    return Timing(median_s=float(np.median(x)), min_s=float(x.min()),
                  p20_s=float(np.percentile(x, 20)), cv=cv, reps=int(x.size))


def median_rse(samples) -> float:
    """Robust relative standard error of the median (MAD-based; inf when undefined)."""
    x = np.asarray(samples, dtype=float)
    med = float(np.median(x))
    if x.size < 2 or med <= 0:
        return math.inf
    mad = float(np.median(np.abs(x - med)))
    return 1.2533 * 1.4826 * mad / math.sqrt(x.size) / med


def time_kernel(built: Built, budget: Budget = Budget()) -> Timing:
    import jax

    fn, args = built.fn, list(built.args)
    out = None
    for _ in range(max(1, budget.warmup)):
        out = jax.block_until_ready(fn(*args))
        if built.donate:
            a0 = args[0]
            if getattr(out, "shape", None) != a0.shape or getattr(out, "dtype", None) != a0.dtype:
                raise ValueError(f"a donating kernel must return one array shaped like its "
                                 f"first argument ({a0.shape} {a0.dtype}), got {type(out)}")
            args[0] = out
        out = None

    samples: list[float] = []
    next_check = max(budget.min_reps, 6)  # a MAD of fewer samples means little
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while True:
            if built.cycle:  # cold operands: the next tuple of the rotation
                args = list(built.cycle[len(samples) % len(built.cycle)])
            t0 = time.perf_counter()
            out = fn(*args)
            jax.block_until_ready(out)
            samples.append(time.perf_counter() - t0)
            if built.donate:
                args[0] = out
            out = None
            n = len(samples)
            if n >= budget.max_reps:
                break
            if n >= budget.min_reps:
                if time.perf_counter() - start >= budget.seconds:
                    break
                if n >= next_check:  # geometric schedule keeps the check O(total)
                    if median_rse(samples) < budget.target_rse:
                        break
                    next_check = n + max(1, n // 8)
    finally:
        args.clear()
        if gc_was:
            gc.enable()
    return summarize(samples)
