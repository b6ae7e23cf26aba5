"""Ops: one row per op on the active chip; every derived cell is its template's formula over
the op's Workload cells and the Inputs names."""

from __future__ import annotations

from xlsxwriter.utility import xl_col_to_name

from ..book import FORMATS
from ..layout import OPS_FIXED

NAME = "Ops"


def wanted(data) -> bool:
    return True


def derived_rows(book, ws, layout, items, col, key, hw_name):
    """Write each item's derived columns from its template, rendered once per template and
    sheet: ``items`` = [(sheet row, op index, ChipOp, {input: ref})]; ``hw_name(p)`` is how a
    hardware parameter is written on this sheet."""
    letters = {k: xl_col_to_name(c) for k, c in col.items()}

    def resolve(name):
        if name in layout.in_col:
            return "{in_" + name + "}"
        if name in letters:
            return letters[name] + "{_r}"
        return hw_name(name)
    fmts = {k: FORMATS.get(k, ("", None))[1] for k in col}
    for r, i, chip_op, in_refs in items:
        t = chip_op.template
        fill = {"_r": str(r + 1), **{"in_" + k: v for k, v in in_refs.items()}}
        for k in t.exprs:
            v = chip_op.values[k]
            book.write_formula(ws, r, col[k], t.text(key, k, resolve).format_map(fill), v, fmts[k])


def flag_infeasible(book, ws, col, nrows):
    if "fits_onchip" in col and nrows:
        c = col["fits_onchip"]
        ws.conditional_format(1, c, nrows, c, {"type": "cell", "criteria": "==", "value": "FALSE",
                                               "format": book.fmt["bad"]})


def write(book, ws, data, layout):
    cols = layout.ops_cols
    col = layout.ops_col
    book.header(ws, 0, cols)
    active = data.active.name
    items = []
    for row in data.rows:
        r = 1 + row.index
        book.ref(ws, r, 0, "active_chip", active, "center")
        for c, v in enumerate([row.workload, row.op.name, row.op.kind, row.op.dtype], start=1):
            book.text(ws, r, c, v)
        chip_op = row.by_chip[active]
        items.append((r, row.index, chip_op, {k: layout.input_ref(row.index, k) for k in chip_op.inputs}))
    derived_rows(book, ws, layout, items, col, "Ops", lambda p: p)
    flag_infeasible(book, ws, col, len(data.rows))
    ws.set_column(0, 0, 10)
    ws.set_column(1, 2, 20)
    ws.set_column(3, 4, 11)
    ws.set_column(len(OPS_FIXED), len(cols), 13)
    ws.freeze_panes(1, 3)
    ws.autofilter(0, 0, len(data.rows), len(cols) - 1)
    book.print_setup(ws, (0, 0))
