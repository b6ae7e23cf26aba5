"""Calibration: measured vs predicted per benchmarked kernel; the predictions are live sums of
Ops cells, the errors calibrated.relative_error rendered."""

from __future__ import annotations

import math

import numpy as np
from xlsxwriter.utility import xl_rowcol_to_cell

from ....calibrated import relative_error
from ....formula import Ref

NAME = "Calibration"
REL = relative_error(Ref("predicted"), Ref("measured"))
KIND_COLORS = {"fit": "#0072B2", "held-out": "#E69F00", "extrapolation": "#D55E00", "composite": "#009E73"}


def wanted(data) -> bool:
    return data.calibration is not None


def _sum_of(cells: list[str]):
    """The sum of several Ops cells, as a formula over Refs named by the cells."""
    out = Ref(cells[0])
    for c in cells[1:]:
        out = out + Ref(c)
    return out


def write(book, ws, data, layout):
    res, index = data.calibration
    book.text(ws, 0, 0, f"Calibration of {data.active.name}: measured vs predicted per kernel", "title")
    e = res.errors

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"
    summary = [("held-out kernels >= 1 ms", "n", "median", "p90", "worst")]
    for label, st in (("spec-sheet roofline (t_lower)", e["heldout_1ms"]["spec_roofline"]),
                      ("calibrated model (t_calibrated)", e["heldout_1ms"]["calibrated"]),
                      ("noise floor (one pass vs the others)", res.noise)):
        summary.append((label, str(st["n"]), pct(st["median"]), pct(st["p90"]), pct(st["worst"])))
    for i, row in enumerate(summary):  # the label spans three columns: it is long
        ws.merge_range(2 + i, 0, 2 + i, 2, row[0], book.fmt["head" if i == 0 else "text"])
        for c, v in enumerate(row[1:], start=3):
            book.text(ws, 2 + i, c, v, "head" if i == 0 else "text")
    book.para(ws, 6, 0, "Relative error = |predicted - measured| / measured. Fit rows trained the parameters; "
              "held-out rows did not ('extrapolation': outside the fitted size range; 'composite': decode "
              "attention, predicted from its matrix-vector and softmax parts, never fitted). Interpreted "
              "Pallas predictions are the fitter's per-grid-step values (see their cell comments). "
              "The fitted parameters are the "
              "cal_<group>_<param> rows on Inputs/Hardware: edit one and every prediction below recomputes. "
              "Summary figures were computed when fitted. Measurements: " + res.source, 110)
    ws.merge_range(6, 0, 6, 10, None)
    cols = ["kernel", "params", "dtype", "group", "set", "stable", "measured_s", "cv", "spec t_lower",
            "predicted_s", "rel. error", "spec rel. error"]
    h = 8
    for c, name in enumerate(cols):
        book.text(ws, h, c, name, "head")
    has_cal = "t_calibrated" in layout.ops_col
    series = {"fit": [], "held-out": [], "extrapolation": [], "composite": []}

    def kind_of(r):
        return "composite" if r.group == "composite" else "extrapolation" if r.extrapolation else \
            "held-out" if r.heldout else "fit"
    order = sorted(range(len(res.rows)), key=lambda i: list(series).index(kind_of(res.rows[i])))

    def rel_error(rr, col, pred_col, pred, meas):
        cells = {"predicted": xl_rowcol_to_cell(rr, pred_col), "measured": xl_rowcol_to_cell(rr, 6)}
        book.formula(ws, rr, col, REL, cells.__getitem__, relative_error(pred, meas), "pct")

    for i, (r, idx) in enumerate((res.rows[o], index[o]) for o in order):
        rr = h + 1 + i
        kind = kind_of(r)
        series[kind].append(rr)
        for c, v in enumerate([r.kernel, r.params, r.dtype, r.group, kind, "no" if r.unstable else "yes"]):
            book.text(ws, rr, c, v)
        book.number(ws, rr, 6, r.measured_s, "time")
        book.number(ws, rr, 7, r.cv, "pct")
        cells = [layout.ops_cell(j, "t_lower") for j in idx]
        book.formula(ws, rr, 8, _sum_of(cells), str, r.spec_s, "time")
        rel_error(rr, 11, 8, r.spec_s, r.measured_s)
        ok = has_cal and all("t_calibrated" in data.rows[j].values for j in idx) and np.isfinite(r.predicted_s)
        if ok and any(f.get("repeat", 1) > 1 for f in r.feats):
            # interpreted Pallas: the fitter prices each grid step (a block matmul touching
            # the whole operands), which no workbook op expresses: its number, not a formula
            book.number(ws, rr, 9, r.predicted_s, "time")
            rel_error(rr, 10, 9, r.predicted_s, r.measured_s)
            ws.write_comment(rr, 9, "Interpreted Pallas: the fitter's per-grid-step prediction "
                                    "(steps x a block matmul over the whole operands); a value, not "
                                    "a formula of the Ops sheet.")
        elif ok:
            cells = [layout.ops_cell(j, "t_calibrated") for j in idx]
            book.formula(ws, rr, 9, _sum_of(cells), str, r.predicted_s, "time")
            rel_error(rr, 10, 9, r.predicted_s, r.measured_s)
        else:
            book.text(ws, rr, 9, "n/a (group not fitted)")
    # measured (x) vs predicted (y), log-log, with y = x; on its own page below the table
    lo_ = min(r.measured_s for r in res.rows)
    hi_ = max(r.measured_s for r in res.rows)
    lo_, hi_ = 10 ** math.floor(math.log10(lo_)), 10 ** math.ceil(math.log10(hi_))
    yr = h + 2 + len(res.rows)
    book.text(ws, yr, 0, "y = x line")
    for k, v in enumerate((lo_, hi_)):
        book.number(ws, yr + 1 + k, 6, v, "time")
        book.number(ws, yr + 1 + k, 9, v, "time")
    chart = book.wb.add_chart({"type": "scatter"})
    for kind, rows_ in series.items():
        if rows_:  # contiguous: the rows are ordered by set
            chart.add_series({"name": kind, "categories": [NAME, rows_[0], 6, rows_[-1], 6],
                              "values": [NAME, rows_[0], 9, rows_[-1], 9], "line": {"none": True},
                              "marker": {"type": "circle", "size": 6, "fill": {"color": KIND_COLORS[kind]},
                                         "border": {"color": KIND_COLORS[kind]}}})
    chart.add_series({"name": "y = x", "categories": [NAME, yr + 1, 6, yr + 2, 6],
                      "values": [NAME, yr + 1, 9, yr + 2, 9],
                      "line": {"color": "#000000", "dash_type": "dash"}, "marker": {"type": "none"}})
    chart.set_title({"name": "measured vs predicted (calibrated)"})
    for axis, name in ((chart.set_x_axis, "measured [s]"), (chart.set_y_axis, "predicted [s]")):
        axis({"name": name, "log_base": 10, "min": lo_, "max": hi_, "crossing": lo_,
              "num_format": "0.E+0", "major_gridlines": {"visible": True}})
    chart.set_size({"width": 900, "height": 600})
    top = yr + 4
    ws.set_h_pagebreaks([top])
    ws.insert_chart(top, 0, chart)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 40)
    ws.set_column(2, 5, 10)
    ws.set_column(6, 11, 12)
    ws.freeze_panes(h + 1, 1)
    book.print_setup(ws, (h, h))
