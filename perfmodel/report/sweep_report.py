"""Sweep outputs: a Sweep workbook (values) and PNG plots of time and achieved FLOP/s vs the
swept field, and the roofline with the swept points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from ..limits import EXCEL_ROWS, MAX_ROWS  # noqa: E402
from .plots import plot_roofline, save  # noqa: E402


def write_sweep(path: Path, table, totals, fields: list[str], hardware,
                max_rows: int = MAX_ROWS) -> list[Path]:
    """The Sweep workbook and its PNGs; a table of more than ``max_rows`` rows (or more than an
    Excel sheet holds) is refused before anything is written."""
    import xlsxwriter  # the Excel library stays in report/

    from ..specs import SpecError

    for what, df in (("table", table), ("totals", totals)):
        if len(df) > max_rows or len(df) + 1 > EXCEL_ROWS:
            raise SpecError(f"{path}: the sweep {what} has {len(df):,} rows, more than "
                            f"{min(max_rows, EXCEL_ROWS - 1):,} (max_rows / EXCEL_ROWS) for a "
                            f"workbook and its plots; vary fewer values or use --totals.")
    out = [Path(path)]
    with atomic_path(Path(path)) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "nan_inf_to_errors": True})
        eng = wb.add_format({"num_format": "##0.000E+0"})
        head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        for name, df in (("Sweep", table), ("Totals", totals)):
            ws = wb.add_worksheet(name)
            for j, c in enumerate(df.columns):
                ws.write_string(0, j, str(c), head)
                col = df[c].to_numpy()
                for i, v in enumerate(col):
                    if isinstance(v, str):
                        ws.write_string(1 + i, j, v)
                    else:
                        ws.write_number(1 + i, j, float(v), eng if c not in fields else None)
            ws.set_column(0, len(df.columns), 13)
            ws.freeze_panes(1, 0)
        wb.close()
    if fields:
        f = fields[0]
        png = Path(path).with_suffix("").as_posix() + f"-vs-{f}.png"
        out.append(_plot_vs(totals, f, Path(png)))
        png2 = Path(path).with_suffix("").as_posix() + "-roofline.png"
        out.append(_plot_roofline(table, hardware, Path(png2)))
    return out


def _plot_vs(tot, field: str, path: Path) -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for hw, g in tot.groupby("hardware", sort=False):
        g = g.sort_values(field)
        a.plot(g[field], g["t_lower"], marker=".", label=f"{hw} t_lower")
        a.plot(g[field], g["t_upper"], ls="--", alpha=0.5, label=f"{hw} t_upper")
        b.plot(g[field], g["flops"] / g["t_lower"], marker=".", label=hw)
    for ax, yl in ((a, "time per configuration [s]"), (b, "achieved FLOP/s at t_lower")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(field)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def _plot_roofline(table, hardware, path: Path) -> Path:
    roofs, points = [], []
    for hw in hardware:
        g = table[table.hardware == hw.name]
        roofs.append((f"{hw.name} roof", max(hw.peak_flops.values()), hw.hbm_bandwidth))
        points.append((hw.name, g["intensity"].to_numpy(dtype=float),
                       (g["flops"] / g["t_lower"]).to_numpy(dtype=float)))
    return plot_roofline(roofs, points, path, marker_size=8)
