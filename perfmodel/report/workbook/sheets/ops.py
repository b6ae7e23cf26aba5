"""Ops: one row per op on the active chip; every derived cell is its template's formula over
the op's Workload cells and the Inputs names."""

from __future__ import annotations

from xlsxwriter.utility import xl_col_to_name

from ..book import FORMATS, cached
from ..layout import OPS_FIXED

NAME = "Ops"


def wanted(data) -> bool:
    return True


def derived_rows(book, ws, layout, items, col, key, hw_name, input_cell=None):
    """Write each item's derived columns from its template, rendered once per template and
    sheet: ``items`` = [(sheet row, op index, ChipOp, {input: ref} or None)]; ``hw_name(p)``
    is how a hardware parameter is written on this sheet; ``input_cell(field)``, when given,
    how an input is (a template over the row), else the item's refs."""
    letters = {k: xl_col_to_name(c) for k, c in col.items()}

    def resolve(name):
        if name in layout.in_col:
            return input_cell(name) if input_cell else "{in_" + name + "}"
        if name in letters:
            return letters[name] + "{_r}"
        return hw_name(name)
    fmts = {k: book.fmt.get(FORMATS.get(k, ("", None))[1]) for k in col}
    center = book.fmt["center"]
    plans: dict[int, list] = {}  # per template: [(column, its row-template text, cell format)]
    write = ws.write_formula
    for r, i, chip_op, in_refs in items:
        t = chip_op.template
        cells = plans.get(id(t))
        if cells is None:
            cells = plans[id(t)] = [(k, col[k], t.text(key, k, resolve), fmts[k]) for k in t.exprs]
        fill = {"_r": str(r + 1)}
        if in_refs:
            fill.update({"in_" + k: v for k, v in in_refs.items()})
        values = chip_op.values
        for k, c, text, fmt in cells:
            v = values[k]
            write(r, c, text.format_map(fill), center if v.__class__ is str else fmt, cached(v))
        book.formula_cells += len(cells)


def flag_infeasible(book, ws, col, rows: list[int]):
    """Red where an op's on-chip working set does not fit (only cells that hold the flag: a
    blank reads as FALSE)."""
    if "fits_onchip" not in col:
        return
    c = col["fits_onchip"]
    runs: list[list[int]] = []
    for r in sorted(rows):
        if runs and runs[-1][1] == r - 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    for a, b in runs:
        ws.conditional_format(a, c, b, c, {"type": "cell", "criteria": "==", "value": "FALSE",
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
        items.append((r, row.index, chip_op,
                      {k: layout.input_ref(row.index, k) for k in chip_op.inputs} if layout.in_name else None))
    # without per-op names an input is the Workload cell of the same row (Workload row = Ops row)
    unnamed = None if layout.in_name else (lambda k: f"Workload!{xl_col_to_name(layout.in_col[k])}" + "{_r}")
    derived_rows(book, ws, layout, items, col, "Ops", lambda p: p, unnamed)
    flag_infeasible(book, ws, col, [1 + r.index for r in data.rows if "fits_onchip" in r.values])
    ws.set_column(0, 0, 10)
    ws.set_column(1, 2, 20)
    ws.set_column(3, 4, 11)
    ws.set_column(len(OPS_FIXED), len(cols), 13)
    for k in cols:  # a long name (flops_transcendental) on one line, its unit below it
        if len(k) + 2 > 13:
            ws.set_column(col[k], col[k], len(k) + 2)
    ws.freeze_panes(1, 3)
    ws.autofilter(0, 0, len(data.rows), len(cols) - 1)
    book.print_setup(ws, (0, 0))
