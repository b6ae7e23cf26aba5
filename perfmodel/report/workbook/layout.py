"""Where every cell that another sheet refers to sits, decided before any sheet is written.

Sheets receive the ``Layout`` and read their own and others' positions from it; none creates a
position another sheet needs as a side effect, so sheets can be written in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .data import BookData

MAX_NAMED_OPS = 1000  # per-op defined names beyond this slow Excel down more than they help
HW_FIRST_ROW = 2      # Hardware: row 0 chip names, row 1 kind, then one row per parameter
INPUTS_FIRST_ROW = 3  # Inputs: title, active chip, header, then one row per parameter
OPS_FIXED = ["chip", "workload", "op", "kind", "dtype"]
BYCHIP_FIXED = ["chip", "workload", "op", "dtype"]
# rate: the named hardware rate that prices the row (perfmodel.precision), e.g.
# matrix_rate_fp32_high; its value follows the active chip
WORKLOAD_FIXED = ["workload", "op", "kind", "dtype", "impl", "rate"]


@dataclass(frozen=True)
class Layout:
    sheets: list[str]
    hw_row: dict          # parameter -> Hardware row
    hw_col: dict          # chip -> Hardware column
    inputs_row: dict      # parameter -> Inputs row (its defined name points there)
    in_fields: list[str]  # Workload input columns
    in_col: dict          # field -> Workload column
    in_name: dict         # (op index, field) -> defined name
    ops_cols: list[str]   # Ops columns (fixed, cost, roofline)
    bychip_cols: list[str]
    bychip_row: dict      # (chip, op index) -> ByChip row

    @cached_property
    def ops_col(self) -> dict:
        return {k: i for i, k in enumerate(self.ops_cols)}

    @cached_property
    def bychip_col(self) -> dict:
        return {k: i for i, k in enumerate(self.bychip_cols)}

    @property
    def chip_range(self) -> str:
        """Hardware's row of chip names (a plain range: the drop-down's list)."""
        cols = sorted(self.hw_col.values())
        return f"Hardware!${xl_col_to_name(cols[0])}$1:${xl_col_to_name(cols[-1])}$1"

    def hw_cell(self, param: str, chip: str) -> str:
        return "Hardware!" + xl_rowcol_to_cell(self.hw_row[param], self.hw_col[chip], True, True)

    def hw_param_range(self, param: str) -> str:
        cols = sorted(self.hw_col.values())
        r = self.hw_row[param] + 1
        return f"Hardware!${xl_col_to_name(cols[0])}${r}:${xl_col_to_name(cols[-1])}${r}"

    def input_ref(self, i: int, name: str) -> str:
        return self.in_name.get((i, name)) or "Workload!" + xl_rowcol_to_cell(1 + i, self.in_col[name])

    def ops_cell(self, i: int, column: str) -> str:
        return "Ops!" + xl_rowcol_to_cell(1 + i, self.ops_col[column])

    def source_column(self, chip: str, column: str) -> str:
        """Sheet and column letter of ``column`` for ops on ``chip`` (ByChip, or Ops)."""
        if "ByChip" not in self.sheets:
            return "Ops!" + xl_col_to_name(self.ops_col[column])
        return "ByChip!" + xl_col_to_name(self.bychip_col[column])

    def source_row(self, chip: str, i: int) -> int:
        """0-based row of op ``i`` on ``chip`` on the sheet source_column names."""
        return self.bychip_row[(chip, i)] if "ByChip" in self.sheets else 1 + i

    def bychip_cell(self, chip: str, i: int, column: str) -> str:
        """Op ``i``'s cell on ``chip``: ByChip's, or Ops' in a one-chip book (no ByChip)."""
        if "ByChip" not in self.sheets:
            return self.ops_cell(i, column)
        return "ByChip!" + xl_rowcol_to_cell(self.bychip_row[(chip, i)], self.bychip_col[column])


def _name_stem(op_name: str, i: int, used: set) -> str:
    """An Excel-safe defined-name stem for an op (letters, digits, _), unique in the book."""
    stem = "".join(ch if ch.isalnum() else "_" for ch in op_name).strip("_").lower() or "op"
    stem = f"op_{stem}"[:60]
    while stem in used:
        stem = f"{stem}_{i}"
    used.add(stem)
    return stem


def _columns(rows, chip=None) -> tuple[list, list]:
    cost, roof = [], []
    for r in rows:
        for c in (r.by_chip if chip is None else [chip]):
            if c not in r.by_chip:
                continue
            t = r.by_chip[c].template
            for k in t.exprs:
                dest = roof if k in _ROOF else cost
                if k not in dest:
                    dest.append(k)
    return cost, roof


def _roof_names() -> set:
    from ...roofline import COLUMNS

    return {k for k, _ in COLUMNS} | {"t_calibrated"}


_ROOF = _roof_names()


def plan(data: BookData, sheets: list[str]) -> Layout:
    chips = data.chips
    hw_col = {c: 2 + j for j, c in enumerate(chips)}
    hw_row = {p: HW_FIRST_ROW + i for i, p in enumerate(data.hw_params)}
    inputs_row = {p: INPUTS_FIRST_ROW + i for i, p in enumerate(data.hw_params)}
    in_fields: list[str] = []
    for row in data.rows:
        for k in row.inputs:
            if k not in in_fields:
                in_fields.append(k)
    in_col = {k: len(WORKLOAD_FIXED) + i for i, k in enumerate(in_fields)}
    in_name = {}
    if len(data.rows) <= MAX_NAMED_OPS:
        used: set = set()
        for row in data.rows:
            stem = _name_stem(row.op.name, row.index, used)
            for k in row.inputs:
                in_name[(row.index, k)] = f"{stem}.{k}"
    cost, roof = _columns(data.rows, data.active.name)
    ops_cols = OPS_FIXED + cost + roof
    bcost, broof = _columns(data.rows)
    bychip_cols = BYCHIP_FIXED + bcost + broof
    bychip_row, r = {}, 1
    for chip in chips:
        for row in data.rows:
            if chip in row.by_chip:
                bychip_row[(chip, row.index)] = r
                r += 1
    return Layout(list(sheets), hw_row, hw_col, inputs_row, in_fields, in_col, in_name, ops_cols,
                  bychip_cols, bychip_row)
