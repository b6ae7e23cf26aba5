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
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    pts = [r for rows in series.values() for r in rows if r.get("intensity")]
    lo = min([r["intensity"] for r in pts] + [0.1]) / 2
    hi = max([r["intensity"] for r in pts] + [1e4]) * 2
    x = np.logspace(np.log10(lo), np.log10(hi), 400)
    for dtype, peak in sorted(hw.peak_flops.items(), key=lambda kv: -kv[1]):
        ax.plot(x, np.minimum(peak, x * hw.hbm_bandwidth), lw=2,
                label=f"roof {dtype}: {peak / 1e12:.4g} TFLOP/s, ridge {peak / hw.hbm_bandwidth:.0f}")
    markers = "osD^v<>pX*"
    for i, (label, rows) in enumerate(series.items()):
        xs = [r["intensity"] for r in rows if r.get("intensity") and r.get("t_lower")]
        ys = [r["flops"] / r["t_lower"] for r in rows if r.get("intensity") and r.get("t_lower")]
        # marker and colour cycle at different lengths: every series gets its own pair
        ax.scatter(xs, ys, marker=markers[i % len(markers)], color=plt.cm.tab20(i % 20), s=40,
                   zorder=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / HBM byte)")
    ax.set_ylabel("attainable FLOP/s (at t_lower)")
    ax.set_title(f"Roofline: {hw.name} (HBM {hw.hbm_bandwidth / 1e9:.4g} GB/s)")
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
