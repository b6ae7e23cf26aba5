"""Collectives on real topologies: TPU torus axes (with or without wraparound), GPU NVLink
domains, scale-out NICs and DCN between slices (How to Scale Your Model: jax-ml.github.io/scaling-book/tpus and
jax-ml.github.io/scaling-book/sharding; NVIDIA nccl-tests doc/PERFORMANCE.md for GPU rings).

V (``v_bytes``) is the full array: all_gather the gathered result; reduce_scatter and all_reduce
the unreduced input on each device; all_to_all the whole array across the group; ppermute what
each device sends; broadcast the message. n devices in the group.

Structure (``topology.group``) becomes numeric input cells; the cost is formulas over them and
the hardware symbols ``link_bandwidth`` (one-way, per link), ``hop_latency``,
``scale_out_bandwidth`` and ``dcn_bandwidth``, so a workbook recomputes when those change.

Levels: the group's devices sit on up to three levels, fastest first: ``n_link`` over the
chip's own links (ICI torus or NVLink), ``n_scale_out`` nodes (GPU NICs, all rails in parallel:
each GPU its own scale_out_bandwidth), ``n_dcn`` slices (dcn_bandwidth per chip). A collective
over several levels runs hierarchically, one phase per level; the per-level times are the
columns ``t_link``, ``t_scale_out`` and ``t_dcn`` (JSON ``t_levels``).

Level rule: all_gather, reduce_scatter, all_reduce, broadcast and ppermute take the max of the
level times, because the levels pipeline: chunks move on the fast level while earlier chunks
cross the slow one (How to Scale Your Model, GPU chapter: a 1 GB all-gather over 32 nodes of 8
H100s is V/W_scale-out = 1e9/4.13e11 = 2.42 ms, not the sum of the NVLink and NIC phases). The
same holds for the ICI and DCN phases of a multi-slice collective. all_to_all keeps the sum: its
levels exchange different data (every device sends to every other), nothing to pipeline.

Bandwidth terms (W = ring_links x link_bandwidth: 2 per wrapped torus axis, 1 per unwrapped,
summed over the axes gathered at once; links_per_chip on NVLink; n_link - 1 on a full mesh,
one link to each peer, where the collectives are direct and each pass is one latency step,
see perfmodel.topology):
- all_gather, reduce_scatter: V (n-1)/n / W on one level (the book: V/W_bidi (n-1)/n with
  wraparound, V/W_uni (n-1)/n without; GPU V (n-1)/(n W)). Over levels the slow phases carry
  the smaller shards: + V/n_link (n_so-1)/n_so / scale_out + V/(n_link n_so) (n_dcn-1)/n_dcn /
  dcn. reduce_scatter counts (n-1)/n x V/elem_bytes reduction FLOPs per device.
- all_reduce = reduce_scatter + all_gather: twice the bytes, time and hops.
- all_to_all: the larger of injection (each device sends V/n (n-1)/n over its W) and
  bisection (cut_frac of the data crosses the narrowest cut of cut_links links each way):
  a wrapped ring gives V/4 over 2 links = V/(4 W_bidi) as in the book; NVLink gives
  V (n-1)/(n^2 W). Slow levels: V/n (n_l-1)/n_l over each device's own NIC/DCN share.
- ppermute (a cyclic shift by one over the group, JAX's linear order): every device sends V
  over one link direction (p2p_links x link_bandwidth; all NVLink links on a GPU), or its NIC
  / DCN share when the shift crosses nodes/slices; the transfers run in parallel (max).
- broadcast: pipelined ring from the root: V / W per level.

Latency: ``hops`` x ``hop_latency``. Hops per pass: ring collectives sum the ring hops of each
axis (floor(n/2) wrapped, n-1 unwrapped, n-1 ring steps on a switch, NIC or DCN level);
all_to_all the group's diameter; ppermute the longest hop count of the shift.

t_comm rule: ``t_comm = max(t_latency, t_bandwidth)``, the book's collective formula for a
pipelined ring (per-hop latency hides behind the chunks in flight). The classic alpha-beta
model adds them; both terms are columns, so their sum is t_latency + t_bandwidth.

hbm_bytes: the device's input and output, each once (all_gather V/n + V, reduce_scatter V + V/n,
all_reduce 2V, all_to_all 2V/n, ppermute 2V, broadcast V): the least any implementation moves
through HBM, the same convention as the other ops.

nccl-tests: algbw = S / t_comm with S = V (all_to_all: the per-rank buffer V/n); busbw = algbw
x (all_reduce 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n; broadcast, ppermute 1).
"""

from __future__ import annotations

import numpy as np

from ..formula import Expr, Ref, fmax, where
from ..specs import SpecError
from ..topology import workload_group
from . import common_inputs, num, register

PASSES = {"all_reduce": 2}  # all_reduce = reduce_scatter + all_gather
RING = ("all_gather", "reduce_scatter", "all_reduce")
REDUCES = ("reduce_scatter", "all_reduce")

# input cells (numbers) the cost formulas read; the workbook shows them per collective row
INPUT_CELLS = ["elem_bytes", "v_bytes", "n_devices", "n_link", "n_scale_out", "n_dcn",
               "ring_links", "cut_frac", "cut_links", "p2p_links", "step_hops"]
# cost columns this model returns (besides the roofline's derived columns)
COST_COLUMNS = ["flops", "flops_exec", "hbm_bytes", "comm_bytes", "hops", "t_latency",
                "t_link", "t_scale_out", "t_dcn", "t_bandwidth", "t_comm", "algbw", "busbw"]
LEVELS = ("link", "scale_out", "dcn")  # fastest first; t_<level> columns


def _group(op, ctx):
    if ctx is None or ctx.workload is None or ctx.hardware is None:
        raise SpecError(f"collective op {op.name!r} needs its workload (slice, mesh) and the "
                        f"hardware to be evaluated")
    return workload_group(ctx.hardware, ctx.workload, op.axes)


def _step_hops(op, g) -> int:
    if op.collective == "all_to_all":
        return g.diameter
    if op.collective == "ppermute":
        return g.shift_hops
    return g.ring_hops  # ring passes and the pipelined broadcast


def _inputs(op, ctx):
    g = _group(op, ctx)
    return {**common_inputs(op), "v_bytes": num(op.v_bytes), "n_devices": float(g.n_devices),
            "n_link": float(g.n_link), "n_scale_out": float(g.n_scale_out),
            "n_dcn": float(g.n_dcn), "ring_links": g.ring_links, "cut_frac": g.cut_frac,
            "cut_links": g.cut_links, "p2p_links": g.p2p_links,
            "step_hops": float(_step_hops(op, g))}


def _info(op, ctx) -> dict:
    """Descriptive fields for JSON: ``wraparound`` has one entry per physical axis the
    collective spans, outermost first: true/false on torus axes, null on switched NVLink,
    scale-out and DCN axes (no ring wraps there)."""
    g = _group(op, ctx)
    return {"collective": op.collective, "axes": list(op.axes),
            "wraparound": g.wraparound, "axis_lengths": g.lengths,
            "physical_axes": [a.describe() for a in g.axes]}


def _phase(used, num, den):
    """A level's term, 0 when the level is not used (no 0/0 when its bandwidth is absent)."""
    return where(used, num / den, 0)


@register("collective", _inputs, _info)
def collective(p, hw, op):
    with np.errstate(all="ignore"):
        return _cost(p, hw, op)


def _cost(p, hw, op):
    c = op.collective
    V, n, e = p.v_bytes, p.n_devices, p.elem_bytes
    nl, ns, nd = p.n_link, p.n_scale_out, p.n_dcn
    L, S, D = hw.link_bandwidth, hw.scale_out_bandwidth, hw.dcn_bandwidth
    passes = PASSES.get(c, 1)
    pipelined = True  # the level times combine by max (see the module docstring)
    if c in RING:
        b_link = V * (nl - 1) / nl
        b_so = V / nl * (ns - 1) / ns
        b_dcn = V / (nl * ns) * (nd - 1) / nd
        comm = passes * (b_link + b_so + b_dcn)
        levels = [passes * _phase(nl > 1, b_link, p.ring_links * L),
                  passes * _phase(ns > 1, b_so, S), passes * _phase(nd > 1, b_dcn, D)]
        hbm = {"all_gather": V / n + V, "reduce_scatter": V + V / n, "all_reduce": 2 * V}[c]
        size, factor = V, passes * (n - 1) / n
    elif c == "all_to_all":
        share = V / n  # each device's buffer
        b_link = share * (nl - 1) / nl
        b_so = share * (ns - 1) / ns
        b_dcn = share * (nd - 1) / nd
        comm = b_link + b_so + b_dcn
        inject = b_link / (p.ring_links * L)
        bisect = V / (ns * nd) * p.cut_frac / (p.cut_links * L)
        levels = [where(nl > 1, fmax(inject, bisect), 0), _phase(ns > 1, b_so, S),
                  _phase(nd > 1, b_dcn, D)]
        pipelined = False
        hbm = 2 * share
        size, factor = share, (n - 1) / n
    elif c == "ppermute":
        comm = V
        levels = [_phase(nl > 1, V, p.p2p_links * L), _phase(ns > 1, V, S),
                  _phase(nd > 1, V, D)]
        hbm = 2 * V
        size, factor = V, 1
    elif c == "broadcast":
        comm = V
        levels = [_phase(nl > 1, V, p.ring_links * L), _phase(ns > 1, V, S),
                  _phase(nd > 1, V, D)]
        hbm = V
        size, factor = V, 1
    else:  # pragma: no cover (the spec's Literal rejects others)
        raise SpecError(f"unknown collective {c!r}")
    flops = V / e * (n - 1) / n if c in REDUCES else 0.0
    out: dict = {}
    sym = isinstance(V, Expr)

    def col(name, value):
        """Record a column; later columns refer to it (a cell in the workbook), not re-expand it."""
        out[name] = value
        return Ref(name) if sym else value

    col("flops", flops)
    col("flops_exec", flops)
    col("hbm_bytes", hbm)
    col("comm_bytes", comm)
    hops = col("hops", passes * p.step_hops)
    t_lat = col("t_latency", hops * hw.hop_latency)
    lv = [col(f"t_{name}", t) for name, t in zip(LEVELS, levels)]
    t_bw = col("t_bandwidth", fmax(*lv) if pipelined else lv[0] + lv[1] + lv[2])
    t_comm = col("t_comm", fmax(t_lat, t_bw))
    algbw = col("algbw", size / t_comm)
    col("busbw", algbw * factor)
    return out
