"""PNG plots (matplotlib, Agg): the log-log roofline of a chip with the ops as points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_path  # noqa: E402


def roofline_png(hw, series: dict[str, list[dict]], path: Path) -> Path:
    """One roof per dtype of ``hw``; ``series`` maps a label (workload) to its op rows."""
    roofs = [(f"roof {dtype}: {peak / 1e12:.4g} TFLOP/s, ridge {peak / hw.hbm_bandwidth:.0f}",
              peak, hw.hbm_bandwidth)
             for dtype, peak in sorted(hw.peak_flops.items(), key=lambda kv: -kv[1])]
    points = []
    for label, rows in series.items():
        ok = [r for r in rows if r.get("intensity") and r.get("t_lower")]
        points.append((label, [r["intensity"] for r in ok], [r["flops"] / r["t_lower"] for r in ok]))
    return plot_roofline(roofs, points, path, f"Roofline: {hw.name} (HBM {hw.hbm_bandwidth / 1e9:.4g} GB/s)")


def plot_roofline(roofs, points, path: Path, title: str | None = None, marker_size: float = 40) -> Path:
    """A log-log roofline: ``roofs`` = [(label, peak FLOP/s, bandwidth B/s)], ``points`` =
    [(label, intensities, achieved FLOP/s)], one marker and colour per point series."""
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    xs_all = np.asarray([x for _, xs, _ in points for x in xs], float)
    xs_all = xs_all[np.isfinite(xs_all) & (xs_all > 0)]
    lo = min(xs_all.min() if xs_all.size else 0.1, 0.1) / 2
    hi = max(xs_all.max() if xs_all.size else 1e4, 1e4) * 2
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    for label, peak, bw in roofs:
        ax.plot(x, np.minimum(peak, x * bw), lw=2, label=label)
    markers = "osD^v<>pX*"
    for i, (label, xs, ys) in enumerate(points):
        # marker and colour cycle at different lengths: every series gets its own pair
        ax.scatter(xs, ys, marker=markers[i % len(markers)], color=plt.cm.tab20(i % 20),
                   s=marker_size, zorder=3, label=label)
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
