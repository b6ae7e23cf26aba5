"""The Excel file being written: cell formats per quantity, write helpers, print setup.

We use xlsxwriter rather than openpyxl because it stores each formula's cached value (the number
Python computed), so viewers that do not recalculate (pandas.read_excel, file previews) still
show numbers, and it writes native charts with log axes, data validation and defined names.
"""

from __future__ import annotations

import math

import numpy as np
import xlsxwriter
from xlsxwriter import worksheet as _xw
from xlsxwriter.worksheet import Worksheet

from ...formula import to_excel

# column -> (unit shown in the header, number format key)
FORMATS = {
    "flops": ("FLOP", "size"), "flops_exec": ("FLOP", "size"), "hbm_bytes": ("B", "size"),
    "onchip_bytes": ("B", "size"), "comm_bytes": ("B", "size"), "q_block": ("rows", "int"),
    "intensity": ("FLOP/B", "real"), "ridge": ("FLOP/B", "real"),
    "t_compute": ("s", "time"), "t_memory": ("s", "time"), "t_comm": ("s", "time"),
    "t_latency": ("s", "time"), "t_bandwidth": ("s", "time"), "t_lower": ("s", "time"),
    "t_upper": ("s", "time"), "t_calibrated": ("s", "time"), "algbw": ("B/s", "rate"),
    "busbw": ("B/s", "rate"), "mfu": ("%", "pct"), "mbu": ("%", "pct"), "hops": ("", "int"),
    "fits_onchip": ("", "bool"), "bound": ("", "center"), "flops_vector": ("FLOP", "size"),
    "t_link": ("s", "time"), "t_scale_out": ("s", "time"), "t_dcn": ("s", "time"),
    "peak_used": ("FLOP/s", "rate"), "flops_transcendental": ("FLOP", "size"),
    # a transformer step (Model, Plan, the sweep's Totals)
    "t_step": ("s", "time"), "ttft": ("s", "time"), "t_per_token": ("s", "time"),
    "tokens_per_s": ("tokens/s", "tput"), "tokens_per_s_per_chip": ("tokens/s", "tput"),
    "memory_bytes_per_chip": ("B", "size"), "usd_per_mtok": ("USD", "usd"), "hfu": ("%", "pct"),
    "fits_memory": ("", "bool"),
}
NUMBER_FORMATS = {
    "int": "0",                # plain integers (tile sizes, link counts, hops)
    "count": "[<1000000000000000]#,##0;0.00E+00",  # tokens, chips, parameters: separators
    # FLOPs and bytes: as they are below 10^5, else engineering notation with 3-5 significant
    # digits (268.44E+6 B = 268 MB, 9.66E+9 B = 9.66 GB), the unit in the column header
    "size": "[<100000]#,##0;##0.00E+0",
    "real": "#,##0.00",        # intensities, ratios of counts
    # seconds: 0.01180 and 0.00118 as decimals (3-5 significant digits), 2.580 from 1 s on,
    # below 1 ms 3 significant digits in scientific notation (1.23E-05)
    "time": "[<0.001]0.00E+00;[<1]0.00000;#,##0.000",
    "rate": "0.00E+00",        # FLOP/s, B/s, 3 significant digits
    "tput": "[<10]0.00;#,##0",  # tokens per second
    "usd": "[<1]0.0000;#,##0.00",  # USD per million tokens
    "pct": "0.0%",             # utilisations, speed-ups, shares
    "bool": '"yes";"yes";"no"',
}
HEAD = {"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"}
INPUT = {"bg_color": "#FFF2CC", "border": 1}


_FAST = {getattr(_xw, k, None) for k in ("CellNumberTuple", "CellStringTuple", "CellFormulaTuple")}


class FastWorksheet(Worksheet):
    """xlsxwriter scans every formula with ~60 regular expressions for Excel 365 functions
    that need a prefix, and for dynamic arrays; the formula layer renders none of those
    (formula._FUNCS), so a formula at (row, column) is stored as is: most of the time of a
    large workbook went there."""

    def _prepare_formula(self, formula, expand_future_functions=False):
        return formula[1:] if formula.startswith("=") else formula

    if hasattr(_xw, "CellFormulaTuple"):  # else xlsxwriter's own path (with its scans)
        def write_formula(self, row, col, formula, cell_format=None, value=0):
            if not isinstance(row, int) or self.constant_memory or self._check_dimensions(row, col):
                return super().write_formula(row, col, formula, cell_format, value)
            self.table[row][col] = _xw.CellFormulaTuple(
                formula[1:] if formula.startswith("=") else formula, cell_format, value)
            return 0

        def _write_cell(self, row, col, cell):
            # the common cells (a formula with a number, a number, a shared string; each with
            # a format) written exactly as xlsxwriter writes them, without its per-attribute
            # escaping (a cell address and a format index need none)
            kind = cell.__class__
            if cell.format is None or self.constant_memory or kind not in _FAST:
                return super()._write_cell(row, col, cell)
            head = f'<c r="{_xw.xl_rowcol_to_cell_fast(row, col)}" s="{cell.format._get_xf_index()}"'
            if kind is _xw.CellNumberTuple:
                self.fh.write(f"{head}><v>{cell.number:.16G}</v></c>")
            elif kind is _xw.CellStringTuple:
                self.fh.write(f'{head} t="s"><v>{cell.string}</v></c>')
            elif cell.value.__class__ is float:
                f = cell.formula
                if "&" in f or "<" in f or ">" in f:
                    f = f.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                self.fh.write(f"{head}><f>{f}</f><v>{cell.value}</v></c>")
            else:
                super()._write_cell(row, col, cell)


def cached(v):
    """Python value -> what xlsxwriter stores as a formula's cached result."""
    if v is None:
        return "#DIV/0!"
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (str, np.str_)):
        return str(v)
    v = float(v)
    return v if math.isfinite(v) else "#DIV/0!"


class Book:
    def __init__(self, path):
        self.wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False,
                                                  "strings_to_numbers": False})
        self.formula_cells = 0
        f = self.wb.add_format
        self.fmt = {k: f({"num_format": v}) for k, v in NUMBER_FORMATS.items()}
        self.fmt.update({f"input_{k}": f({**INPUT, "num_format": v}) for k, v in NUMBER_FORMATS.items()})
        self.fmt["bool"] = f({"num_format": NUMBER_FORMATS["bool"], "align": "center"})
        self.fmt.update({
            "center": f({"align": "center"}), "text": f({}), "head": f(HEAD),
            "input": f({**INPUT, "num_format": "General"}),
            "input_int": f({**INPUT, "num_format": "0"}),
            "input_text": f(INPUT),  # also a number in General format
            "title": f({"bold": True, "font_size": 14}), "wrap": f({"text_wrap": True, "valign": "top"}),
            "bold": f({"bold": True}), "bad": f({"bg_color": "#F8CBAD", "font_color": "#9C0006"}),
            "note": f({"italic": True, "font_color": "#595959"}),
        })
        self.ws: dict[str, Worksheet] = {}

    def add_sheet(self, name: str) -> Worksheet:
        self.ws[name] = self.wb.add_worksheet(name, worksheet_class=FastWorksheet)
        return self.ws[name]

    def close(self):
        self.wb.close()

    # ---- cells ------------------------------------------------------------------------------
    def text(self, ws, r, c, s, fmt=None):
        ws.write_string(r, c, str(s), self.fmt[fmt] if isinstance(fmt, str) else fmt or self.fmt["text"])

    def number(self, ws, r, c, v, fmt=None):
        ws.write_number(r, c, float(v), self.fmt[fmt] if fmt else None)

    def fmt_of(self, key, value=None):
        if isinstance(value, (str, np.str_)) and key not in ("center",):
            return self.fmt["center"]
        return self.fmt[key] if key else None

    def formula(self, ws, r, c, expr, resolve, value, fmt=None):
        """An expression tree rendered by the formula layer, its value cached."""
        self.write_formula(ws, r, c, to_excel(expr, resolve), value, fmt)

    def write_formula(self, ws, r, c, text, value, fmt=None):
        """Formula text from the formula layer (or a plain reference), its value cached."""
        ws.write_formula(r, c, text, self.fmt_of(fmt, value), cached(value))
        self.formula_cells += 1

    def ref(self, ws, r, c, address, value, fmt=None):
        """A plain reference to another cell or name (no function, no operator)."""
        self.write_formula(ws, r, c, "=" + address, value, fmt)

    def para(self, ws, r, c, s, width_chars, fmt=None):
        """Wrapped text with a row height LibreOffice will honour (it does not autofit)."""
        self.text(ws, r, c, s, fmt or "wrap")
        lines = max(1, math.ceil(len(str(s)) / max(1, width_chars * 1.1)))
        if lines > 1:
            ws.set_row(r, 15 * lines)

    def header(self, ws, r, cols: list[str], c0: int = 0) -> list[str]:
        """Column names with their units ("t_step\\n[s]"); returns the texts written."""
        texts = [f"{name}\n[{FORMATS[name][0]}]" if FORMATS.get(name, ("",))[0] else name
                 for name in cols]
        for c, text in enumerate(texts):
            self.text(ws, r, c0 + c, text, "head")
        ws.set_row(r, 30)
        return texts

    @staticmethod
    def fit_columns(ws, header: list[str], columns: list, least: int = 12, most: int = 48):
        """Widen each column to its header's longest line and its longest text value (numbers
        fit the formats above in ``least`` characters); ``columns``: each column's values."""
        for j, (h, values) in enumerate(zip(header, columns)):
            w = max([len(line) for line in str(h).split("\n")]
                    + [len(v) for v in values if isinstance(v, str)])
            ws.set_column(j, j, min(most, max(least, w + 2)))

    # ---- printing -----------------------------------------------------------------------------
    @staticmethod
    def print_setup(ws, header_rows: tuple[int, int] | None = None):
        """Landscape A4, one page wide (as many pages down as it takes), headers repeated."""
        ws.set_landscape()
        ws.set_paper(9)
        ws.fit_to_pages(1, 0)
        ws.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
        if header_rows is not None:
            ws.repeat_rows(*header_rows)
        ws.set_footer("&L&A&R&P / &N")
