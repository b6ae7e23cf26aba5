"""PNG plots (matplotlib, Agg): the log-log roofline of a chip with the ops as points.

Colours and markers come from report/style.py: a chip has one colour (its roofs and its points)
and a workload one marker, in every plot and workbook chart. Roofs are drawn at the rates the
ops run at (their dtype and unit), never at a chip's largest peak.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import precision  # noqa: E402
from ..atomic import atomic_path  # noqa: E402
from ..engine import hw_env  # noqa: E402
from ..roofline import achieved_flops, roof  # noqa: E402
from .style import chip_color, workload_marker  # noqa: E402

LINESTYLES = ["-", "--", "-.", ":"]


def roofline_png(hw, series: dict[str, list[dict]], path: Path) -> Path:
    """The roofs ``hw`` runs these ops at; ``series`` maps a label (workload) to its op rows."""
    color, env = chip_color(hw.name), hw_env(hw)
    rates = {}
    for rows in series.values():
        for r in rows:
            if r.get("peak_used"):
                rf = precision.roof(hw, r)
                rates.setdefault(rf.label, env[rf.name])
    roofs = [(f"roof {label}: {peak / 1e12:.4g} TFLOP/s, ridge {peak / hw.hbm_bandwidth:.0f}",
              peak, hw.hbm_bandwidth, color) for label, peak in sorted(rates.items(), key=lambda kv: -kv[1])]
    points = []
    for label, rows in series.items():
        ok = [r for r in rows if r.get("intensity") and r.get("t_lower")]
        mark, _, filled = workload_marker(label)
        points.append((label, [r["intensity"] for r in ok],
                       [achieved_flops(r["flops"], r["t_lower"]) for r in ok], color, mark, filled))
    return plot_roofline(roofs, points, path, f"Roofline: {hw.name} (HBM {hw.hbm_bandwidth / 1e9:.4g} GB/s)")


def plot_roofline(roofs, points, path: Path, title: str | None = None, marker_size: float = 40) -> Path:
    """A log-log roofline: ``roofs`` = [(label, peak FLOP/s, bandwidth B/s, colour)], ``points`` =
    [(label, intensities, achieved FLOP/s, colour, marker, filled)]. Roofs of one colour take
    different line styles, so equal roofs stay visible."""
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    xs_all = np.asarray([x for p in points for x in p[1]], float)
    xs_all = xs_all[np.isfinite(xs_all) & (xs_all > 0)]
    lo = min(xs_all.min() if xs_all.size else 0.1, 0.1) / 2
    hi = max(xs_all.max() if xs_all.size else 1e4, 1e4) * 2
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    styles: dict[str, int] = {}
    for label, peak, bw, color in roofs:
        k = styles[color] = styles.get(color, -1) + 1
        ax.plot(x, roof(x, peak, bw), lw=2, color=color, ls=LINESTYLES[k % len(LINESTYLES)],
                alpha=0.9, label=label)
    for label, xs, ys, color, mark, filled in points:
        style = ({"color": color} if mark in "x+_|" else  # line marks: no face to fill
                 {"color": color, "edgecolors": "black", "linewidths": 0.4} if filled else
                 {"facecolors": "none", "edgecolors": color})
        ax.scatter(xs, ys, marker=mark, s=marker_size, zorder=3, label=label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / HBM byte)")
    ax.set_ylabel("attainable FLOP/s (at t_lower)")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def save(fig, path) -> Path:
    """Write a figure as PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (lower x, higher y), by x."""
    order = np.lexsort((-y, x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def pareto_png(x, y, labels, path: Path, xlabel: str, title: str,
               max_points: int = 20_000) -> Path:
    """Scatter of configurations (x: latency or cost, y: tokens/s per chip), one colour per
    chip, the Pareto frontier drawn as a step line."""
    x, y, labels = np.asarray(x, float), np.asarray(y, float), np.asarray(labels)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y, labels = x[ok], y[ok], labels[ok]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    rng = np.random.default_rng(0)
    for chip in sorted(set(labels)):
        idx = np.flatnonzero(labels == chip)
        if idx.size > max_points:  # a readable cloud; the frontier uses every point
            idx = rng.choice(idx, max_points, replace=False)
        ax.scatter(x[idx], y[idx], s=8, alpha=0.35, label=chip)
    if x.size:
        f = pareto_front(x, y)
        ax.step(x[f], y[f], where="post", color="black", lw=1.5, label="Pareto frontier")
        ax.scatter(x[f], y[f], s=18, color="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tokens/s per chip")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
