"""Model: per transformer workload its ledger (live from Ops), the group times and the step
figures (model.summary's formula columns rendered), and the memory stack against hbm_capacity.
The headline cells carry the defined names step_t_lower, step_t_upper, step_t_step, step_mfu,
step_tokens_per_s and step_memory_bytes_per_chip (the first transformer workload's; every
workload's also as <workload>.step_...)."""

from __future__ import annotations

import json

import numpy as np
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from ....formula import Ref
from ....model import summary as S
from ....units import fmt_capacity
from ..book import FORMATS

NAME = "Model"
NAMED = ("t_lower", "t_upper", "t_step", "mfu", "tokens_per_s", "memory_bytes_per_chip")
STEP_LABELS = {  # column -> (label, unit, number format)
    "pipeline_stretch": ("pipeline stretch (m+p-1)/m of every group but the optimizer", "", "real"),
    "t_lower": ("t_lower per step (overlap within groups, pipeline stretched)", "s", "time"),
    "t_upper": ("t_upper per step (no overlap, pipeline stretched)", "s", "time"),
    "t_calibrated": ("t_calibrated per step", "s", "time"),
    "t_step": ("t_step (the headline time)", "s", "time"),
    "t_comm": ("communication time (sum of the collectives)", "s", "time"),
    "tokens_per_s": ("tokens per second (whole job)", "tokens/s", "tput"),
    "peak_used": ("peak: the layer matmuls' rate (dtype, precision)", "FLOP/s", "rate"),
    "mfu": ("MFU: PaLM model FLOPs / (chips x t_step x peak)", "", "pct"),
    "hfu": ("HFU: FLOPs a chip executes / (t_step x peak)", "", "pct"),
    "flops_6pt": ("6 x params x tokens (textbook training FLOPs)", "FLOP", "size"),
    "flops_2pt": ("2 x params x tokens (textbook inference FLOPs)", "FLOP", "size"),
    "memory_bytes_per_chip": ("memory per chip (sum of the parts)", "B", "size"),
    "fits_memory": ("fits in HBM (memory per chip <= hbm_capacity)", "", "center"),
    "pipeline_bubble": ("pipeline bubble (p-1)/(m+p-1)", "", "pct"),
}
INPUT_LABELS = {"chips": ("chips", "count"), "pp": ("pipeline stages", "int"),
                "microbatches": ("microbatches", "int"), "tokens_per_step": ("tokens per step", "count"),
                "params": ("parameters (6PT's P)", "size"),
                "flops_model": ("model FLOPs per step (PaLM's count) [FLOP]", "size")}
GROUP_COLS = ["kernels", "collectives", "t_lower", "t_upper", "compute", "bound", "cal_kernels",
              "cal_collectives", "t_calibrated"]
GROUP_HEAD = {"kernels": "kernels t_lower\n[s]", "collectives": "collectives t_lower\n[s]",
              "t_lower": "group time\n(max, stretched) [s]", "t_upper": "no overlap\n(sum, stretched) [s]",
              "compute": "compute-bound kernels [s]", "bound": "bound", "cal_kernels": "kernels t_calibrated\n[s]",
              "cal_collectives": "collectives t_calibrated\n[s]", "t_calibrated": "t_calibrated\n[s]"}


def wanted(data) -> bool:
    return bool(data.models)


def write(book, ws, data, layout):
    ws.set_column(0, 0, 52)
    ws.set_column(1, 11, 13)
    ws.set_column(1, 1, 18)
    ws.set_column(5, 5, 13)  # flops
    ws.set_column(6, 6, 40)  # hbm_bytes and the step inputs' labels
    r = 0
    breaks: list[int] = []
    for n, (wl, x) in enumerate(data.models):
        if n:
            breaks.append(r)
        r = _block(book, ws, data, layout, wl, x, r, breaks, first=n == 0) + 2
    if breaks:
        ws.set_h_pagebreaks(breaks)
    book.print_setup(ws)


def _range(c, r0, r1, sheet=""):
    col = xl_col_to_name(c)
    return f"{sheet}${col}${r0 + 1}:${col}${r1 + 1}"


def _block(book, ws, data, layout, wl, x, r: int, breaks: list, first: bool) -> int:
    spec, plan = x.spec, x.plan
    hw = data.active
    rows = data.rows_of(wl.name)
    calibrated = any("t_calibrated" in row.values for row in rows)
    basis = S.basis_of(spec, calibrated)
    inputs = S.step_inputs(hw, spec, plan)
    book.text(ws, r, 0, f"{wl.name}: {spec.name} ({spec.mode}) on {hw.name} x {plan.chips}", "title")
    r += 1
    book.para(ws, r, 0, "Ledger rows are live from Ops (edit a chip parameter on Inputs or an op field on Workload "
              "and the group times, step figures and MFU follow). The op shapes and the values in the inputs "
              "table were derived from the model and parallelism fields when the workbook was written: rerun "
              "perfmodel to change those.", 130)
    ws.merge_range(r, 0, r, 9, None)
    r += 2
    # model fields and per-chip plan (for reading), step inputs (cells the formulas use)
    fields = {k: v for k, v in spec.model_dump(exclude_none=True).items() if k not in ("name", "kind")}
    plan_fields = {k: getattr(plan, k) for k in ("chips", "dp", "fsdp", "tp", "sp", "ep", "pp", "microbatches",
                                                  "batch", "tokens", "layers", "heads", "kv_heads", "d_ff")}
    for c, h in enumerate(["model field", "value", "", "per-chip plan", "value", "", "step input", "value"]):
        if h:
            book.text(ws, r, c, h, "head")
    for i, (k, v) in enumerate(fields.items()):
        book.text(ws, r + 1 + i, 0, k)
        book.text(ws, r + 1 + i, 1, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    for i, (k, v) in enumerate(plan_fields.items()):
        book.text(ws, r + 1 + i, 3, k)
        book.number(ws, r + 1 + i, 4, v, "count")
    cells: dict[str, str] = {}
    for i, k in enumerate(INPUT_LABELS):
        label, fmt = INPUT_LABELS[k]
        book.text(ws, r + 1 + i, 6, label)
        book.number(ws, r + 1 + i, 7, inputs[k], fmt)
        cells[k] = xl_rowcol_to_cell(r + 1 + i, 7, True, True)
    cells["peak"] = S.matmul_rate_name(spec)  # the Inputs name of the active chip's matmul rate
    cells["hbm_capacity"] = "hbm_capacity"
    ws.set_column(7, 7, 13)
    r += 2 + max(len(fields), len(plan_fields), len(INPUT_LABELS))
    # the ledger
    led_cols = ["op (ledger path)", "group", "role", "kind", "repeat", "flops", "hbm_bytes", "t_lower",
                "t_upper"] + (["t_calibrated"] if calibrated else []) + ["t_comm", "bound"]
    lc = {k: i for i, k in enumerate(led_cols)}
    book.header(ws, r, led_cols)
    first_row = r + 1
    for n, row in enumerate(rows):
        rr = first_row + n
        name = row.op.name
        for c, v in enumerate([name, x.groups.get(name) or S.group_of(name), x.roles.get(name, ""), row.op.kind]):
            book.text(ws, rr, c, v)
        book.number(ws, rr, 4, row.op.repeat, "int")
        v = row.values
        for k in ("flops", "hbm_bytes", "t_lower", "t_upper", "bound"):
            book.ref(ws, rr, lc[k], layout.ops_cell(row.index, k), v[k], FORMATS[k][1])
        if calibrated:
            k = "t_calibrated" if "t_calibrated" in v else "t_lower"  # the op's t_lower where none
            book.ref(ws, rr, lc["t_calibrated"], layout.ops_cell(row.index, k), v[k], "time")
        if v.get("t_comm") is not None:
            book.ref(ws, rr, lc["t_comm"], layout.ops_cell(row.index, "t_comm"), v["t_comm"], "time")
        else:
            book.number(ws, rr, lc["t_comm"], 0.0, "int")  # no collective: a plain 0
    last_row = first_row + len(rows) - 1
    led = {"row_group": _range(1, first_row, last_row), "row_kind": _range(3, first_row, last_row),
           "row_bound": _range(lc["bound"], first_row, last_row),
           "row_t_lower": _range(lc["t_lower"], first_row, last_row),
           "row_t_upper": _range(lc["t_upper"], first_row, last_row),
           "row_t_comm": _range(lc["t_comm"], first_row, last_row),
           "row_flops": _range(lc["flops"], first_row, last_row)}
    if calibrated:
        led["row_t_calibrated"] = _range(lc["t_calibrated"], first_row, last_row)
    r = last_row + 2
    # numbers: the summary's own evaluation over the ledger's cached values
    led_env = S.ledger([{"name": row.op.name, "kind": row.op.kind, **row.values} for row in rows], x)
    groups = list(dict.fromkeys(led_env["row_group"]))
    g_vals, s_vals = S.derive_step(groups, led_env, inputs, spec.mode, plan.pp, basis, calibrated)
    # the group table and the step table: their cells planned before the formulas are rendered
    gcols = [c for c in GROUP_COLS if c in g_vals[groups[0]]]
    g_row = {g: r + 1 + j for j, g in enumerate(groups)}
    g_col = {c: 1 + j for j, c in enumerate(gcols)}
    s0 = r + 3 + len(groups)
    s_row = {c: s0 + 1 + j for j, c in enumerate(s_vals)}
    m0 = s0 + 2 + len(s_vals)
    parts = inputs["memory_parts"]
    cells["memory_parts"] = _range(1, m0 + 1, m0 + len(parts))

    def sym(level, group, col):
        return Ref(f"{level}:{group}:{col}")

    def resolve(name):
        if name in cells:
            return cells[name]
        if name in led:
            return led[name]
        if name.startswith("group_"):
            c = g_col[name[len("group_"):]]
            return _range(c, g_row[groups[0]], g_row[groups[-1]])
        level, group, col = name.split(":")
        if level == "group":
            return xl_rowcol_to_cell(g_row[group], g_col[col])
        return xl_rowcol_to_cell(s_row[col], 1)
    g_sym, s_sym = S.derive_step(groups, led, {k: None for k in S.STEP_INPUTS}, spec.mode, plan.pp, basis,
                                 calibrated, symbolic=sym)
    book.text(ws, r, 0, "group", "head")
    for c in gcols:
        book.text(ws, r, g_col[c], GROUP_HEAD[c], "head")
    ws.set_row(r, 45)
    for g in groups:
        book.text(ws, g_row[g], 0, g)
        for c in gcols:
            fmt = "center" if c == "bound" else "time"
            book.formula(ws, g_row[g], g_col[c], g_sym[g][c], resolve, g_vals[g][c], fmt)
    breaks.append(s0)  # the step figures, memory stack and its chart on a page of their own
    book.text(ws, s0, 0, "step", "head")
    book.text(ws, s0, 1, "value", "head")
    book.text(ws, s0, 2, "unit", "head")
    for c, rr in s_row.items():
        label, unit, fmt = STEP_LABELS[c]
        book.text(ws, rr, 0, label)
        v = s_vals[c]
        v = bool(v) if isinstance(v, (bool, np.bool_)) else float(v)
        book.formula(ws, rr, 1, s_sym[c], resolve, v, fmt)
        book.text(ws, rr, 2, unit)
        if c in NAMED:
            cell = f"=Model!{xl_rowcol_to_cell(rr, 1, True, True)}"
            if first:
                book.wb.define_name(f"step_{c}", cell)
            stem = "".join(ch if ch.isalnum() else "_" for ch in wl.name).lower()
            book.wb.define_name(f"wl_{stem}.step_{c}", cell)
    fits = s_row["fits_memory"]
    ws.conditional_format(fits, 1, fits, 1, {"type": "cell", "criteria": "==", "value": "FALSE",
                                             "format": book.fmt["bad"]})
    # memory stack (the parts are inputs of memory_bytes_per_chip)
    book.text(ws, m0, 0, "memory per chip: part", "head")
    book.text(ws, m0, 1, "bytes [B]", "head")
    for j, (k, v) in enumerate(parts.items()):
        book.text(ws, m0 + 1 + j, 0, k)
        book.number(ws, m0 + 1 + j, 1, v, "size")
    end = m0 + 1 + len(parts)
    chart = book.wb.add_chart({"type": "column", "subtype": "stacked"})
    colors = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"]
    for j, k in enumerate(parts):
        chart.add_series({"name": k, "values": [NAME, m0 + 1 + j, 1, m0 + 1 + j, 1],
                          "fill": {"color": colors[j % len(colors)]}})
    cap = hw.hbm_capacity
    tot = float(sum(parts.values()))
    chart.set_title({"name": f"{spec.name}: memory per chip [B] (HBM {fmt_capacity(cap)})", "name_font": {"size": 11}})
    chart.set_y_axis({"num_format": "##0.0E+0", "min": 0, "max": max(cap, tot) * 1.05})
    chart.set_size({"width": 420, "height": 300})
    ws.insert_chart(s0, 4, chart)
    return max(end, s0 + 16)
