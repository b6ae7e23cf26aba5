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
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .. import __version__
from ..atomic import atomic_path, check_output
from ..engine import HW_PARAMS, hw_env, op_columns
from ..formula import to_excel
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
    "busbw": ("B/s", "eng"), "mfu": ("", "pct"), "mbu": ("", "pct"), "hops": ("", "int"),
}
HW_UNITS = {"hbm_bandwidth": "B/s", "hbm_capacity": "B", "onchip_memory": "B",
            "matmul_tile": "elements", "link_bandwidth": "B/s", "hop_latency": "s",
            "scale_out_bandwidth": "B/s", "dcn_bandwidth": "B/s"}
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
    def __init__(self, path: Path, workloads, hardware, active: str | None):
        self.workloads, self.hardware = workloads, hardware
        self.active = next((h for h in hardware if h.name == active), hardware[0])
        self.wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False,
                                                  "strings_to_numbers": False})
        self.formula_cells = 0
        f = self.wb.add_format
        self.fmt = {
            "eng": f({"num_format": "##0.000E+0"}), "num": f({"num_format": "0.00"}),
            "pct": f({"num_format": "0.0%"}), "int": f({"num_format": "0"}),
            "text": f({}), "head": f({"bold": True, "bg_color": "#DDEBF7", "border": 1,
                                      "text_wrap": True, "valign": "top"}),
            "input": f({"bg_color": "#FFF2CC", "border": 1}),
            "input_eng": f({"bg_color": "#FFF2CC", "border": 1, "num_format": "##0.000E+0"}),
            "title": f({"bold": True, "font_size": 14}), "wrap": f({"text_wrap": True, "valign": "top"}),
            "bold": f({"bold": True}),
        }
        self.hw_params = [p for p in HW_PARAMS if any(p in hw_env(h) for h in hardware)]
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
        if isinstance(value, (str, np.str_, bool, np.bool_)):
            fmt = None
        ws.write_formula(r, c, to_excel(expr, resolve), fmt, _num(value))
        self.formula_cells += 1

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
        if self.coll_rows:
            sheets.append("Collectives")
        sheets += ["Sources", "Roofline"]
        self.ws = {name: wb.add_worksheet(name) for name in sheets}
        self.readme()
        self.hardware_sheet()
        self.inputs_sheet()
        self.workload_sheet()
        self.ops_sheet()
        self.bychip_sheet()
        self.compare_sheet()
        if self.coll_rows:
            self.collectives_sheet()
        self.sources_sheet()
        self.roofline_sheet()
        self.ws["Ops"].activate()
        wb.close()

    def readme(self):
        ws = self.ws["README"]
        ws.set_column(0, 0, 110)
        lines = [
            ("perfmodel roofline workbook", "title"),
            (f"perfmodel {__version__}; written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"workloads: {', '.join(w.name for w in self.workloads)}; active chip: {self.active.name}", None),
            ("", None),
            ("What to edit (yellow cells are inputs; everything else is a live formula):", "bold"),
            ("- Inputs!B2: the active chip (drop-down). Every cell on Ops, Collectives and the Roofline chart follows it.", None),
            ("- Inputs!B4 and below: the active chip's parameters, looked up from the Hardware sheet. Type a number over one "
             "(e.g. a new hbm_bandwidth in B/s) for a what-if; Ops recomputes.", None),
            ("- Hardware: one column per chip. Edit a chip's number there and Compare/ByChip (and Inputs, if active) follow.", None),
            ("- Workload: one row per op; its shape fields (m, k, n, seq, heads, ...) are inputs. Change seq and the op recomputes.", None),
            ("", None),
            ("How bounds are defined:", "bold"),
            ("- t_compute = flops_exec / peak FLOP/s of the op's dtype (flops_exec pads matmul dims up to the chip's matmul_tile).", None),
            ("- t_memory = hbm_bytes / hbm_bandwidth.  t_comm = collective time (Collectives).", None),
            ("- t_lower = MAX of the terms (perfect overlap); t_upper = SUM of the terms (no overlap).", None),
            ("- bound = the largest term. intensity = flops / hbm_bytes; ridge = peak / hbm_bandwidth (compute-bound iff intensity > ridge).", None),
            ("- MFU = flops / (t_lower x peak); MBU = hbm_bytes / (t_lower x hbm_bandwidth).", None),
            ("- Units: SI throughout (bytes, seconds, FLOP/s, B/s). Numbers show in engineering notation (1.230E+12 = 1.23 T).", None),
            ("", None),
            ("Sheets: Inputs, Hardware, Workload, Ops, Compare (t_lower per chip, ratios to the first chip), ByChip (every op on "
             "every chip, the cells Compare reads), Collectives (if any), Sources (citations and disagreements), Roofline (chart).", None),
            ("Sources: every hardware number is cited on the Sources sheet; other published values are listed there as alternatives.", None),
        ]
        for i, (s, f) in enumerate(lines):
            self.text(ws, i, 0, s, self.fmt[f] if f else self.fmt["wrap"])

    def hardware_sheet(self):
        ws = self.ws["Hardware"]
        self.text(ws, 0, 0, "parameter", self.fmt["head"])
        self.text(ws, 0, 1, "unit", self.fmt["head"])
        self.hw_col = {}
        for j, hw in enumerate(self.hardware):
            self.text(ws, 0, 2 + j, hw.name, self.fmt["head"])
            self.hw_col[hw.name] = 2 + j
        self.hw_row = {}
        for i, p in enumerate(self.hw_params):
            r = 1 + i
            self.hw_row[p] = r
            self.text(ws, r, 0, p)
            self.text(ws, r, 1, HW_UNITS.get(p, "FLOP/s" if p.startswith("peak") else ""))
            for hw in self.hardware:
                v = hw_env(hw).get(p)
                if v is not None:
                    ws.write_number(r, self.hw_col[hw.name], v, self.fmt["input_eng"])
        r = 2 + len(self.hw_params)
        self.text(ws, r, 0, "kind")
        for hw in self.hardware:
            self.text(ws, r, self.hw_col[hw.name], hw.kind)
        ws.set_column(0, 0, 22)
        ws.set_column(1, 1, 9)
        ws.set_column(2, 1 + len(self.hardware), 13)
        ws.freeze_panes(1, 2)
        last = xl_col_to_name(1 + len(self.hardware))
        self.chip_range = f"Hardware!$C$1:${last}$1"

    def inputs_sheet(self):
        ws = self.ws["Inputs"]
        self.text(ws, 0, 0, "Active chip and its parameters (defined names used by every formula)", self.fmt["title"])
        self.text(ws, 1, 0, "active_chip", self.fmt["bold"])
        ws.write_string(1, 1, self.active.name, self.fmt["input"])
        ws.data_validation(1, 1, 1, 1, {"validate": "list", "source": "=" + self.chip_range})
        self.wb.define_name("active_chip", "=Inputs!$B$2")
        self.text(ws, 1, 2, "<- pick a chip from the drop-down")
        for c, h in enumerate(["parameter", "value", "unit"]):
            self.text(ws, 2, c, h, self.fmt["head"])
        env = hw_env(self.active)
        last = xl_col_to_name(1 + len(self.hardware))
        for i, p in enumerate(self.hw_params):
            r = 3 + i
            hr = self.hw_row[p] + 1
            self.text(ws, r, 0, p)
            row_rng = f"Hardware!$C${hr}:${last}${hr}"
            f = f'=IF(INDEX({row_rng},MATCH(active_chip,{self.chip_range},0))="",NA(),INDEX({row_rng},MATCH(active_chip,{self.chip_range},0)))'
            ws.write_formula(r, 1, f, self.fmt["input_eng"], _num(env[p]) if p in env else "#N/A")
            self.formula_cells += 1
            self.text(ws, r, 2, HW_UNITS.get(p, "FLOP/s" if p.startswith("peak") else ""))
            self.wb.define_name(p, f"=Inputs!$B${r + 1}")
        ws.set_column(0, 0, 24)
        ws.set_column(1, 1, 16)
        ws.set_column(2, 2, 34)

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
        for i, row in enumerate(self.rows):
            r = 1 + i
            for c, v in enumerate([row.workload, row.op.name, row.op.kind, row.op.dtype,
                                   getattr(row.op, "impl", "") or getattr(row.op, "collective", "")]):
                self.text(ws, r, c, v)
            for k, v in row.inputs.items():
                ws.write_number(r, self.in_col[k], float(v), self.fmt["input"])
        ws.set_column(0, 1, 20)
        ws.set_column(2, len(cols), 11)
        ws.freeze_panes(1, 2)

    def _columns(self, rows, part):
        cols = []
        for row in rows:
            src = row.cost_sym if part == "cost" else row.roof_sym
            for k in src:
                if k not in cols:
                    cols.append(k)
        return cols

    def ops_sheet(self):
        ws = self.ws["Ops"]
        self.cost_cols = self._columns(self.rows, "cost")
        self.roof_cols = self._columns(self.rows, "roof")
        fixed = ["workload", "op", "kind", "dtype"]
        cols = fixed + self.cost_cols + self.roof_cols
        self.ops_col = {k: i for i, k in enumerate(cols)}
        self.header(ws, 0, cols)
        for i, row in enumerate(self.rows):
            r = 1 + i
            for c, v in enumerate([row.workload, row.op.name, row.op.kind, row.op.dtype]):
                self.text(ws, r, c, v)

            def resolve(name, r=r):
                if name in self.ops_col and name not in self.in_col:
                    return xl_rowcol_to_cell(r, self.ops_col[name])
                if name in self.in_col:
                    return "Workload!" + xl_rowcol_to_cell(r, self.in_col[name], row_abs=False)
                return name  # a defined name on Inputs
            for k, e in {**row.cost_sym, **row.roof_sym}.items():
                self.formula(ws, r, self.ops_col[k], e, resolve, row.values[k], FORMATS.get(k, ("", None))[1] or None)
        ws.set_column(0, 1, 18)
        ws.set_column(2, 3, 10)
        ws.set_column(4, len(cols), 12)
        ws.freeze_panes(1, 2)
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
                    if name in col and name not in self.in_col:
                        return xl_rowcol_to_cell(r, col[name])
                    if name in self.in_col:
                        if inp[name] == self.rows[i].inputs.get(name):
                            return "Workload!" + xl_rowcol_to_cell(1 + i, self.in_col[name])
                        return repr(float(inp[name]))  # chip-specific structure (topology)
                    return "Hardware!" + xl_rowcol_to_cell(self.hw_row[name], hc, True, True)
                for k, e in {**cost, **roof}.items():
                    self.formula(ws, r, col[k], e, resolve, values[k], FORMATS.get(k, ("", None))[1] or None)
                r += 1
        self.bychip_col = col
        ws.set_column(0, 2, 16)
        ws.set_column(3, len(cols), 12)
        ws.freeze_panes(1, 3)

    def compare_sheet(self):
        ws = self.ws["Compare"]
        chips = [h.name for h in self.hardware]
        base = chips[0]
        self.text(ws, 0, 0, f"t_lower per chip [s] (live from ByChip) and speed-up relative to {base}", self.fmt["title"])
        cols = ["workload", "op"] + [f"{c}\nt_lower [s]" for c in chips] + [f"{c}\nbound" for c in chips] + \
               [f"{c}\nspeed-up vs {base}" for c in chips[1:]]
        for c, h in enumerate(cols):
            self.text(ws, 1, c, h, self.fmt["head"])
        ws.set_row(1, 30)
        n = len(chips)
        tl, bd = self.bychip_col["t_lower"], self.bychip_col["bound"]
        for i, row in enumerate(self.rows):
            r = 2 + i
            self.text(ws, r, 0, row.workload)
            self.text(ws, r, 1, row.op.name)
            for j, chip in enumerate(chips):
                br = self.bychip_row.get((chip, i))
                if br is None:
                    self.text(ws, r, 2 + j, "n/a")
                    self.text(ws, r, 2 + n + j, "n/a")
                    continue
                v = row.by_chip[chip][3]
                ws.write_formula(r, 2 + j, "=ByChip!" + xl_rowcol_to_cell(br, tl), self.fmt["eng"], _num(v["t_lower"]))
                ws.write_formula(r, 2 + n + j, "=ByChip!" + xl_rowcol_to_cell(br, bd), None, _num(v["bound"]))
                self.formula_cells += 2
            for j, chip in enumerate(chips[1:], start=1):
                if (chip, i) in self.bychip_row and (base, i) in self.bychip_row:
                    a = row.by_chip[base][3]["t_lower"]
                    b = row.by_chip[chip][3]["t_lower"]
                    ws.write_formula(r, 2 + 2 * n + j - 1,
                                     f"={xl_rowcol_to_cell(r, 2)}/{xl_rowcol_to_cell(r, 2 + j)}",
                                     self.fmt["num"], _num(a / b))
                    self.formula_cells += 1
        # totals per workload
        r = 3 + len(self.rows)
        self.text(ws, r, 0, "total (sum of t_lower)", self.fmt["bold"])
        for wl in self.workloads:
            idx = [i for i, row in enumerate(self.rows) if row.workload == wl.name]
            self.text(ws, r, 1, wl.name, self.fmt["bold"])
            for j, chip in enumerate(chips):
                if all((chip, i) in self.bychip_row for i in idx):
                    cells = ",".join(xl_rowcol_to_cell(2 + i, 2 + j) for i in idx)
                    total = sum(self.rows[i].by_chip[chip][3]["t_lower"] for i in idx)
                    ws.write_formula(r, 2 + j, f"=SUM({cells})", self.fmt["eng"], _num(total))
                    self.formula_cells += 1
            r += 1
        ws.set_column(0, 1, 18)
        ws.set_column(2, len(cols), 12)
        ws.freeze_panes(2, 2)

    def collectives_sheet(self):
        ws = self.ws["Collectives"]
        self.text(ws, 0, 0, "Collectives on the active chip's topology (live from Ops; edit link_bandwidth or hop_latency on Inputs)", self.fmt["title"])
        in_cols = [k for k in self.in_fields if any(k in r.inputs for r in self.coll_rows)]
        keys = ["comm_bytes", "hops", "t_latency", "t_bandwidth", "t_comm", "algbw", "busbw"]
        keys = [k for k in keys if k in self.ops_col]
        cols = ["workload", "op", "collective"] + in_cols + keys
        self.header(ws, 1, cols)
        for n, row in enumerate(self.coll_rows):
            r = 2 + n
            i = self.rows.index(row)
            self.text(ws, r, 0, row.workload)
            self.text(ws, r, 1, row.op.name)
            self.text(ws, r, 2, getattr(row.op, "collective", ""))
            for c, k in enumerate(in_cols):
                if k in row.inputs:
                    ws.write_formula(r, 3 + c, "=Workload!" + xl_rowcol_to_cell(1 + i, self.in_col[k]), None, _num(row.inputs[k]))
                    self.formula_cells += 1
            for c, k in enumerate(keys):
                if k in row.values:
                    ws.write_formula(r, 3 + len(in_cols) + c, "=Ops!" + xl_rowcol_to_cell(1 + i, self.ops_col[k]),
                                     self.fmt[FORMATS.get(k, ("", "eng"))[1]], _num(row.values[k]))
                    self.formula_cells += 1
        ws.set_column(0, 2, 16)
        ws.set_column(3, len(cols), 12)

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
                self.text(ws, r, 2, "; ".join(s) if isinstance(s, list) else s, self.fmt["wrap"])
                r += 1
        r += 1
        self.text(ws, r, 0, "Disagreements: other published values (the engine uses the value on Hardware)", self.fmt["title"])
        r += 1
        for c, h in enumerate(["chip", "field", "value used", "alternative", "source", "note"]):
            self.text(ws, r, c, h, self.fmt["head"])
        r += 1
        for hw in self.hardware:
            dump = hw.model_dump(mode="json")
            for f, alts in hw.alternatives.items():
                used = dump
                for part in f.split("."):
                    used = used.get(part) if isinstance(used, dict) else None
                for a in alts:
                    self.text(ws, r, 0, hw.name)
                    self.text(ws, r, 1, f)
                    self.text(ws, r, 2, _show(used))
                    self.text(ws, r, 3, str(a.value))
                    self.text(ws, r, 4, a.source, self.fmt["wrap"])
                    self.text(ws, r, 5, a.note or "", self.fmt["wrap"])
                    r += 1
        ws.set_column(0, 1, 18)
        ws.set_column(2, 2, 60)
        ws.set_column(3, 3, 16)
        ws.set_column(4, 4, 60)
        ws.set_column(5, 5, 30)

    def roofline_sheet(self):
        """Roof lines per chip (live over Hardware) and the ops on the active chip (live over Ops)."""
        ws = self.ws["Roofline"]
        colors = ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
                  "#7F7F7F", "#BCBD22", "#17BECF"]
        pts = [r.values.get("intensity") for r in self.rows]
        pts = [float(p) for p in pts if p is not None and np.isfinite(p) and p > 0]
        xmin = 10 ** math.floor(math.log10(min(pts + [1.0]) / 2))
        xmax = 10 ** math.ceil(math.log10(max(pts + [1e4]) * 2))
        self.text(ws, 0, 0, "Roof data (live): x = intensity [FLOP/B], y = attainable FLOP/s", self.fmt["bold"])
        self.text(ws, 1, 0, "x_min")
        ws.write_number(1, 1, xmin, self.fmt["input_eng"])
        self.text(ws, 2, 0, "x_max")
        ws.write_number(2, 1, xmax, self.fmt["input_eng"])
        chart = self.wb.add_chart({"type": "scatter", "subtype": "straight"})
        # roofs: 3 points per chip (x_min, ridge, x_max) at the chip's peak of the first op dtype
        dtype = self.rows[0].op.dtype if self.rows else "bf16"
        r0 = 4
        self.text(ws, r0, 0, f"chip ({dtype} roof)", self.fmt["head"])
        for c, h in enumerate(["x1", "y1", "x2 (ridge)", "y2", "x3", "y3"]):
            self.text(ws, r0, 1 + c, h, self.fmt["head"])
        key = f"peak_flops_{dtype}"
        for j, hw in enumerate(self.hardware):
            env = hw_env(hw)
            if key not in env:
                continue
            r = r0 + 1 + j
            P, W = env[key], env["hbm_bandwidth"]
            pk = "Hardware!" + xl_rowcol_to_cell(self.hw_row[key], self.hw_col[hw.name], True, True)
            bw = "Hardware!" + xl_rowcol_to_cell(self.hw_row["hbm_bandwidth"], self.hw_col[hw.name], True, True)
            self.text(ws, r, 0, hw.name)
            cells = [("=$B$2", xmin), (f"=$B$2*{bw}", xmin * W), (f"={pk}/{bw}", P / W),
                     (f"={pk}", P), ("=$B$3", xmax), (f"={pk}", P)]
            for c, (f, v) in enumerate(cells):
                ws.write_formula(r, 1 + c, f, self.fmt["eng"], v)
                self.formula_cells += 1
            # a chart series needs x and y in columns: lay the 3 points out vertically too
            base = 30 + 4 * j
            self.text(ws, base, 8, f"{hw.name} (chart series)")
            for k in range(3):
                ws.write_formula(base + k, 9, "=" + xl_rowcol_to_cell(r, 1 + 2 * k), self.fmt["eng"], cells[2 * k][1])
                ws.write_formula(base + k, 10, "=" + xl_rowcol_to_cell(r, 2 + 2 * k), self.fmt["eng"], cells[2 * k + 1][1])
                self.formula_cells += 2
            color = colors[j % len(colors)]
            chart.add_series({
                "name": f"{hw.name} roof", "categories": ["Roofline", base, 9, base + 2, 9],
                "values": ["Roofline", base, 10, base + 2, 10],
                "line": {"color": color, "width": 1.75}, "marker": {"type": "none"}})
        # ops on the active chip: x = intensity, y = flops / t_lower
        pr = 30 + 4 * len(self.hardware) + 1
        self.text(ws, pr - 1, 8, f"ops on {self.active.name}", self.fmt["bold"])
        self.text(ws, pr - 1, 9, "intensity", self.fmt["head"])
        self.text(ws, pr - 1, 10, "achieved FLOP/s", self.fmt["head"])
        ic, fc, tc = self.ops_col["intensity"], self.ops_col["flops"], self.ops_col["t_lower"]
        for i, row in enumerate(self.rows):
            v = row.values
            self.text(ws, pr + i, 8, row.op.name)
            ws.write_formula(pr + i, 9, "=Ops!" + xl_rowcol_to_cell(1 + i, ic), self.fmt["eng"], _num(v["intensity"]))
            ws.write_formula(pr + i, 10, f"=Ops!{xl_rowcol_to_cell(1 + i, fc)}/Ops!{xl_rowcol_to_cell(1 + i, tc)}",
                             self.fmt["eng"], _num(v["flops"] / v["t_lower"]) if v["t_lower"] else "#DIV/0!")
            self.formula_cells += 2
        if self.rows:
            chart.add_series({
                "name": f"ops on {self.active.name}",
                "categories": ["Roofline", pr, 9, pr + len(self.rows) - 1, 9],
                "values": ["Roofline", pr, 10, pr + len(self.rows) - 1, 10],
                "line": {"none": True},
                "marker": {"type": "circle", "size": 7, "fill": {"color": "#000000"},
                           "border": {"color": "#000000"}}})
        chart.set_title({"name": f"Roofline ({dtype}); points: ops on the active chip"})
        chart.set_x_axis({"name": "arithmetic intensity [FLOP/byte]", "log_base": 10,
                          "min": xmin, "max": xmax, "major_gridlines": {"visible": True},
                          "num_format": "0.E+0", "crossing": xmin})
        chart.set_y_axis({"name": "attainable FLOP/s", "log_base": 10,
                          "major_gridlines": {"visible": True}, "num_format": "0.E+0"})
        chart.set_legend({"position": "right"})
        chart.set_size({"width": 900, "height": 520})
        ws.insert_chart(r0 + len(self.hardware) + 2, 0, chart)
        ws.set_column(0, 0, 16)
        ws.set_column(1, 12, 12)


def _show(v):
    if isinstance(v, float):
        return fmt_si(v)
    return "" if v is None else str(v)


def write_workbook(path: Path, workloads, hardware, active: str | None = None) -> Path:
    """Write the workbook atomically; return its path. Raises SpecError on bad input/paths."""
    path = check_output(Path(path))
    with atomic_path(path) as tmp:
        w = _Writer(tmp, list(workloads), list(hardware), active)
        w.write()
    return path


def write_workbook_stats(path: Path, workloads, hardware, active=None) -> int:
    """Write and return the number of formula cells (for the benchmark)."""
    path = check_output(Path(path))
    with atomic_path(path) as tmp:
        w = _Writer(tmp, list(workloads), list(hardware), active)
        w.write()
    return w.formula_cells
