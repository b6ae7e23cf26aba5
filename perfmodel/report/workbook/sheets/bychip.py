"""ByChip: every op on every chip, over that chip's Hardware column (what Compare and the
roofline charts read)."""

from __future__ import annotations

from .ops import derived_rows, flag_infeasible

NAME = "ByChip"


def wanted(data) -> bool:
    return len(data.hardware) > 1  # one chip: Ops holds every op on it


def write(book, ws, data, layout):
    cols = layout.bychip_cols
    col = layout.bychip_col
    book.header(ws, 0, cols)
    n = 0
    for hw in data.hardware:
        items = []
        for row in data.rows:
            chip_op = row.by_chip.get(hw.name)
            if chip_op is None:
                continue
            r = layout.bychip_row[(hw.name, row.index)]
            for c, v in enumerate([hw.name, row.workload, row.op.name, row.op.dtype]):
                book.text(ws, r, c, v)
            # an input that differs on this chip (a collective's topology) is a number here
            refs = {k: layout.input_ref(row.index, k) if v == row.inputs.get(k) else repr(float(v))
                    for k, v in chip_op.inputs.items()}
            items.append((r, row.index, chip_op, refs))
            n = max(n, r)
        derived_rows(book, ws, layout, items, col, ("ByChip", hw.name),
                     lambda p, chip=hw.name: layout.hw_cell(p, chip))
    flag_infeasible(book, ws, col, [layout.bychip_row[(c, row.index)] for row in data.rows
                                    for c, x in row.by_chip.items() if "fits_onchip" in x.values])
    ws.set_column(0, 0, 10)
    ws.set_column(1, 2, 20)
    ws.set_column(3, len(cols), 12)
    for k in cols:  # a long name (flops_transcendental) on one line, its unit below it
        if len(k) + 2 > 12:
            ws.set_column(col[k], col[k], len(k) + 2)
    ws.freeze_panes(1, 3)
    ws.autofilter(0, 0, max(1, n), len(cols) - 1)
    book.print_setup(ws, (0, 0))
