"""Workload: one row per op, its numeric fields as input cells (named op_<name>.<field>)."""

from __future__ import annotations

from xlsxwriter.utility import xl_rowcol_to_cell

from .... import precision
from ..layout import WORKLOAD_FIXED

NAME = "Workload"
INTEGER_FIELDS = {"m", "k", "n", "batch", "seq", "kv_seq", "heads", "kv_heads", "head_dim", "repeat",
                  "elem_bytes", "inputs", "outputs", "n_devices", "n_link", "n_scale_out", "n_dcn",
                  "step_hops", "causal", "elements"}


def wanted(data) -> bool:
    return True


def write(book, ws, data, layout):
    cols = WORKLOAD_FIXED + layout.in_fields
    book.header(ws, 0, cols)
    fmt = {k: book.fmt["input_int"] if k in INTEGER_FIELDS else book.fmt["input"] for k in layout.in_fields}
    for row in data.rows:
        r = 1 + row.index
        op = row.op
        for c, v in enumerate([row.workload, op.name, op.kind, op.dtype,
                               getattr(op, "impl", "") or getattr(op, "collective", ""),
                               precision.rate_name(op)]):
            if v:
                book.text(ws, r, c, v)
        for k, v in row.inputs.items():
            c = layout.in_col[k]
            v = float(v)
            ws.write_number(r, c, v, fmt[k] if v.is_integer() else book.fmt["input"])
            name = layout.in_name.get((row.index, k))
            if name:
                book.wb.define_name(name, "=Workload!" + xl_rowcol_to_cell(r, c, True, True))
    ws.set_column(0, 1, 20)
    ws.set_column(2, len(cols), 10)
    ws.set_column(len(WORKLOAD_FIXED) - 1, len(WORKLOAD_FIXED) - 1, 24)  # rate names
    for k, c in layout.in_col.items():
        ws.set_column(c, c, max(10, len(k) + 2))
    ws.freeze_panes(1, 2)
    book.print_setup(ws, (0, 0))
