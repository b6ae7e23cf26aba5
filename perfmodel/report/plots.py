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
