"""Sweep outputs: a Sweep workbook (values) and PNG plots of time and achieved FLOP/s vs the
swept field, and the roofline with the swept points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..errors import SpecError  # noqa: E402
from ..limits import EXCEL_ROWS, MAX_ROWS  # noqa: E402
from ..roofline import achieved_flops  # noqa: E402
from .. import precision  # noqa: E402
from ..engine import hw_env  # noqa: E402
from .plots import plot_roofline, save  # noqa: E402
from .style import chip_color, workload_marker  # noqa: E402


def write_sweep(path: Path, table, totals, fields: list[str], hardware, workload=None,
                max_rows: int = MAX_ROWS) -> list[Path]:
    """The Sweep workbook and its PNGs; a table of more than ``max_rows`` rows (or more than an
    Excel sheet holds) is refused before anything is written."""
    from .workbook import write_sweep_book  # the Excel library stays in report/workbook/

    for what, df in (("table", table), ("totals", totals)):
        if len(df) > max_rows or len(df) + 1 > EXCEL_ROWS:
            raise SpecError(f"{path}: the sweep {what} has {len(df):,} rows, more than "
                            f"{min(max_rows, EXCEL_ROWS - 1):,} (max_rows / EXCEL_ROWS) for a "
                            f"workbook and its plots; vary fewer values or use --totals.")
    out = [write_sweep_book(Path(path), table, totals, fields)]
    if fields:
        f = fields[0]
        png = Path(path).with_suffix("").as_posix() + f"-vs-{f}.png"
        out.append(_plot_vs(totals, f, Path(png)))
        png2 = Path(path).with_suffix("").as_posix() + "-roofline.png"
        out.append(_plot_roofline(table, hardware, Path(png2), workload))
    return out


def _plot_vs(tot, field: str, path: Path) -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    crossed = False  # one legend entry for the crosses
    for hw, g in tot.groupby("hardware", sort=False):
        g = g.sort_values(field)
        c = chip_color(hw)
        a.plot(g[field], g["t_lower"], marker=".", color=c, label=f"{hw} t_lower")
        a.plot(g[field], g["t_upper"], ls="--", alpha=0.5, color=c, label=f"{hw} t_upper")
        b.plot(g[field], achieved_flops(g["flops"], g["t_lower"]), marker=".", color=c, label=hw)
        if "fits_memory" in g and not g["fits_memory"].astype(bool).all():
            # configurations that do not fit in HBM: crossed out, so no one reads them as options
            out = g[~g["fits_memory"].astype(bool)]
            a.scatter(out[field], out["t_lower"], marker="x", s=40, color="red", zorder=3,
                      label="does not fit in HBM" if not crossed else None)
            crossed = True
            b.scatter(out[field], achieved_flops(out["flops"], out["t_lower"]), marker="x", s=40,
                      color="red", zorder=3)
    for ax, yl in ((a, "time per configuration [s]"), (b, "achieved FLOP/s at t_lower")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(field)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def _plot_roofline(table, hardware, path: Path, workload=None) -> Path:
    """Each chip's roofs at the rates the swept ops run at (their dtype and unit; not the chip's
    largest peak), the points in the chip's colour with the workload's marker."""
    roofs, points = [], []
    mark, _, filled = workload_marker(workload.name if workload is not None else "")
    for hw in hardware:
        g = table[table.hardware == hw.name]
        ops = [op for op in (workload.ops if workload is not None else []) if op.name in set(g["op"])]
        env = hw_env(hw)
        for label, name in {r.label: r.name for r in (precision.roof(hw, op) for op in ops)}.items():
            roofs.append((f"{hw.name} {label}", env[name], hw.hbm_bandwidth, chip_color(hw.name)))
        points.append((hw.name, g["intensity"].to_numpy(dtype=float),
                       achieved_flops(g["flops"], g["t_lower"]).to_numpy(dtype=float),
                       chip_color(hw.name), mark, filled))
    return plot_roofline(roofs, points, path, marker_size=8)
