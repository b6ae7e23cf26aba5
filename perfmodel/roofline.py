"""Cost + hardware -> times, bound, intensity, ridge, utilisation.

Defined as an ordered list of derived columns, each a formula over the op's cost columns, the
hardware symbols and the columns before it. The workbook renders each column once per op row
(later columns refer to earlier cells); Python evaluates the same list with numbers.
"""

from __future__ import annotations

from typing import Callable

from .formula import NS, fmax, fmin, where

# (column, formula over env) in dependency order. ``peak`` is the rate of the op's main unit
# (perfmodel.precision: the matrix unit at its compute dtype and precision, or the vector
# unit); ``vector_peak`` the vector unit's, for the part of an op's FLOPs that runs there
# (``flops_vector``: attention's softmax, of which ``flops_transcendental`` are exps priced at
# ``transcendental_peak``). The parts run one after the other.
COLUMNS: list[tuple[str, Callable]] = [
    ("peak_used", lambda e: e.peak),
    ("intensity", lambda e: e.flops / e.hbm_bytes),
    ("ridge", lambda e: e.peak_used / e.hbm_bandwidth),
    ("t_compute", lambda e: _t_compute(e)),
    ("t_memory", lambda e: e.hbm_bytes / e.hbm_bandwidth),
    # lower bound: compute, memory (and comm) perfectly overlapped; upper: none overlapped
    ("t_lower", lambda e: fmax(e.t_compute, e.t_memory, *_comm(e))),
    ("t_upper", lambda e: _sum([e.t_compute, e.t_memory, *_comm(e)])),
    ("bound", lambda e: _bound(e)),
    ("mfu", lambda e: e.flops / (e.t_lower * e.peak_used)),
    ("mbu", lambda e: e.hbm_bytes / (e.t_lower * e.hbm_bandwidth)),
]


def _t_compute(e):
    if "flops_vector" not in e:
        return e.flops_exec / e.peak_used
    t = (e.flops_exec - e.flops_vector) / e.peak_used
    if "flops_transcendental" in e:  # the exps of flops_vector, on their own unit
        return (t + (e.flops_vector - e.flops_transcendental) / e.vector_peak
                + e.flops_transcendental / e.transcendental_peak)
    return t + e.flops_vector / e.vector_peak


def _comm(e) -> list:
    return [e.t_comm] if "t_comm" in e else []


def _sum(xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _bound(e):
    cm = where(e.t_compute >= e.t_memory, "compute", "memory")
    if "t_comm" in e:
        return where(e.t_comm > fmax(e.t_compute, e.t_memory), "comm", cm)
    return cm


def derive(env: NS, columns=COLUMNS, symbolic: Callable[[str], object] | None = None) -> dict:
    """Evaluate ``columns`` in order. With ``symbolic``, each finished column enters the env
    as ``symbolic(name)`` (a Ref to its cell) so later formulas refer to it, not re-expand it."""
    env = NS(env)
    out = {}
    for name, f in columns:
        out[name] = f(env)
        env[name] = symbolic(name) if symbolic else out[name]
    return out


# ---- quantities read off the roofline (one definition each, rendered by the report) --------

def achieved_flops(flops, t):
    """FLOP/s achieved when ``flops`` take ``t`` seconds (a roofline chart's y)."""
    return flops / t


def roof(intensity, peak, bandwidth):
    """The attainable FLOP/s at an arithmetic intensity: min(peak, intensity x bandwidth)."""
    return fmin(peak, intensity * bandwidth)


def speedup(t_base, t):
    """How many times faster than the base: t_base / t."""
    return t_base / t
