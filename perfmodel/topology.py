"""Slice topology: physical axes, wraparound, hops and link counts (pure Python, no jax).

A *slice* is written as its shape. TPU: ``4x4`` or ``8x16`` on the 2D-torus chips (v5e, v6e),
``4x4x8`` on the 3D-torus chips (v4, v5p); a shape with fewer axes than the torus has the missing
axes of length 1 (``16x16`` on v4 is 16x16x1). GPU: ``N`` (one NVLink node of N GPUs) or ``MxN``
(M nodes of N GPUs joined by their scale-out NICs). A workload's ``slices: S`` joins S slices over
the data-centre network (DCN).

Physical axes, outermost first: ``[dcn S]`` (when S > 1), then the slice's axes; a GPU ``MxN`` is
``[scale_out M, nvlink N]`` (``[scale_out M, fabric N]`` on a full-mesh node). Mesh axes take physical axes in order; a mesh axis may span several
consecutive physical axes whose lengths multiply to its size and then uses all of their links
(``mesh: {fsdp: 8}`` on ``2x2x2`` spans all three). So the outermost mesh axis spans the slices.

Per physical axis (How to Scale Your Model: jax-ml.github.io/scaling-book/tpus and jax-ml.github.io/scaling-book/sharding):

- wraps: ``whole_cubes_4`` (v4, v5p): every axis wraps iff every slice axis is a multiple of 4
  (whole 4x4x4 cubes; 2x2x4 has none); ``full_axis_16`` (v5e, v6e): only an axis of length 16
  wraps; ``always``; ``none``. An axis of length 1 or 2 never counts as wrapped. Switched NVLink,
  scale-out and DCN axes have no wraparound notion (``None``).
- ring hops (latency steps of one ring pass): ``floor(n/2)`` with wraparound (both directions at
  once), ``n - 1`` without; a switched, scale-out or DCN ring takes ``n - 1`` steps; a full
  mesh 1 (direct).
- links, in units of the chip's ``link_bandwidth`` (one-way, per link). ICI bandwidth is per
  axis: a torus axis gives each chip ``links_per_chip / dims`` = 2 links (one to each
  neighbour). A ring collective on a wrapped axis runs both ways at once and drives both
  (W_bidi = 2 x link_bandwidth); on an unwrapped axis (a line) it gets W_uni = 1 x
  link_bandwidth (the book: without wraparound about V/W_uni). Gathering over k axes at once
  adds their links (the book's k W_bidi). NVLink: each GPU reaches the switch over all its
  ``links_per_chip`` links (links_per_chip x link_bandwidth each way, any peer). Scale-out and
  Full mesh (``topology: full_mesh``, AMD Instinct nodes: 8 GPUs, 7 Infinity Fabric links
  each, no switch): every GPU has one link to each other GPU of the node, so a group of n GPUs
  in a node drives n-1 links per GPU (``links`` = n - 1; the node's other links lead outside
  the group) and needs n - 1 <= links_per_chip. Collectives there are direct (one-shot): each
  device sends each peer its share over that peer's own link at once, so a pass is 1 latency
  step (not a ring's n-1) and the bandwidth term is the switched formula's with W = (n-1) x
  link_bandwidth; a point-to-point transfer uses one link; the bisection of n GPUs is
  floor(n/2) x ceil(n/2) links each way. Scale-out and
  DCN axes use other bandwidths (``scale_out_bandwidth`` per GPU NIC, all rails in parallel;
  ``dcn_bandwidth`` per chip) and count 0 links here.
- point-to-point hops on the torus: per axis ``min(d, n - d)`` with wraparound, ``|d|`` without
  (4x4 without wraparound: (0,0) to (3,3) is 6 hops); 1 per switched/scale-out/DCN axis crossed.

Errors are ``SpecError`` with a message that says what would be valid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import SpecError
from .limits import MAX_DEVICES

LINK_LEVELS = ("ici", "nvlink", "fabric")  # axes whose bandwidth is the chip's own link_bandwidth
GPU_TOPOLOGIES = {"switched": "nvlink", "full_mesh": "fabric"}  # topology -> its node's level
TORUS_DIMS = {"torus2d": 2, "torus3d": 3}

_SHAPE_RE = re.compile(r"^\s*\d+(\s*[xX*×]\s*\d+)*\s*$")


# ---- slice shapes -------------------------------------------------------------------------

def parse_shape(text) -> tuple[int, ...]:
    """'4x4x8' -> (4, 4, 8); '8' -> (8,). Syntax only (no hardware): positive whole numbers
    joined by 'x'."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise SpecError(f"slice {text!r} is not a shape: write axis lengths joined by 'x', "
                        f"e.g. '4x4', '8x16', '4x4x8' (TPU) or '8', '2x8' (GPU nodes x GPUs)")
    s = str(text)
    if not _SHAPE_RE.match(s):
        raise SpecError(f"slice {s!r} does not parse: write axis lengths joined by 'x', e.g. "
                        f"'4x4', '8x16', '4x4x8' (TPU) or '8', '2x8' (GPU nodes x GPUs)")
    dims = tuple(int(d) for d in re.split(r"\s*[xX*×]\s*", s.strip()))
    if any(d < 1 for d in dims):
        raise SpecError(f"slice {s!r} has an axis of length 0: every axis needs at least 1 chip")
    if len(dims) > 3:
        raise SpecError(f"slice {s!r} has {len(dims)} axes; TPU tori have 2 or 3, GPU slices "
                        f"are 'N' or 'MxN'")
    check_devices(math.prod(dims), f"slice {s!r}")
    return dims


def check_devices(n: int, what: str) -> None:
    """Refuse a job of more chips than ``limits.MAX_DEVICES`` (the topology walks them)."""
    if n > MAX_DEVICES:
        raise SpecError(f"{what} has {n:,} chips, more than the limit of {MAX_DEVICES:,} "
                        f"(MAX_DEVICES; larger than any machine built): check the sizes")


def format_shape(dims) -> str:
    return "x".join(str(d) for d in dims)


# ---- per-axis rules -----------------------------------------------------------------------

def wraps(lengths, rule: str | None) -> list[bool]:
    """Wraparound per torus axis under the chip's rule (see module docstring)."""
    lengths = list(lengths)
    if rule == "whole_cubes_4":
        w = all(n % 4 == 0 for n in lengths)
        out = [w] * len(lengths)
    elif rule == "full_axis_16":
        out = [n == 16 for n in lengths]
    elif rule == "always":
        out = [True] * len(lengths)
    elif rule in (None, "none"):
        out = [False] * len(lengths)
    else:
        raise SpecError(f"unknown wraparound rule {rule!r}: use whole_cubes_4, full_axis_16, "
                        f"always or none")
    return [w and n > 2 for w, n in zip(out, lengths)]


def ring_hops(n: int, wrap: bool | None) -> int:
    """Latency steps of one ring pass over n devices: floor(n/2) with wraparound (both
    directions), n - 1 without (and on switched, scale-out or DCN rings)."""
    return n // 2 if wrap else max(n - 1, 0)


def axis_distance(a: int, b: int, n: int, wrap: bool | None, torus: bool = True) -> int:
    if a == b:
        return 0
    if not torus:
        return 1  # through a switch / NIC / DCN: one step
    d = abs(a - b)
    return min(d, n - d) if wrap else d


def p2p_hops(src, dst, lengths, wrap_flags, torus=None) -> int:
    """Hops between two chips of a torus (sum over axes of the per-axis distance)."""
    torus = torus if torus is not None else [True] * len(lengths)
    return sum(axis_distance(a, b, n, w, t)
               for a, b, n, w, t in zip(src, dst, lengths, wrap_flags, torus))


@dataclass(frozen=True)
class Axis:
    """One physical axis of the whole job (slices x slice)."""

    index: int           # position among the physical axes, outermost first
    length: int
    level: str           # ici | nvlink | scale_out | dcn
    wraps: bool | None   # torus axes: True/False; switched/scale-out/DCN: None
    links: float         # link_bandwidths a ring along this axis drives per chip (0 off-link)

    @property
    def torus(self) -> bool:
        return self.level == "ici"

    @property
    def ring_hops(self) -> int:
        if self.level == "fabric":  # direct: every device reaches every peer in one step
            return 1 if self.length > 1 else 0
        return ring_hops(self.length, self.wraps)

    @property
    def diameter(self) -> int:
        if self.length <= 1:
            return 0
        return self.ring_hops if self.torus else 1

    def describe(self) -> str:
        w = {True: " wrap", False: " no-wrap", None: ""}[self.wraps]
        return f"{self.level}:{self.length}{w}"


# ---- hardware -> physical axes ----------------------------------------------------------

def _ic(hw):
    return hw.interconnect


_DOMAIN = {"switched": "NVLink", "full_mesh": "full-mesh"}


def physical_axes(hw, slice_shape, slices: int = 1) -> list[Axis]:
    """The job's physical axes on this hardware, outermost first (DCN, then the slice)."""
    ic = _ic(hw)
    dims = parse_shape(slice_shape) if not isinstance(slice_shape, tuple) else slice_shape
    shown = format_shape(dims)
    topo = ic.topology
    if topo in (None, "none"):
        raise SpecError(
            f"hardware {hw.name!r} has no chip-to-chip interconnect (interconnect.topology is "
            f"{topo or 'unset'}): collectives need interconnect.topology, links_per_chip, "
            f"link_bandwidth and hop_latency in its spec")
    missing = [k for k in ("links_per_chip", "link_bandwidth", "hop_latency")
               if getattr(ic, k) is None]
    if missing:
        raise SpecError(f"hardware {hw.name!r} lacks interconnect.{', interconnect.'.join(missing)}, "
                        f"which collectives need: add them (with a source) to its spec")
    axes: list[tuple[int, str, bool | None, float]] = []  # (length, level, wraps, links)
    if slices > 1:
        if not ic.dcn_bandwidth:
            raise SpecError(
                f"workload uses slices: {slices} but hardware {hw.name!r} has no "
                f"interconnect.dcn_bandwidth (per chip, between slices): add one with a source, "
                f"or drop 'slices'")
        axes.append((slices, "dcn", None, 0.0))
    if topo in TORUS_DIMS:
        nd = TORUS_DIMS[topo]
        if len(dims) > nd:
            raise SpecError(
                f"slice {shown!r} has {len(dims)} axes but {hw.name!r} is a {nd}D torus "
                f"({topo}): give at most {nd} axis lengths, e.g. "
                f"{'4x4' if nd == 2 else '4x4x8'}")
        full = tuple(dims) + (1,) * (nd - len(dims))
        _check_shape(hw, full, shown)
        per_axis = ic.links_per_chip / nd  # one link to each neighbour: 2
        for n, w in zip(full, wraps(full, ic.wraparound)):
            links = 0.0 if n <= 1 else (per_axis if w else 1.0)
            axes.append((n, "ici", w, links))
    elif topo in GPU_TOPOLOGIES:
        if len(dims) > 2:
            raise SpecError(
                f"slice {shown!r} has {len(dims)} axes; a GPU slice is 'N' (one node of N GPUs) "
                f"or 'MxN' (M nodes of N GPUs), e.g. '8' or '2x8'")
        nodes, per_node = (1, dims[0]) if len(dims) == 1 else dims
        dom = ic.domain_size
        if dom is not None and per_node > dom:
            fix = (f"write '{nodes * per_node // dom}x{dom}' ({nodes * per_node // dom} nodes "
                   f"of {dom})" if per_node % dom == 0 else f"write 'MxN' with N <= {dom}")
            raise SpecError(
                f"slice {shown!r} puts {per_node} GPUs in one {_DOMAIN[topo]} node but "
                f"{hw.name!r} has {dom} GPUs per {_DOMAIN[topo]} domain "
                f"(interconnect.domain_size): {fix}")
        if nodes > 1:
            if not ic.scale_out_bandwidth:
                raise SpecError(
                    f"slice {shown!r} spans {nodes} nodes but hardware {hw.name!r} has no "
                    f"interconnect.scale_out_bandwidth (per GPU NIC): add one with a source")
            axes.append((nodes, "scale_out", None, 0.0))
        if topo == "switched":  # every link reaches the switch, so any peer
            links = float(ic.links_per_chip)
        else:  # full mesh: one link to each peer of the group, n-1 of the chip's links
            if per_node - 1 > ic.links_per_chip:
                raise SpecError(
                    f"slice {shown!r} puts {per_node} GPUs in one full-mesh node but "
                    f"{hw.name!r} has {ic.links_per_chip} links per GPU (a full mesh of n GPUs "
                    f"needs n-1): write 'MxN' with N <= {ic.links_per_chip + 1}")
            links = float(per_node - 1)
        axes.append((per_node, GPU_TOPOLOGIES[topo], None, links if per_node > 1 else 0.0))
    else:
        raise SpecError(f"hardware {hw.name!r}: unknown interconnect.topology {topo!r}; use "
                        f"torus2d, torus3d, switched or full_mesh")
    return [Axis(i, n, lvl, w, lk) for i, (n, lvl, w, lk) in enumerate(axes)]


SMALL_CUBE_SLICES = ((1, 2, 2), (2, 2, 2), (2, 2, 4), (2, 4, 4))  # sorted axis lengths


def _check_shape(hw, full: tuple[int, ...], shown: str) -> None:
    """The chip's documented slice shapes (interconnect.slice_shapes, max_chips)."""
    ic = _ic(hw)
    if ic.max_chips is not None and math.prod(full) > ic.max_chips:
        raise SpecError(f"slice {shown!r} has {math.prod(full)} chips but a {hw.name!r} pod has "
                        f"{ic.max_chips} (interconnect.max_chips): use a smaller slice, or "
                        f"'slices' to join several over DCN")
    if ic.slice_shapes == "cubes_4":
        if tuple(sorted(full)) in SMALL_CUBE_SLICES or all(n % 4 == 0 for n in full):
            return
        raise SpecError(f"slice {shown!r} is not a {hw.name!r} topology: slices are 2x2x1, "
                        f"2x2x2, 2x2x4, 2x4x4 or whole 4x4x4 cubes (every axis a multiple of "
                        f"4, e.g. 4x4x4, 4x4x8, 8x16x16); e.g. 8 chips is 2x2x2")


def job_lengths(slice_shape, slices: int = 1) -> list[int]:
    """Hardware-free physical axis lengths (for static checks): [slices] + slice axes."""
    dims = list(parse_shape(slice_shape))
    check_devices(slices * math.prod(dims), f"{slices} slice(s) of {format_shape(dims)}")
    return ([slices] if slices > 1 else []) + dims


# ---- mesh -> physical axes ----------------------------------------------------------------

def map_mesh(mesh: dict[str, int], lengths, where: str = "") -> dict[str, list[int]]:
    """Mesh axis name -> indices of the physical axes it spans, taking them in order.

    A mesh axis takes the next physical axes until their lengths multiply to its size; axes of
    length 1 may be skipped. Sizes that do not line up, or that do not use the whole slice, are
    errors naming the mesh axis.
    """
    lengths = list(lengths)
    total = math.prod(lengths)
    msize = math.prod(mesh.values())
    shown = format_shape(lengths)
    pre = f"{where}: " if where else ""
    if msize != total:
        raise SpecError(
            f"{pre}mesh {dict(mesh)} has {msize} devices but the job has {total} "
            f"(physical axes {shown}, outermost first; 'slices' adds an outer axis): the mesh "
            f"axis sizes must multiply to the number of chips")
    out: dict[str, list[int]] = {}
    i = 0
    for name, size in mesh.items():
        take, prod = [], 1
        while prod < size:
            if i >= len(lengths):  # unreachable when the totals agree; kept for safety
                raise SpecError(f"{pre}mesh axis {name!r} ({size}) runs past the slice {shown}")
            take.append(i)
            prod *= lengths[i]
            i += 1
        if prod != size:
            spans = " x ".join(str(lengths[j]) for j in take)
            raise SpecError(
                f"{pre}mesh axis {name!r} has size {size} but the physical axes it reaches "
                f"multiply to {spans} = {prod}: mesh axes take the job's axes ({shown}, "
                f"outermost first) in order, each one axis or a run of consecutive axes whose "
                f"lengths multiply to its size; reorder or resize the mesh")
        out[name] = take
    return out


# ---- a collective's group ------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """The devices one collective over some mesh axes runs among, and its structural numbers."""

    axes: tuple[Axis, ...]            # physical axes spanned, outermost first
    n_devices: int
    n_link: int                       # devices of the group joined by the chip's own links
    n_scale_out: int                  # nodes of the group (GPU NICs)
    n_dcn: int                        # slices of the group
    ring_links: float                 # link_bandwidths a ring collective drives per device
    ring_hops: int                    # latency steps of one ring pass (all levels)
    diameter: int                     # most hops between two devices of the group
    shift_hops: int                   # most hops of a cyclic shift by one (ppermute)
    cut_frac: float                   # share of the link-level data crossing its bisection, each way
    cut_links: float                  # links crossing that bisection, each way
    p2p_links: float                  # links one device uses towards one peer
    notes: list[str] = field(default_factory=list)

    @property
    def wraparound(self) -> list[bool | None]:
        return [a.wraps for a in self.axes]

    @property
    def lengths(self) -> list[int]:
        return [a.length for a in self.axes]


def _cut(link_axes: list[Axis]) -> tuple[float, float]:
    """Bisection of the link-level part of the group: (share of data crossing, links).

    Cutting across axis a (length n) splits floor(n/2) x ceil(n/2) of the n^2 (source,
    destination) pairs; the cut crosses one link per line along a (two with wraparound),
    i.e. prod(other lengths) x (2 if wrapped else 1). The narrowest cut (largest share per
    link) bounds all-to-all. A switched domain of n GPUs: a full-bisection switch, floor(n/2)
    GPUs' links_per_chip links.
    """
    axes = [a for a in link_axes if a.length > 1]
    if not axes:
        return 0.0, 1.0
    best = None
    for a in axes:
        n = a.length
        frac = (n // 2) * ((n + 1) // 2) / n**2
        if a.torus:
            rows = math.prod(b.length for b in axes if b is not a)
            links = rows * (2.0 if a.wraps else 1.0)
        elif a.level == "fabric":  # each of floor(n/2) devices has a link to each of ceil(n/2)
            links = (n // 2) * ((n + 1) // 2)
        else:
            links = (n // 2) * a.links
        if best is None or frac / links > best[0] / best[1]:
            best = (frac, links)
    return best


def _shift_hops(axes: list[Axis]) -> int:
    """Most hops of the cyclic shift i -> i+1 over the group linearised row-major (the last
    axis fastest, as JAX numbers devices)."""
    lengths = [a.length for a in axes]
    n = math.prod(lengths)
    if n <= 1:
        return 0
    # every device at once (numpy): coordinates of i and of i + 1, per-axis distances summed
    i = np.arange(n)
    src = np.unravel_index(i, lengths)
    dst = np.unravel_index((i + 1) % n, lengths)
    hops = np.zeros(n, dtype=np.int64)
    for a, s_, d_ in zip(axes, src, dst):
        d = np.abs(s_ - d_)
        if not a.torus:
            d = (d > 0).astype(np.int64)  # through a switch / NIC / DCN: one step
        elif a.wraps:
            d = np.minimum(d, a.length - d)
        hops += d
    return int(hops.max())


def group(hw, slice_shape, mesh: dict[str, int], axes, slices: int = 1) -> Group:
    """The group a collective over mesh ``axes`` runs among, on ``hw`` (errors: SpecError)."""
    phys = physical_axes(hw, slice_shape, slices)
    mapping = map_mesh(mesh, [a.length for a in phys])
    unknown = [a for a in axes if a not in mesh]
    if unknown:
        raise SpecError(f"axes {unknown} are not mesh axes; the mesh has "
                        f"{', '.join(mesh)}")
    idx = sorted({i for a in axes for i in mapping[a]})
    used = [phys[i] for i in idx if phys[i].length > 1]
    link_axes = [a for a in used if a.level in LINK_LEVELS]
    prod = lambda lv: math.prod(a.length for a in used if a.level == lv)  # noqa: E731
    n_link = math.prod(a.length for a in link_axes)
    frac, cut_links = _cut(link_axes)
    p2p = 0.0
    if link_axes:  # a switch spreads one peer's traffic over every link; a torus or mesh: one
        p2p = link_axes[-1].links if link_axes[-1].level == "nvlink" else 1.0
    return Group(
        axes=tuple(used),
        n_devices=math.prod(a.length for a in used),
        n_link=n_link,
        n_scale_out=prod("scale_out"),
        n_dcn=prod("dcn"),
        ring_links=float(sum(a.links for a in link_axes)),
        ring_hops=sum(a.ring_hops for a in used),
        diameter=sum(a.diameter for a in used),
        shift_hops=_shift_hops(used),
        cut_frac=float(frac),
        cut_links=float(cut_links),
        p2p_links=float(p2p),
    )


_GROUPS: dict[tuple, tuple] = {}


def workload_group(hw, wl, axes) -> Group:
    """``group`` for a workload's slice, slices and mesh, with errors naming the fields
    (remembered per chip spec object and layout: a plan search asks for the same groups of
    every configuration of a mesh)."""
    key = (id(hw), wl.slice, wl.slices, tuple((wl.mesh or {}).items()), tuple(axes))
    hit = _GROUPS.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    g = _workload_group(hw, wl, axes)
    if len(_GROUPS) > 100_000:
        _GROUPS.clear()
    _GROUPS[key] = (hw, g)
    return g


def _workload_group(hw, wl, axes) -> Group:
    if not wl.slice:
        raise SpecError(f"workload {wl.name!r} has collective ops but no 'slice': add a top-level "
                        f"slice (e.g. slice: 16x16) and mesh, or pass --slice")
    if not wl.mesh:
        raise SpecError(f"workload {wl.name!r} has collective ops but no 'mesh': add a top-level "
                        f"mesh naming its axes and sizes, e.g. mesh: {{data: 16, model: 16}}")
    try:
        return group(hw, wl.slice, dict(wl.mesh), list(axes), wl.slices)
    except SpecError as e:
        slices = f", {wl.slices} slices" if wl.slices > 1 else ""
        raise SpecError(f"workload {wl.name!r} on {hw.name!r} (mesh {dict(wl.mesh)}{slices}): "
                        f"{e}") from None
