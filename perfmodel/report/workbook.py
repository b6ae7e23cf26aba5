"""The live workbook: every derived cell is a formula rendered by the formula layer.

The only module that imports the Excel library. We use xlsxwriter rather than openpyxl because
it stores each formula's cached value (the number Python computed), so viewers that do not
recalculate (pandas.read_excel, file previews) still show numbers, and it writes native charts
with log axes, data validation and defined names.

Sheets: README, Inputs (active chip drop-down, its parameters as defined names), Hardware (one
column per chip), Workload (op input cells), Ops (one row per op, derived cells over Workload
and Inputs), ByChip (every op on every chip, over the Hardware sheet), Compare (t_lower per chip
and ratios), Collectives (when the workload has any), Sources, Roofline (log-log chart).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .. import __version__
from ..atomic import atomic_path, check_output
from ..calibrated import relative_error
from .. import precision
from ..engine import HW_PARAMS, hw_env, op_columns
from ..formula import NS, Ref, symbols, to_excel
from ..roofline import COLUMNS as ROOFLINE_COLUMNS
from ..specs import SpecError
from ..units import fmt_si

# column -> (unit shown in the header, number format key)
FORMATS = {
    "flops": ("FLOP", "eng"), "flops_exec": ("FLOP", "eng"), "hbm_bytes": ("B", "eng"),
    "onchip_bytes": ("B", "eng"), "comm_bytes": ("B", "eng"), "q_block": ("rows", "int"),
    "intensity": ("FLOP/B", "num"), "ridge": ("FLOP/B", "num"),
    "t_compute": ("s", "eng"), "t_memory": ("s", "eng"), "t_comm": ("s", "eng"),
    "t_latency": ("s", "eng"), "t_bandwidth": ("s", "eng"), "t_lower": ("s", "eng"),
    "t_upper": ("s", "eng"), "t_calibrated": ("s", "eng"), "algbw": ("B/s", "eng"),
    "busbw": ("B/s", "eng"), "mfu": ("%", "pct"), "mbu": ("%", "pct"), "hops": ("", "int"),
    "fits_onchip": ("", "bool"),
}
HW_UNITS = {"hbm_bandwidth": "B/s", "hbm_capacity": "B", "onchip_memory": "B",
            "matmul_tile_m": "elements", "matmul_tile_k": "elements", "matmul_tile_n": "elements", "flash_block_q": "rows", "link_bandwidth": "B/s one-way/link", "hop_latency": "s",
            "links_per_chip": "links",
            "scale_out_bandwidth": "B/s per NIC", "dcn_bandwidth": "B/s per chip"}
HW_SOURCE_KEY = {"link_bandwidth": "interconnect", "hop_latency": "interconnect", "links_per_chip": "interconnect",
                 "scale_out_bandwidth": "interconnect", "dcn_bandwidth": "interconnect"}
COLORS = ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
          "#17BECF", "#BCBD22", "#000000"]
MARKERS = ["circle", "diamond", "triangle", "square", "x", "star", "plus"]
MAX_NAMED_OPS = 1000  # per-op defined names beyond this slow Excel down more than they help
TEXT_START = ("=", "+", "-", "@")


@dataclass
class _OpRow:
    workload: str
    op: object
    inputs: dict
    cost_sym: dict
    roof_sym: dict
    values: dict  # numeric cost + roof on the active chip
    by_chip: dict = field(default_factory=dict)  # chip -> (inputs, cost_sym, roof_sym, values)


def _num(v):
    """Python value -> what xlsxwriter stores as the cached formula result."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    v = float(v)
    return v if math.isfinite(v) else "#DIV/0!"


class _Writer:
    def __init__(self, path: Path, workloads, hardware, active: str | None, measured_collectives=None,
                 calibration=None):
        self.measured = list(measured_collectives or [])
        self.calibration = calibration  # (FitResult, per-row op indices into the first workload)
        self.workloads, self.hardware = workloads, hardware
        self.active = next((h for h in hardware if h.name == active), hardware[0])
        self.wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False,
                                                  "strings_to_numbers": False})
        self.formula_cells = 0
        f = self.wb.add_format
        self.fmt = {
            "eng": f({"num_format": "##0.000E+0"}), "num": f({"num_format": "0.00"}),
            "pct": f({"num_format": "0.0%"}), "int": f({"num_format": "0"}),
            "bool": f({"num_format": '"yes";"yes";"no"', "align": "center"}),
            "center": f({"align": "center"}), "input_int": f({"bg_color": "#FFF2CC", "border": 1, "num_format": "0"}),
            "text": f({}), "head": f({"bold": True, "bg_color": "#DDEBF7", "border": 1,
                                      "text_wrap": True, "valign": "top"}),
            "input": f({"bg_color": "#FFF2CC", "border": 1}),
            "input_eng": f({"bg_color": "#FFF2CC", "border": 1, "num_format": "##0.000E+0"}),
            "title": f({"bold": True, "font_size": 14}), "wrap": f({"text_wrap": True, "valign": "top"}),
            "bold": f({"bold": True}), "bad": f({"bg_color": "#F8CBAD", "font_color": "#9C0006"}),
        }
        envs = [hw_env(h) for h in hardware]
        extra = [k for e in envs for k in e if k not in HW_PARAMS]  # e.g. calibration params
        self.hw_params = [p for p in HW_PARAMS + list(dict.fromkeys(extra)) if any(p in e for e in envs)]
        self.rows = self._evaluate()

    # ---- data -----------------------------------------------------------------------------
    def _evaluate(self) -> list[_OpRow]:
        rows = []
        for wl in self.workloads:
            for op in wl.ops:
                by_chip = {}
                for hw in self.hardware:
                    try:
                        inp, cost, roof = op_columns(op, hw, wl, symbolic=True)
                        _, cv, rv = op_columns(op, hw, wl, inputs=inp)
                    except SpecError:
                        if hw is self.active:
                            raise
                        continue  # e.g. a dtype this chip has no peak for: n/a on Compare
                    by_chip[hw.name] = (inp, cost, roof, {**cv, **rv})
                inp, cost, roof, values = by_chip[self.active.name]
                rows.append(_OpRow(wl.name, op, inp, cost, roof, values, by_chip))
        return rows

    # ---- helpers --------------------------------------------------------------------------
    def text(self, ws, r, c, s, fmt=None):
        ws.write_string(r, c, str(s), fmt or self.fmt["text"])  # never a formula (injection)

    def formula(self, ws, r, c, expr, resolve, value, fmt_key=None):
        fmt = self.fmt[fmt_key] if fmt_key else None
        if isinstance(value, (str, np.str_)):
            fmt = self.fmt["center"]
        ws.write_formula(r, c, to_excel(expr, resolve), fmt, _num(value))
        self.formula_cells += 1

    def para(self, ws, r, c, s, width_chars, fmt=None):
        """Wrapped text with a row height LibreOffice will honour (it does not autofit)."""
        self.text(ws, r, c, s, fmt or self.fmt["wrap"])
        lines = max(1, math.ceil(len(str(s)) / max(1, width_chars * 1.1)))
        if lines > 1:
            ws.set_row(r, 15 * lines)

    def header(self, ws, r, cols: list[str], widths=None):
        for c, name in enumerate(cols):
            unit = FORMATS.get(name, ("", ""))[0]
            self.text(ws, r, c, f"{name}\n[{unit}]" if unit else name, self.fmt["head"])
        ws.set_row(r, 30)

    # ---- sheets ---------------------------------------------------------------------------
    def write(self):
        wb = self.wb
        sheets = ["README", "Inputs", "Hardware", "Workload", "Ops", "Compare", "ByChip"]
        self.coll_rows = [r for r in self.rows if r.op.kind == "collective"]
        if self.coll_rows or self.measured:
            sheets.append("Collectives")
        from ..model import expansion

        self.models = [(wl, expansion(wl)) for wl in self.workloads if expansion(wl) is not None]
        if self.models:
            sheets.insert(sheets.index("Compare"), "Model")
        if self.calibration:
            sheets.insert(1, "Calibration")
        sheets += ["Sources", "Roofline"]
        self.ws = {name: wb.add_worksheet(name) for name in sheets}
        self.readme()
        self.hardware_sheet()
        self.inputs_sheet()
        self.workload_sheet()
        self.ops_sheet()
        self.bychip_sheet()
        self.compare_sheet()
        if self.coll_rows or self.measured:
            self.collectives_sheet()
        self.sources_sheet()
        self.roofline_sheet()
        if self.calibration:
            self.calibration_sheet()
        if self.models:
            self.model_sheet()
        self.ws["Ops"].activate()
        wb.close()

    def readme(self):
        ws = self.ws["README"]
        ws.set_column(0, 0, 120)
        coll = " Collectives (per collective op: hops, bytes, latency and bandwidth terms)," if self.coll_rows else ""
        lines = [
            ("perfmodel roofline workbook", "title"),
            (f"perfmodel {__version__}; written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"workloads: {', '.join(w.name for w in self.workloads)}; chips: {', '.join(h.name for h in self.hardware)}; "
             f"active chip when written: {self.active.name}.", None),
            ("", None),
            ("What to edit (yellow cells are inputs; every other number is a live formula):", "bold"),
            ("- Inputs!B2: the active chip (drop-down). Ops, Collectives and the op points on the Roofline chart follow it.", None),
            ("- Inputs column C ('override'): type a number there (e.g. 2.5E+12 next to hbm_bandwidth) for a what-if on the "
             "active chip; column B then uses it instead of the Hardware value. Clear it to go back.", None),
            ("- Hardware: one column per chip (hover a value for its citation). Edit a number there and Compare, ByChip and "
             "the roofs follow (and Ops, when that chip is active).", None),
            ("- Workload: one row per op; its fields (m, k, n, seq, kv_seq, heads, ...) are inputs. Change seq and the op "
             "recomputes. Structural choices (impl, dtype) are fixed per row: rerun perfmodel to change them.", None),
            ("", None),
            ("How bounds are defined:", "bold"),
            ("- t_compute = flops_exec / peak FLOP/s of the op's dtype (flops_exec pads matmul dims up to the chip's matmul_tile).", None),
            ("- t_memory = hbm_bytes / hbm_bandwidth.  t_comm = collective time (links, hops x hop_latency).", None),
            ("- t_lower = MAX of the terms (perfect overlap); t_upper = SUM of the terms (no overlap).", None),
            ("- bound = the largest term. intensity = flops / hbm_bytes; ridge = peak / hbm_bandwidth (compute-bound iff intensity > ridge).", None),
            ("- MFU = flops / (t_lower x peak); MBU = hbm_bytes / (t_lower x hbm_bandwidth); both at the lower bound.", None),
            ("- fits_onchip (attention): whether the kernel's on-chip working set fits onchip_memory; a 'no' row (red) is "
             "an infeasible schedule whose times are shown only for comparison.", None),
            ("- Units: SI throughout (bytes, seconds, FLOP/s, B/s). Numbers show in engineering notation (1.230E+12 = 1.23 T).", None),
            ("", None),
            ("Sheets: Inputs, Hardware, Workload, Ops (one row per op on the active chip), Compare (t_lower per chip and speed-ups), "
             f"ByChip (every op on every chip: the cells Compare reads),{coll} Sources (citations and disagreements), "
             "Roofline (log-log chart).", None),
            ("Sources: every hardware number is cited on the Sources sheet (and in a comment on its Hardware cell); other "
             "published values are listed there as alternatives, beside the value used.", None),
        ]
        for i, (s, f) in enumerate(lines):
            if f:
                self.text(ws, i, 0, s, self.fmt[f])
            else:
                self.para(ws, i, 0, s, 120)

    def hardware_sheet(self):
        ws = self.ws["Hardware"]
        self.text(ws, 0, 0, "parameter", self.fmt["head"])
        self.text(ws, 0, 1, "unit", self.fmt["head"])
        self.hw_col = {}
        for j, hw in enumerate(self.hardware):
            self.text(ws, 0, 2 + j, hw.name, self.fmt["head"])
            self.hw_col[hw.name] = 2 + j
        self.text(ws, 1, 0, "kind")
        for hw in self.hardware:
            self.text(ws, 1, self.hw_col[hw.name], hw.kind, self.fmt["center"])
        self.hw_row = {}
        for i, p in enumerate(self.hw_params):
            r = 2 + i
            self.hw_row[p] = r
            self.text(ws, r, 0, p)
            self.text(ws, r, 1, _hw_unit(p))
            key = next((f for f in ("peak_flops", "vector_flops", "transcendental_flops", "matmul_tile") if p.startswith(f)), HW_SOURCE_KEY.get(p, p))
            for hw in self.hardware:
                v = hw_env(hw).get(p)
                if v is None:
                    continue
                c = self.hw_col[hw.name]
                if p in precision.RATE_NAMES:  # derived from this chip's own cells
                    f = to_excel(precision.rate_exprs(hw)[p],
                                 lambda n, c=c: xl_rowcol_to_cell(self.hw_row[n], c))
                    ws.write_formula(r, c, f, self.fmt["eng"], v)
                    self.formula_cells += 1
                    continue
                ws.write_number(r, c, v, self.fmt["input_int" if p in ("matmul_tile_m", "matmul_tile_k", "matmul_tile_n", "flash_block_q", "links_per_chip") else "input_eng"])
                src = hw.sources.get(key)
                if src:
                    ws.write_comment(r, c, f"{hw.name} {p}: " + ("; ".join(src) if isinstance(src, list) else src),
                                     {"x_scale": 3, "y_scale": 2})
        ws.set_column(0, 0, 22)
        ws.set_column(1, 1, 16)
        ws.set_column(2, 1 + len(self.hardware), 14)
        ws.freeze_panes(1, 2)
        last = xl_col_to_name(1 + len(self.hardware))
        self.chip_range = f"Hardware!$C$1:${last}$1"

    def inputs_sheet(self):
        ws = self.ws["Inputs"]
        self.text(ws, 0, 0, "Active chip and its parameters (defined names used by every formula on Ops)", self.fmt["title"])
        self.text(ws, 1, 0, "active_chip", self.fmt["bold"])
        ws.write_string(1, 1, self.active.name, self.fmt["input"])
        ws.data_validation(1, 1, 1, 1, {"validate": "list", "source": "=" + self.chip_range,
                                        "ignore_blank": False})
        self.wb.define_name("active_chip", "=Inputs!$B$2")
        self.text(ws, 1, 2, "<- pick a chip from the drop-down")
        for c, h in enumerate(["parameter", "value used", "override", "unit"]):
            self.text(ws, 2, c, h, self.fmt["head"])
        env = hw_env(self.active)
        last = xl_col_to_name(1 + len(self.hardware))
        for i, p in enumerate(self.hw_params):
            r = 3 + i
            hr = self.hw_row[p] + 1
            self.text(ws, r, 0, p)
            row_rng = f"Hardware!$C${hr}:${last}${hr}"
            look = f"INDEX({row_rng},MATCH(active_chip,{self.chip_range},0))"
            ov = xl_rowcol_to_cell(r, 2)
            f = f'=IF({ov}<>"",{ov},IF({look}="",NA(),{look}))'
            ws.write_formula(r, 1, f, self.fmt["eng"], _num(env[p]) if p in env else "#N/A")
            self.formula_cells += 1
            ws.write_blank(r, 2, None, self.fmt["input_eng"])
            self.text(ws, r, 3, _hw_unit(p))
            self.wb.define_name(p, f"=Inputs!$B${r + 1}")
        ws.set_column(0, 0, 24)
        ws.set_column(1, 2, 16)
        ws.set_column(3, 3, 20)

    def workload_sheet(self):
        ws = self.ws["Workload"]
        fixed = ["workload", "op", "kind", "dtype", "impl"]
        self.in_fields = []
        for row in self.rows:
            for k in row.inputs:
                if k not in self.in_fields:
                    self.in_fields.append(k)
        cols = fixed + self.in_fields
        self.header(ws, 0, cols)
        self.in_col = {k: len(fixed) + i for i, k in enumerate(self.in_fields)}
        self.in_name = {}  # (row index, field) -> defined name
        named = len(self.rows) <= MAX_NAMED_OPS
        used = set()
        for i, row in enumerate(self.rows):
            r = 1 + i
            for c, v in enumerate([row.workload, row.op.name, row.op.kind, row.op.dtype,
                                   getattr(row.op, "impl", "") or getattr(row.op, "collective", "")]):
                self.text(ws, r, c, v)
            stem = _name_stem(row.op.name, i, used) if named else None
            for k, v in row.inputs.items():
                ws.write_number(r, self.in_col[k], float(v), self.fmt["input"])
                if stem:
                    name = f"{stem}.{k}"
                    self.wb.define_name(name, "=Workload!" + xl_rowcol_to_cell(r, self.in_col[k], True, True))
                    self.in_name[(i, k)] = name
        ws.set_column(0, 1, 20)
        ws.set_column(2, len(cols), 11)
        for k, c in self.in_col.items():
            ws.set_column(c, c, max(11, len(k) + 2))
        ws.freeze_panes(1, 2)

    def _columns(self, rows, part):
        cols = []
        for row in rows:
            src = row.cost_sym if part == "cost" else row.roof_sym
            for k in src:
                if k not in cols:
                    cols.append(k)
        return cols

    def _input_ref(self, i, name):
        return self.in_name.get((i, name)) or "Workload!" + xl_rowcol_to_cell(1 + i, self.in_col[name])

    def _derived_row(self, ws, r, col, exprs, values, resolve):
        for k, e in exprs.items():
            self.formula(ws, r, col[k], e, resolve, values[k], FORMATS.get(k, ("", None))[1] or None)

    def _flag_infeasible(self, ws, col, nrows):
        if "fits_onchip" in col and nrows:
            c = col["fits_onchip"]
            ws.conditional_format(1, c, nrows, c, {"type": "cell", "criteria": "==", "value": "FALSE",
                                                   "format": self.fmt["bad"]})

    def ops_sheet(self):
        ws = self.ws["Ops"]
        self.cost_cols = self._columns(self.rows, "cost")
        self.roof_cols = self._columns(self.rows, "roof")
        fixed = ["chip", "workload", "op", "kind", "dtype"]
        cols = fixed + self.cost_cols + self.roof_cols
        self.ops_col = {k: i for i, k in enumerate(cols)}
        self.header(ws, 0, cols)
        for i, row in enumerate(self.rows):
            r = 1 + i
            ws.write_formula(r, 0, "=active_chip", self.fmt["center"], self.active.name)
            for c, v in enumerate([row.workload, row.op.name, row.op.kind, row.op.dtype], start=1):
                self.text(ws, r, c, v)

            def resolve(name, i=i, r=r):
                if name in self.in_col:
                    return self._input_ref(i, name)
                if name in self.ops_col:
                    return xl_rowcol_to_cell(r, self.ops_col[name])
                return name  # a defined name on Inputs
            self._derived_row(ws, r, self.ops_col, {**row.cost_sym, **row.roof_sym}, row.values, resolve)
        self._flag_infeasible(ws, self.ops_col, len(self.rows))
        ws.set_column(0, 0, 10)
        ws.set_column(1, 2, 20)
        ws.set_column(3, 4, 11)
        ws.set_column(5, len(cols), 12)
        ws.freeze_panes(1, 3)
        ws.autofilter(0, 0, len(self.rows), len(cols) - 1)

    def bychip_sheet(self):
        ws = self.ws["ByChip"]
        fixed = ["chip", "workload", "op"]
        cols = fixed + self.cost_cols + self.roof_cols
        col = {k: i for i, k in enumerate(cols)}
        self.header(ws, 0, cols)
        self.bychip_row = {}
        r = 1
        for hw in self.hardware:
            hc = self.hw_col[hw.name]
            for i, row in enumerate(self.rows):
                if hw.name not in row.by_chip:
                    continue
                inp, cost, roof, values = row.by_chip[hw.name]
                self.bychip_row[(hw.name, i)] = r
                for c, v in enumerate([hw.name, row.workload, row.op.name]):
                    self.text(ws, r, c, v)

                def resolve(name, r=r, i=i, inp=inp, hc=hc):
                    if name in self.in_col:
                        if inp[name] == self.rows[i].inputs.get(name):
                            return self._input_ref(i, name)
                        return repr(float(inp[name]))  # chip-specific structure (topology)
                    if name in col:
                        return xl_rowcol_to_cell(r, col[name])
                    return "Hardware!" + xl_rowcol_to_cell(self.hw_row[name], hc, True, True)
                self._derived_row(ws, r, col, {**cost, **roof}, values, resolve)
                r += 1
        self.bychip_col = col
        self._flag_infeasible(ws, col, r - 1)
        ws.set_column(0, 0, 12)
        ws.set_column(1, 2, 21)
        ws.set_column(3, len(cols), 12)
        ws.freeze_panes(1, 3)
        ws.autofilter(0, 0, max(1, r - 1), len(cols) - 1)

    def compare_sheet(self):
        ws = self.ws["Compare"]
        chips = [h.name for h in self.hardware]
        base = chips[0]
        n = len(chips)
        title = "t_lower per chip [s] (live from ByChip)"
        if n > 1:
            title += f"; speed-up = t_lower({base}) / t_lower(chip)"
        self.text(ws, 0, 0, title, self.fmt["title"])
        cols = ["workload", "op"] + [f"{c}\nt_lower [s]" for c in chips] + [f"{c}\nbound" for c in chips] + \
               [f"speed-up\n{c} / {base}" for c in chips[1:]]
        for c, h in enumerate(cols):
            self.text(ws, 1, c, h, self.fmt["head"])
        ws.set_row(1, 45)
        tl, bd = self.bychip_col["t_lower"], self.bychip_col["bound"]

        def ratio(r, j, a, b):
            if a is None or b is None:
                return
            ws.write_formula(r, 2 + 2 * n + j - 1, f"={xl_rowcol_to_cell(r, 2)}/{xl_rowcol_to_cell(r, 2 + j)}",
                             self.fmt["num"], _num(a / b) if b else "#DIV/0!")
            self.formula_cells += 1

        for i, row in enumerate(self.rows):
            r = 2 + i
            self.text(ws, r, 0, row.workload)
            self.text(ws, r, 1, row.op.name)
            for j, chip in enumerate(chips):
                br = self.bychip_row.get((chip, i))
                if br is None:
                    self.text(ws, r, 2 + j, "n/a", self.fmt["center"])
                    self.text(ws, r, 2 + n + j, "n/a", self.fmt["center"])
                    continue
                v = row.by_chip[chip][3]
                ws.write_formula(r, 2 + j, "=ByChip!" + xl_rowcol_to_cell(br, tl), self.fmt["eng"], _num(v["t_lower"]))
                ws.write_formula(r, 2 + n + j, "=ByChip!" + xl_rowcol_to_cell(br, bd), self.fmt["center"], _num(v["bound"]))
                self.formula_cells += 2
            for j, chip in enumerate(chips[1:], start=1):
                if (chip, i) in self.bychip_row and (base, i) in self.bychip_row:
                    ratio(r, j, row.by_chip[base][3]["t_lower"], row.by_chip[chip][3]["t_lower"])
        r = 3 + len(self.rows)
        self.text(ws, r - 1, 0, "totals: sum of t_lower per workload", self.fmt["bold"])
        for wl in self.workloads:
            idx = [i for i, row in enumerate(self.rows) if row.workload == wl.name]
            self.text(ws, r, 0, "total", self.fmt["bold"])
            self.text(ws, r, 1, wl.name, self.fmt["bold"])
            totals = {}
            for j, chip in enumerate(chips):
                if all((chip, i) in self.bychip_row for i in idx):
                    cells = ",".join(xl_rowcol_to_cell(2 + i, 2 + j) for i in idx)
                    totals[chip] = sum(self.rows[i].by_chip[chip][3]["t_lower"] for i in idx)
                    ws.write_formula(r, 2 + j, f"=SUM({cells})", self.fmt["eng"], _num(totals[chip]))
                    self.formula_cells += 1
            for j, chip in enumerate(chips[1:], start=1):
                ratio(r, j, totals.get(base), totals.get(chip))
            r += 1
        ws.set_column(0, 1, 22)
        ws.set_column(2, len(cols), 13)
        ws.freeze_panes(2, 2)

    def collectives_sheet(self):
        ws = self.ws["Collectives"]
        self.text(ws, 0, 0, "Collectives on the active chip's topology (live from Ops and Workload; override "
                            "link_bandwidth or hop_latency on Inputs and they recompute)", self.fmt["title"])
        in_cols = [k for k in self.in_fields if any(k in r.inputs for r in self.coll_rows)]
        keys = ["comm_bytes", "hops", "t_latency", "t_bandwidth", "t_comm", "algbw", "busbw"]
        keys = [k for k in keys if k in self.ops_col]
        cols = ["workload", "op", "collective", "axes", "axis lengths", "wraparound"] + in_cols + keys
        self.header(ws, 1, cols)
        from ..ops import REGISTRY, OpContext

        wl_by_name = {w.name: w for w in self.workloads}
        for n, row in enumerate(self.coll_rows):
            r = 2 + n
            i = self.rows.index(row)
            info = REGISTRY["collective"].info(row.op, OpContext(wl_by_name[row.workload], self.active))
            wrap = info.get("wraparound") or []
            flags = " ".join("-" if w is None else ("wrap" if w else "no-wrap") for w in wrap)
            for c, v in enumerate([row.workload, row.op.name, row.op.collective, ",".join(row.op.axes),
                                   "x".join(str(x) for x in info.get("axis_lengths") or []), flags]):
                self.text(ws, r, c, v)
            for c, k in enumerate(in_cols):
                if k in row.inputs:
                    ws.write_formula(r, 6 + c, "=" + self._input_ref(i, k), None, _num(row.inputs[k]))
                    self.formula_cells += 1
            for c, k in enumerate(keys):
                if k in row.values:
                    ws.write_formula(r, 6 + len(in_cols) + c, "=Ops!" + xl_rowcol_to_cell(1 + i, self.ops_col[k]),
                                     self.fmt[FORMATS.get(k, ("", "eng"))[1]], _num(row.values[k]))
                    self.formula_cells += 1
        ws.set_column(0, 1, 18)
        ws.set_column(2, 5, 14)
        ws.set_column(6, len(cols), 13)
        if self.measured:
            self._measured_block(ws, 4 + len(self.coll_rows))

    def _measured_block(self, ws, r):
        self.text(ws, r, 0, "Measured on this host: the same collectives on 8 JAX host devices (2 shared CPU cores)",
                  self.fmt["title"])
        self.para(ws, r + 1, 0, "Host-device collectives are memory copies on 2 shared cores and far from linear in "
                  "bytes: this block checks that the programs run and the bytes agree, it is NOT an accuracy claim "
                  "for TPU/GPU links. predicted_s uses cpu-local with a nominal switched link (see perfmodel/"
                  "calibrate/xla_collectives.py).", 110)
        ws.merge_range(r + 1, 0, r + 1, 9, None)
        cols = ["collective", "ours", "bytes", "comm_bytes", "measured_s", "cv", "predicted_s", "measured / predicted"]
        for c, h in enumerate(cols):
            self.text(ws, r + 2, c, h, self.fmt["head"])
        for j, m in enumerate(self.measured):
            rr = r + 3 + j
            self.text(ws, rr, 0, m["collective"])
            self.text(ws, rr, 1, m["ours"])
            for c, k in enumerate(["bytes", "comm_bytes", "measured_s", "cv", "predicted_s"], start=2):
                ws.write_number(rr, c, float(m[k]), self.fmt["num" if k == "cv" else "eng"])
            ws.write_formula(rr, 7, f"={xl_rowcol_to_cell(rr, 4)}/{xl_rowcol_to_cell(rr, 6)}", self.fmt["num"],
                             _num(m["measured_s"] / m["predicted_s"]) if m["predicted_s"] else "#DIV/0!")
            self.formula_cells += 1

    def sources_sheet(self):
        ws = self.ws["Sources"]
        self.text(ws, 0, 0, "Citations per chip and field", self.fmt["title"])
        for c, h in enumerate(["chip", "field", "source"]):
            self.text(ws, 1, c, h, self.fmt["head"])
        r = 2
        for hw in self.hardware:
            for f, s in hw.sources.items():
                self.text(ws, r, 0, hw.name)
                self.text(ws, r, 1, f)
                self.para(ws, r, 2, "; ".join(s) if isinstance(s, list) else s, 70)
                r += 1
        r += 1
        self.text(ws, r, 0, "Disagreements: other published values (the engine uses 'value used', which is also on Hardware)", self.fmt["title"])
        r += 1
        for c, h in enumerate(["chip", "field", "value used", "alternative", "source", "note"]):
            self.text(ws, r, c, h, self.fmt["head"])
        r += 1
        for hw in self.hardware:
            dump = hw.model_dump()  # python mode: quantities keep their units
            for f, alts in hw.alternatives.items():
                used = dump
                for part in f.split("."):
                    used = used.get(part) if isinstance(used, dict) else None
                for a in alts:
                    self.text(ws, r, 0, hw.name)
                    self.text(ws, r, 1, f)
                    self.text(ws, r, 2, _show(used))
                    self.text(ws, r, 3, str(a.value))
                    self.para(ws, r, 4, a.source + (f" ({a.note})" if a.note else ""), 60)
                    r += 1
        ws.set_column(0, 0, 12)
        ws.set_column(1, 1, 28)
        ws.set_column(2, 2, 70)
        ws.set_column(3, 3, 16)
        ws.set_column(4, 4, 60)

    def roofline_sheet(self):
        """Roof lines per chip (live over Hardware) and the ops on the active chip (live over Ops)."""
        ws = self.ws["Roofline"]
        pts = [r.values.get("intensity") for r in self.rows]
        pts = [float(p) for p in pts if p is not None and np.isfinite(p) and p > 0]
        xmin = 10 ** math.floor(math.log10(min(pts + [1.0]) / 2))
        xmax = 10 ** math.ceil(math.log10(max(pts + [1e4]) * 2))
        dtype = self.rows[0].op.dtype if self.rows else "bf16"
        self.text(ws, 0, 0, f"Roofline: one {dtype} roof per chip (live from Hardware); points = ops on the active chip "
                            "(live from Ops) at achieved FLOP/s = flops / t_lower", self.fmt["bold"])
        # roof table, chart below it, point data to the right of the chart (column M on)
        r0 = 2
        for c, h in enumerate(["chip", "x_min", "y at x_min", "ridge x", "peak y", "x_max", "peak y"]):
            self.text(ws, r0, c, h, self.fmt["head"])
        chart = self.wb.add_chart({"type": "scatter", "subtype": "straight"})
        peaks = []
        for j, hw in enumerate(self.hardware):
            env = hw_env(hw)
            key = precision.matrix_rate(hw, dtype).key  # the roof the workload's matmuls run at
            if key not in env:
                continue
            r = r0 + 1 + j
            P, W = env[key], env["hbm_bandwidth"]
            peaks.append(P)
            pk = "Hardware!" + xl_rowcol_to_cell(self.hw_row[key], self.hw_col[hw.name], True, True)
            bw = "Hardware!" + xl_rowcol_to_cell(self.hw_row["hbm_bandwidth"], self.hw_col[hw.name], True, True)
            self.text(ws, r, 0, hw.name)
            # the ridge through roofline's own formula, its inputs bound to this chip's cells
            ridge = dict(ROOFLINE_COLUMNS)["ridge"]
            ridge_f = to_excel(ridge(symbols(["peak_used", "hbm_bandwidth"])),
                               {"peak_used": pk, "hbm_bandwidth": bw}.__getitem__)
            cells = [(f"={xmin!r}", xmin, "eng"), (f"={xmin!r}*{bw}", xmin * W, "eng"),
                     (ridge_f, ridge(NS(peak_used=P, hbm_bandwidth=W)), "num"),
                     (f"={pk}", P, "eng"), (f"={xmax!r}", xmax, "eng"), (f"={pk}", P, "eng")]
            for c, (f, v, fk) in enumerate(cells):
                ws.write_formula(r, 1 + c, f, self.fmt[fk], v)
                self.formula_cells += 1
            # a chart series wants x and y as columns: the 3 points laid out vertically
            base = r0 + 4 * j
            self.text(ws, base, 13, hw.name)
            for k in range(3):
                ws.write_formula(base + k, 14, "=" + xl_rowcol_to_cell(r, 1 + 2 * k), self.fmt["eng"], cells[2 * k][1])
                ws.write_formula(base + k, 15, "=" + xl_rowcol_to_cell(r, 2 + 2 * k), self.fmt["eng"], cells[2 * k + 1][1])
                self.formula_cells += 2
            chart.add_series({
                "name": f"{hw.name} roof", "categories": ["Roofline", base, 14, base + 2, 14],
                "values": ["Roofline", base, 15, base + 2, 15],
                "line": {"color": COLORS[j % len(COLORS)], "width": 2.0,
                         "dash_type": "solid" if j < 5 else "dash"},
                "marker": {"type": "none"}})
        self.text(ws, r0 - 1, 13, "chart series data (live)", self.fmt["bold"])
        env = hw_env(self.active)
        ici = env.get("link_bandwidth", 0) * env.get("links_per_chip", 0)
        key = precision.matrix_rate(self.active, dtype).key
        if ici > 0 and key in env:
            # interconnect roof of the active chip: x read as FLOP per byte over its links
            base = r0 + 4 * len(self.hardware)
            self.text(ws, base - 1, 13, f"interconnect roof ({self.active.name}, all links one-way)")
            pts = [(xmin, f"={xmin!r}", f"={xmin!r}*link_bandwidth*links_per_chip", xmin * ici),
                   (env[key] / ici, f"={key}/(link_bandwidth*links_per_chip)", f"={key}", env[key]),
                   (xmax, f"={xmax!r}", f"={key}", env[key])]
            for k, (xv, fx, fy, yv) in enumerate(pts):
                ws.write_formula(base + k, 14, fx, self.fmt["eng"], xv)
                ws.write_formula(base + k, 15, fy, self.fmt["eng"], yv)
                self.formula_cells += 2
            chart.add_series({"name": f"{self.active.name} interconnect roof (x = FLOP per link byte)",
                              "categories": ["Roofline", base, 14, base + 2, 14],
                              "values": ["Roofline", base, 15, base + 2, 15],
                              "line": {"color": "#000000", "width": 1.5, "dash_type": "long_dash"},
                              "marker": {"type": "none"}})
        # op points: one series per workload, rows of the Ops sheet
        pr = r0 + 4 * len(self.hardware) + 5
        for c, h in enumerate(["workload", "op", "intensity", "achieved FLOP/s"]):
            self.text(ws, pr, 12 + c, h, self.fmt["head"])
        ic, fc, tc = self.ops_col["intensity"], self.ops_col["flops"], self.ops_col["t_lower"]
        ys = []
        for w, wl in enumerate(self.workloads):
            idx = [i for i, row in enumerate(self.rows) if row.workload == wl.name]
            if not idx:
                continue
            first = pr + 1 + idx[0]
            for i in idx:
                v = self.rows[i].values
                rr = pr + 1 + i
                self.text(ws, rr, 12, wl.name)
                self.text(ws, rr, 13, self.rows[i].op.name)
                xi, fi, ti = (f"Ops!{xl_rowcol_to_cell(1 + i, c)}" for c in (ic, fc, tc))
                ok = v["intensity"] is not None and np.isfinite(v["intensity"]) and v["intensity"] > 0 and v["t_lower"]
                y = v["flops"] / v["t_lower"] if ok else None
                # log axes cannot show 0 (a pure copy has no FLOPs): NA() leaves the point out
                ws.write_formula(rr, 14, f"=IF({xi}>0,{xi},NA())", self.fmt["num"], _num(v["intensity"]) if ok else "#N/A")
                ws.write_formula(rr, 15, f"=IF({fi}>0,{fi}/{ti},NA())", self.fmt["eng"], _num(y) if ok else "#N/A")
                self.formula_cells += 2
                if ok:
                    ys.append(y)
            last = pr + 1 + idx[-1]
            color = COLORS[(w + 3) % len(COLORS)]
            chart.add_series({
                "name": f"{wl.name} (ops)",
                "categories": ["Roofline", first, 14, last, 14], "values": ["Roofline", first, 15, last, 15],
                "line": {"none": True},
                "marker": {"type": MARKERS[w % len(MARKERS)], "size": 8, "fill": {"color": color},
                           "border": {"color": "#000000"}}})
        ymin = 10 ** math.floor(math.log10(min(ys + [xmin * min(h.hbm_bandwidth for h in self.hardware)])))
        ymax = 10 ** math.ceil(math.log10(max(peaks + ys + [1.0]) * 1.5))
        chart.set_title({"name": f"Roofline ({dtype}); points: ops on {self.active.name} when written"})
        chart.set_x_axis({"name": "arithmetic intensity [FLOP/byte]", "log_base": 10, "min": xmin, "max": xmax,
                          "major_gridlines": {"visible": True}, "num_format": "0.E+0", "crossing": xmin})
        chart.set_y_axis({"name": "attainable FLOP/s", "log_base": 10, "min": ymin, "max": ymax,
                          "major_unit": 10, "major_gridlines": {"visible": True}, "num_format": "0.E+0",
                          "crossing": ymin})
        chart.set_legend({"position": "right"})
        chart.set_size({"width": 860, "height": 540})
        ws.insert_chart(r0 + len(self.hardware) + 2, 0, chart)
        ws.set_column(0, 0, 14)
        ws.set_column(1, 6, 12)
        ws.set_column(12, 13, 20)
        ws.set_column(14, 15, 14)


    def calibration_sheet(self):
        """Measured vs predicted per kernel; the predictions are live sums of Ops cells."""
        res, index = self.calibration
        ws = self.ws["Calibration"]
        self.text(ws, 0, 0, f"Calibration of {self.active.name}: measured vs predicted per kernel", self.fmt["title"])
        e = res.errors

        def pct(x):
            return "-" if x is None else f"{100 * x:.1f}%"
        summary = [("held-out kernels >= 1 ms", "n", "median", "p90", "worst")]
        for label, st in (("spec-sheet roofline (t_lower)", e["heldout_1ms"]["spec_roofline"]),
                          ("calibrated model (t_calibrated)", e["heldout_1ms"]["calibrated"]),
                          ("noise floor (one pass vs the others)", res.noise)):
            summary.append((label, str(st["n"]), pct(st["median"]), pct(st["p90"]), pct(st["worst"])))
        for i, row in enumerate(summary):  # the label spans three columns: it is long
            ws.merge_range(2 + i, 0, 2 + i, 2, row[0], self.fmt["head" if i == 0 else "text"])
            for c, v in enumerate(row[1:], start=3):
                self.text(ws, 2 + i, c, v, self.fmt["head" if i == 0 else "text"])
        self.para(ws, 6, 0, "Relative error = |predicted - measured| / measured. Fit rows trained the parameters; "
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
            self.text(ws, h, c, name, self.fmt["head"])
        tl, tc = self.ops_col["t_lower"], self.ops_col.get("t_calibrated")
        series = {"fit": [], "held-out": [], "extrapolation": [], "composite": []}

        def kind_of(r):
            return "composite" if r.group == "composite" else "extrapolation" if r.extrapolation else \
                "held-out" if r.heldout else "fit"
        order = sorted(range(len(res.rows)), key=lambda i: list(series).index(kind_of(res.rows[i])))
        rel = relative_error(Ref("predicted"), Ref("measured"))

        def rel_error(rr, col, pred_col, pred, meas):
            """calibrated.relative_error of the row's cells, rendered, with its value cached."""
            cells = {"predicted": xl_rowcol_to_cell(rr, pred_col), "measured": xl_rowcol_to_cell(rr, 6)}
            ws.write_formula(rr, col, to_excel(rel, cells.__getitem__), self.fmt["pct"],
                             _num(relative_error(pred, meas)))
        for i, (r, idx) in enumerate((res.rows[o], index[o]) for o in order):
            rr = h + 1 + i
            kind = kind_of(r)
            series[kind].append(rr)
            for c, v in enumerate([r.kernel, r.params, r.dtype, r.group, kind, "no" if r.unstable else "yes"]):
                self.text(ws, rr, c, v)
            ws.write_number(rr, 6, r.measured_s, self.fmt["eng"])
            ws.write_number(rr, 7, r.cv, self.fmt["num"])
            cells = ",".join("Ops!" + xl_rowcol_to_cell(1 + j, tl) for j in idx)
            ws.write_formula(rr, 8, f"=SUM({cells})", self.fmt["eng"], _num(r.spec_s))
            rel_error(rr, 11, 8, r.spec_s, r.measured_s)
            ok = tc is not None and all("t_calibrated" in self.rows[j].values for j in idx) and np.isfinite(r.predicted_s)
            if ok and any(f.get("repeat", 1) > 1 for f in r.feats):
                # interpreted Pallas: the fitter prices each grid step (a block matmul touching
                # the whole operands), which no workbook op expresses: its number, not a formula
                ws.write_number(rr, 9, r.predicted_s, self.fmt["eng"])
                rel_error(rr, 10, 9, r.predicted_s, r.measured_s)
                ws.write_comment(rr, 9, "Interpreted Pallas: the fitter's per-grid-step prediction "
                                        "(steps x a block matmul over the whole operands); a value, not "
                                        "a formula of the Ops sheet.")
                self.formula_cells += 1
            elif ok:
                cells = ",".join("Ops!" + xl_rowcol_to_cell(1 + j, tc) for j in idx)
                ws.write_formula(rr, 9, f"=SUM({cells})", self.fmt["eng"], _num(r.predicted_s))
                rel_error(rr, 10, 9, r.predicted_s, r.measured_s)
                self.formula_cells += 2
            else:
                self.text(ws, rr, 9, "n/a (group not fitted)")
            self.formula_cells += 2
        # measured (x) vs predicted (y), log-log, with y = x
        chart = self.wb.add_chart({"type": "scatter"})
        colors = {"fit": "#1F77B4", "held-out": "#FF7F0E", "extrapolation": "#D62728", "composite": "#2CA02C"}
        for kind, rows_ in series.items():
            if rows_:  # contiguous: the rows are ordered by set
                chart.add_series({"name": kind, "categories": ["Calibration", rows_[0], 6, rows_[-1], 6],
                                  "values": ["Calibration", rows_[0], 9, rows_[-1], 9], "line": {"none": True},
                                  "marker": {"type": "circle", "size": 6, "fill": {"color": colors[kind]},
                                             "border": {"color": colors[kind]}}})
        lo_ = min(r.measured_s for r in res.rows)
        hi_ = max(r.measured_s for r in res.rows)
        lo_, hi_ = 10 ** math.floor(math.log10(lo_)), 10 ** math.ceil(math.log10(hi_))
        yr = h + 2 + len(res.rows)
        self.text(ws, yr, 0, "y = x line")
        for k, v in enumerate((lo_, hi_)):
            ws.write_number(yr + 1 + k, 6, v, self.fmt["eng"])
            ws.write_number(yr + 1 + k, 9, v, self.fmt["eng"])
        chart.add_series({"name": "y = x", "categories": ["Calibration", yr + 1, 6, yr + 2, 6],
                          "values": ["Calibration", yr + 1, 9, yr + 2, 9],
                          "line": {"color": "#000000", "dash_type": "dash"}, "marker": {"type": "none"}})
        chart.set_title({"name": "measured vs predicted (calibrated)"})
        chart.set_x_axis({"name": "measured [s]", "log_base": 10, "min": lo_, "max": hi_, "crossing": lo_,
                          "num_format": "0.E+0", "major_gridlines": {"visible": True}})
        chart.set_y_axis({"name": "predicted [s]", "log_base": 10, "min": lo_, "max": hi_, "crossing": lo_,
                          "num_format": "0.E+0", "major_gridlines": {"visible": True}})
        chart.set_size({"width": 620, "height": 460})
        ws.insert_chart(1, 13, chart)
        ws.set_column(0, 0, 16)
        ws.set_column(1, 1, 44)
        ws.set_column(2, 5, 11)
        ws.set_column(6, 11, 13)
        ws.freeze_panes(h + 1, 1)


    def model_sheet(self):
        """Per transformer workload: model and parallelism inputs, the ledger (live from Ops),
        group times, step totals and the memory stack (live against hbm_capacity)."""
        ws = self.ws["Model"]
        ws.set_column(0, 0, 30)
        ws.set_column(1, 9, 14)
        r = 0
        for wl, x in self.models:
            r = self._model_block(ws, r, wl, x) + 3

    def _model_block(self, ws, r, wl, x):
        from ..model.summary import group_time, pipeline_stretch
        from ..model.transformer import memory_parts

        spec, plan = x.spec, x.plan
        self.text(ws, r, 0, f"{wl.name}: {spec.name} ({spec.mode}) on {self.active.name} x {plan.chips}",
                  self.fmt["title"])
        r += 1
        self.para(ws, r, 0, "Ledger rows are live from Ops (edit a chip parameter on Inputs or an op field on "
                  "Workload and they follow). Op shapes were derived from the model and parallelism fields below "
                  "when the workbook was written; rerun perfmodel to change those.", 110)
        ws.merge_range(r, 0, r, 9, None)
        r += 2
        fields = {k: v for k, v in spec.model_dump(exclude_none=True).items() if k not in ("name", "kind")}
        plan_fields = {k: getattr(plan, k) for k in ("chips", "dp", "fsdp", "tp", "sp", "ep", "pp", "microbatches",
                                                      "batch", "tokens", "layers", "heads", "kv_heads", "d_ff")}
        self.text(ws, r, 0, "model field", self.fmt["head"])
        self.text(ws, r, 1, "value", self.fmt["head"])
        self.text(ws, r, 3, "per-chip plan", self.fmt["head"])
        self.text(ws, r, 4, "value", self.fmt["head"])
        for i, (k, v) in enumerate(fields.items()):
            self.text(ws, r + 1 + i, 0, k)
            self.text(ws, r + 1 + i, 1, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
        for i, (k, v) in enumerate(plan_fields.items()):
            self.text(ws, r + 1 + i, 3, k)
            ws.write_number(r + 1 + i, 4, float(v))
        r += 2 + max(len(fields), len(plan_fields))
        # ledger
        cols = ["op (ledger path)", "group", "role", "kind", "repeat", "flops", "hbm_bytes", "t_lower", "t_upper", "bound"]
        for c, h in enumerate(cols):
            self.text(ws, r, c, h + (f"\n[{FORMATS[h][0]}]" if h in FORMATS and FORMATS[h][0] else ""), self.fmt["head"])
        ws.set_row(r, 30)
        first = r + 1
        idx = [i for i, row in enumerate(self.rows) if row.workload == wl.name]
        for n, i in enumerate(idx):
            row, rr = self.rows[i], first + n
            name = row.op.name
            for c, v in enumerate([name, x.groups.get(name, ""), x.roles.get(name, ""), row.op.kind]):
                self.text(ws, rr, c, v)
            ws.write_number(rr, 4, float(row.op.repeat), self.fmt["int"])
            for c, k in enumerate(["flops", "hbm_bytes", "t_lower", "t_upper", "bound"], start=5):
                ws.write_formula(rr, c, "=Ops!" + xl_rowcol_to_cell(1 + i, self.ops_col[k]),
                                 self.fmt["center" if k == "bound" else "eng"], _num(row.values[k]))
                self.formula_cells += 1
        last = first + len(idx) - 1
        rng = lambda c: f"${xl_col_to_name(c)}${first + 1}:${xl_col_to_name(c)}${last + 1}"  # noqa: E731
        r = last + 2
        # per group: kernels and collectives overlap within a group (t_lower) or not (t_upper)
        self.text(ws, r, 0, "group", self.fmt["head"])
        for c, h in enumerate(["kernels t_lower", "collectives t_lower", "group time (max)", "no overlap (sum)"], start=1):
            self.text(ws, r, c, h, self.fmt["head"])
        ws.set_row(r, 30)
        groups = list(dict.fromkeys(x.groups.get(self.rows[i].op.name, "") for i in idx))
        gcells, t_lower = [], 0.0
        for j, g in enumerate(groups):
            rr = r + 1 + j
            sel = [self.rows[i] for i in idx if x.groups.get(self.rows[i].op.name, "") == g]
            kern = sum(s.values["t_lower"] for s in sel if s.op.kind != "collective")
            coll = sum(s.values["t_lower"] for s in sel if s.op.kind == "collective")
            self.text(ws, rr, 0, g)
            ws.write_formula(rr, 1, f'=SUMIFS({rng(7)},{rng(1)},"{g}",{rng(3)},"<>collective")', self.fmt["eng"], kern)
            ws.write_formula(rr, 2, f'=SUMIFS({rng(7)},{rng(1)},"{g}",{rng(3)},"collective")', self.fmt["eng"], coll)
            gt = group_time(Ref("kernels"), Ref("collectives"))  # summary.py's rule, rendered
            ws.write_formula(rr, 3, to_excel(gt, {"kernels": xl_rowcol_to_cell(rr, 1),
                                                  "collectives": xl_rowcol_to_cell(rr, 2)}.__getitem__),
                             self.fmt["eng"], float(group_time(kern, coll)))
            ws.write_formula(rr, 4, f'=SUMIFS({rng(8)},{rng(1)},"{g}")', self.fmt["eng"],
                             sum(s.values["t_upper"] for s in sel))
            self.formula_cells += 4
            gcells.append(rr)
            t_lower += float(group_time(kern, coll))
        r = r + 2 + len(groups)
        t_upper = sum(self.rows[i].values["t_upper"] for i in idx)
        flops = sum(self.rows[i].values["flops"] for i in idx)
        stretch = pipeline_stretch(plan)  # the bubble stretches everything but the optimizer
        gl = ",".join(xl_rowcol_to_cell(g, 3) for g in gcells)
        gu = ",".join(xl_rowcol_to_cell(g, 4) for g in gcells)
        step = [("step FLOPs per chip", f"=SUM({rng(5)})", flops, "eng"),
                ("t_lower per step (overlap within groups)", f"=SUM({gl})", t_lower, "eng"),
                ("t_upper per step (no overlap)", f"=SUM({gu})", t_upper, "eng")]
        self.text(ws, r, 0, "step", self.fmt["head"])
        self.text(ws, r, 1, "value", self.fmt["head"])
        if stretch != 1.0:
            self.text(ws, r, 2, f"(pipeline: the JSON total stretches non-optimizer time by {stretch:.3f})")
        for j, (label, f, v, fk) in enumerate(step):
            self.text(ws, r + 1 + j, 0, label)
            ws.write_formula(r + 1 + j, 1, f, self.fmt[fk], _num(v))
            self.formula_cells += 1
        r += 2 + len(step)
        # memory stack
        parts = memory_parts(spec, plan)
        self.text(ws, r, 0, "memory per chip", self.fmt["head"])
        self.text(ws, r, 1, "bytes", self.fmt["head"])
        for j, (k, v) in enumerate(parts.items()):
            self.text(ws, r + 1 + j, 0, k)
            ws.write_number(r + 1 + j, 1, float(v), self.fmt["eng"])
        tr = r + 1 + len(parts)
        top = xl_rowcol_to_cell(r + 1, 1)
        bot = xl_rowcol_to_cell(tr - 1, 1)
        tot = float(sum(parts.values()))
        self.text(ws, tr, 0, "total", self.fmt["bold"])
        ws.write_formula(tr, 1, f"=SUM({top}:{bot})", self.fmt["eng"], tot)
        self.text(ws, tr + 1, 0, "hbm_capacity (active chip)")
        ws.write_formula(tr + 1, 1, "=hbm_capacity", self.fmt["eng"], _num(hw_env(self.active)["hbm_capacity"]))
        self.text(ws, tr + 2, 0, "fits in HBM")
        ws.write_formula(tr + 2, 1, f'=IF({xl_rowcol_to_cell(tr, 1)}<={xl_rowcol_to_cell(tr + 1, 1)},"yes","NO")',
                         self.fmt["center"], "yes" if tot <= hw_env(self.active)["hbm_capacity"] else "NO")
        self.formula_cells += 3
        chart = self.wb.add_chart({"type": "column", "subtype": "stacked"})
        for j, k in enumerate(parts):
            chart.add_series({"name": k, "values": ["Model", r + 1 + j, 1, r + 1 + j, 1],
                              "fill": {"color": COLORS[j % len(COLORS)]}})
        cap = hw_env(self.active)["hbm_capacity"]
        chart.set_title({"name": f"{spec.name}: memory per chip [B] (HBM {cap / 1e9:.0f} GB)"})
        chart.set_y_axis({"num_format": "0.E+0", "min": 0, "max": max(cap, tot) * 1.05})
        chart.set_size({"width": 420, "height": 300})
        ws.insert_chart(r, 5, chart)
        return max(tr + 3, r + 16)


def _hw_unit(p: str) -> str:
    return HW_UNITS.get(p, "FLOP/s" if p.startswith(("peak", "vector", "transcendental")) else "")


def _name_stem(op_name: str, i: int, used: set) -> str:
    """An Excel-safe defined-name stem for an op (letters, digits, _), unique in the book."""
    stem = "".join(ch if ch.isalnum() else "_" for ch in op_name).strip("_").lower() or "op"
    stem = f"op_{stem}"[:60]
    while stem in used:
        stem = f"{stem}_{i}"
    used.add(stem)
    return stem


def _show(v):
    """A python-mode spec value ("1.23e12 B/s", a dtype mapping, ...) for people."""
    if isinstance(v, dict):
        return ", ".join(f"{k} {_show(x)}" for k, x in v.items())
    if isinstance(v, str) and " " in v:
        num, _, unit = v.partition(" ")
        try:
            return fmt_si(float(num), unit)
        except ValueError:
            return v
    if isinstance(v, float):
        return fmt_si(v, "B")
    return "" if v is None else str(v)


def _write(path: Path, workloads, hardware, active=None, measured_collectives=None,
           calibration=None) -> _Writer:
    path = check_output(Path(path))
    with atomic_path(path) as tmp:
        w = _Writer(tmp, list(workloads), list(hardware), active, measured_collectives, calibration)
        w.write()
    return w


def write_workbook(path: Path, workloads, hardware, active: str | None = None,
                   measured_collectives=None, calibration=None) -> Path:
    """Write the workbook atomically; return its path. Raises SpecError on bad input/paths."""
    _write(path, workloads, hardware, active, measured_collectives, calibration)
    return Path(path)


def write_workbook_stats(path: Path, workloads, hardware, active=None) -> int:
    """Write and return the number of formula cells (for the benchmark)."""
    return _write(path, workloads, hardware, active).formula_cells
