"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so
this folder is on sys.path)."""

from __future__ import annotations

import os
import time


def timed(fn, runs: int) -> list[float]:
    """Wall times of ``runs`` calls of ``fn``, after one warm-up call (imports, first touches)."""
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pin_one_core() -> str:
    """Pin this process to one CPU (the single-core figures); say what was done."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"
