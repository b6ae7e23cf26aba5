"""Roofline: log-log charts, one per chip and dtype (at most 4 workloads each), each on its own
printed page, with their data below them: a roof over HBM for each rate the chart's ops run at
(precision.roof, the rule the PNG plots use too), live over Hardware; points live over ByChip
(Ops in a one-chip book).

No interconnect roof: the x axis is FLOP per HBM byte, and every point (a collective's reduction
adds too) sits at its FLOP per HBM byte; a roof over the interconnect bandwidth would need FLOP
per interconnect byte, which no point has, so it could not be read against anything drawn."""

from __future__ import annotations

import math

import numpy as np
from xlsxwriter.utility import xl_rowcol_to_cell

from ....engine import hw_env
from ....formula import NS, Ref, evaluate, fand, na, where
from .... import precision
from ....roofline import COLUMNS, achieved_flops, roof
from ...style import chip_color, workload_marker
from ..data import row_template

NAME = "Roofline"
WORKLOADS_PER_CHART = 4
CHART_ROWS = 34          # one landscape A4 page at the default row height
CHART_SIZE = {"width": 1040, "height": 640}
# one dash style per rate of a chart, fastest rate first (the chip keeps its colour)
DASHES = ["solid", "dash", "round_dot", "long_dash", "dash_dot", "long_dash_dot", "square_dot",
          "long_dash_dot_dot"]
Y_HEADROOM = 2.0  # the y axis ends this factor above the highest roof or point drawn

RIDGE = dict(COLUMNS)["ridge"](NS(peak_used=Ref("peak"), hbm_bandwidth=Ref("bandwidth")))
ROOF_Y = roof(Ref("x"), Ref("peak"), Ref("bandwidth"))
# a point on a log axis: #N/A (left out of the chart) where there is nothing to plot
POINT_X = where(Ref("intensity") > 0, Ref("intensity"), na())
POINT_Y = where(fand(Ref("flops") > 0, Ref("intensity") > 0), achieved_flops(Ref("flops"), Ref("t_lower")), na())


def wanted(data) -> bool:
    return True


def _charts(data):
    """[(chip, dtype, [workload names])], each at most WORKLOADS_PER_CHART workloads."""
    out = []
    for hw in data.hardware:
        dtypes: dict[str, list[str]] = {}
        for row in data.rows:
            if hw.name in row.by_chip:
                wls = dtypes.setdefault(row.op.dtype, [])
                if row.workload not in wls:
                    wls.append(row.workload)
        for dtype, wls in sorted(dtypes.items(), key=lambda kv: -len(kv[1])):
            for k in range(0, len(wls), WORKLOADS_PER_CHART):
                out.append((hw, dtype, wls[k:k + WORKLOADS_PER_CHART]))
    return out


def _cell_template(layout, chip: str, column: str) -> str:
    """An op's cell of ``column`` on ``chip`` with its row as the placeholder {r}."""
    return layout.source_column(chip, column) + "{r}"


def _value(expr, env):
    v = evaluate(expr, {k: np.float64(x) for k, x in env.items()})
    return None if not np.isfinite(v) else float(v)


def _nice_above(v: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``v`` (a round axis end)."""
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 2, 5, 10) if m * e >= v * (1 - 1e-12))


def write(book, ws, data, layout):
    charts = _charts(data)
    xs = [r.by_chip[c].values.get("intensity") for r in data.rows for c in r.by_chip]
    xs = [float(x) for x in xs if x is not None and np.isfinite(x) and x > 0]
    xmin = 10 ** math.floor(math.log10(min(xs + [1.0]) / 2))
    xmax = 10 ** math.ceil(math.log10(max(xs + [1e4]) * 2))
    source = "ByChip" if "ByChip" in layout.sheets else "Ops"
    book.text(ws, 0, 0, "Roofline per chip and dtype: the roofs (live from Hardware) and each op at its achieved "
                        f"FLOP/s = flops / t_lower (live from {source}). Chart data below the charts.", "bold")
    r = 1 + CHART_ROWS * len(charts) + 1  # data starts after the charts' pages
    ws.set_h_pagebreaks([1 + CHART_ROWS * k for k in range(1, len(charts) + 1)])
    # roofs: one row per (chip, dtype) shown: x at xmin, ridge, xmax; y = roof(x)
    roofs = {}
    book.text(ws, r, 0, "roof data (x: arithmetic intensity [FLOP/B], y: attainable FLOP/s)", "bold")
    r += 1
    head = ["chip", "ops' dtype", "roof", "peak [FLOP/s]", "bandwidth [B/s]", "x min", "x ridge", "x max",
            "y min", "y ridge", "y max"]
    for c, h in enumerate(head):
        book.text(ws, r, c, h, "head")
    r += 1
    for hw, dtype, _ in charts:
        if (hw.name, dtype) in roofs:
            continue
        env = hw_env(hw)
        # the rates the chart's ops run at (precision.roof: their peak_used), fastest first
        rates = {}
        for row in data.rows:
            if hw.name in row.by_chip and row.op.dtype == dtype:
                rf = precision.roof(hw, row.op)
                rates.setdefault(rf.label, rf.name)
        for unit, peak_key in sorted(rates.items(), key=lambda kv: -env[kv[1]]):
            book.text(ws, r, 0, hw.name)
            book.text(ws, r, 1, dtype)
            book.text(ws, r, 2, f"HBM, {unit}")
            peak = env[peak_key]
            book.ref(ws, r, 3, layout.hw_cell(peak_key, hw.name), peak, "rate")
            bw = env["hbm_bandwidth"]
            book.ref(ws, r, 4, layout.hw_cell("hbm_bandwidth", hw.name), bw, "rate")
            cell = {"peak": xl_rowcol_to_cell(r, 3), "bandwidth": xl_rowcol_to_cell(r, 4)}
            book.number(ws, r, 5, xmin, "rate")
            ridge = _value(RIDGE, {"peak": peak, "bandwidth": bw})
            book.formula(ws, r, 6, RIDGE, cell.__getitem__, ridge, "rate")
            book.number(ws, r, 7, xmax, "rate")
            for k, x in enumerate((xmin, ridge, xmax)):
                cells = {**cell, "x": xl_rowcol_to_cell(r, 5 + k)}
                book.formula(ws, r, 8 + k, ROOF_Y, cells.__getitem__,
                             _value(ROOF_Y, {"x": x, "peak": peak, "bandwidth": bw}), "rate")
            roofs.setdefault((hw.name, dtype), []).append((unit, peak, r))
            r += 1
    # points: per chip, dtype and workload a contiguous block of ByChip rows
    r += 1
    book.text(ws, r, 0, "op points (#N/A: nothing to plot on a log axis, e.g. a copy with no FLOPs)", "bold")
    r += 1
    for c, h in enumerate(["chip", "dtype", "workload", "op", "intensity [FLOP/B]", "achieved [FLOP/s]"]):
        book.text(ws, r, c, h, "head")
    r += 1
    opname = 3
    blocks = {}
    ys = []
    chart_ys: dict = {}  # (chip, dtype, workload) -> the achieved FLOP/s its points plot
    keys = ("intensity", "flops", "t_lower")
    for hw, dtype, wls in charts:
        # each point's formula over its op's cells: rendered once per chip, filled per row
        tx = row_template(POINT_X, lambda n, chip=hw.name: _cell_template(layout, chip, n))
        ty = row_template(POINT_Y, lambda n, chip=hw.name: _cell_template(layout, chip, n))
        for wl in wls:
            if (hw.name, dtype, wl) in blocks:
                continue
            sel = [row for row in data.rows_of(wl) if hw.name in row.by_chip and row.op.dtype == dtype]
            env = {k: np.asarray([np.nan if row.by_chip[hw.name].values.get(k) is None
                                  else row.by_chip[hw.name].values[k] for row in sel], dtype=float)
                   for k in keys}
            xs, yv = (np.broadcast_to(evaluate(e, env), (len(sel),)) for e in (POINT_X, POINT_Y))
            for c, v in enumerate((hw.name, dtype, wl)):  # the block's chip, dtype, workload
                book.text(ws, r, c, v, "bold")
            r += 1
            first = r
            for row, x, y in zip(sel, xs, yv):
                book.text(ws, r, opname, row.op.name)
                fill = {"r": layout.source_row(hw.name, row.index) + 1}
                book.write_formula(ws, r, 4, tx.format_map(fill), float(x) if np.isfinite(x) else "#N/A", "real")
                book.write_formula(ws, r, 5, ty.format_map(fill), float(y) if np.isfinite(y) else "#N/A", "rate")
                if np.isfinite(y):
                    ys.append(float(y))
                    chart_ys.setdefault((hw.name, dtype, wl), []).append(float(y))
                r += 1
            blocks[(hw.name, dtype, wl)] = (first, r - 1)
    bws = [hw_env(h)["hbm_bandwidth"] for h in data.hardware]
    ymin = 10 ** math.floor(math.log10(min(ys + [xmin * min(bws)])))
    for k, (hw, dtype, wls) in enumerate(charts):
        chart = book.wb.add_chart({"type": "scatter", "subtype": "straight"})
        color = chip_color(hw.name)
        drawn = roofs[(hw.name, dtype)]
        # the y axis ends a little above the highest roof or point this chart draws
        top = max([peak for _, peak, _ in drawn]
                  + [y for wl in wls for y in chart_ys.get((hw.name, dtype, wl), [])] + [ymin * 10])
        ymax = _nice_above(top * Y_HEADROOM)
        for j, (unit, _, rr) in enumerate(drawn):
            chart.add_series({
                "name": f"{hw.name} HBM roof, {unit}",
                "categories": [NAME, rr, 5, rr, 7], "values": [NAME, rr, 8, rr, 10],
                "line": {"color": color, "width": 2.0, "dash_type": DASHES[j % len(DASHES)]},
                "marker": {"type": "none"}})
        for wl in wls:
            first, last = blocks[(hw.name, dtype, wl)]
            if last < first:
                continue
            _, mark, filled = workload_marker(wl)
            chart.add_series({
                "name": wl, "categories": [NAME, first, 4, last, 4], "values": [NAME, first, 5, last, 5],
                "line": {"none": True},
                "marker": {"type": mark, "size": 7, "border": {"color": color},
                           "fill": {"color": color} if filled else {"none": True}}})
        same = [c for c in charts if c[:2] == (hw, dtype)]
        part = f" ({[c[2] for c in same].index(wls) + 1} of {len(same)})" if len(same) > 1 else ""
        chart.set_title({"name": f"{hw.name} roofline: {dtype} ops{part}", "name_font": {"size": 12}})
        chart.set_x_axis({"name": "arithmetic intensity [FLOP/byte]", "log_base": 10, "min": xmin, "max": xmax,
                          "major_gridlines": {"visible": True}, "num_format": "0.E+0", "crossing": xmin})
        chart.set_y_axis({"name": "attainable FLOP/s", "log_base": 10, "min": ymin, "max": ymax,
                          "major_unit": 10, "major_gridlines": {"visible": True}, "num_format": "0.E+0",
                          "crossing": ymin})
        chart.set_legend({"position": "bottom"})
        chart.set_size(CHART_SIZE)
        ws.insert_chart(1 + CHART_ROWS * k, 0, chart)
    ws.set_column(0, 1, 12)
    ws.set_column(2, 3, 20)
    ws.set_column(4, 10, 12)
    book.print_setup(ws)
