"""Plan: perfmodel plan's best configurations, one row each; rank 1 is the book's model (its
Model sheet follows). Derived columns are live formulas over the row's other cells (the formula
layer's expressions in the table's ``attrs["formulas"]``: tokens/s per chip, the latency)."""

from __future__ import annotations

import numpy as np

from xlsxwriter.utility import xl_rowcol_to_cell

from ....formula import to_excel
from ..book import FORMATS

NAME = "Plan"
TOP = 3  # the first configuration's row
# number format per column (book.NUMBER_FORMATS keys): book.FORMATS' (times, tokens/s, bytes,
# USD), these counts, others as "real"
FORMAT = {**{k: f for k, (_, f) in FORMATS.items()},
          "batch": "int", "chips": "int", "rank": "int", "microbatches": "int", "grad_accum": "int"}


def wanted(data) -> bool:
    return data.plan is not None


def write(book, ws, data, layout):
    df = data.plan
    formulas = df.attrs.get("formulas", {})
    book.text(ws, 0, 0, "perfmodel plan: the best configurations (rank 1 is this book's model; "
                        "derived columns are formulas over the row)", "title")
    cols = list(df.columns)
    header = book.header(ws, TOP - 1, cols)
    for i, rec in enumerate(df.itertuples(index=False)):
        r = TOP + i
        cell = {c: xl_rowcol_to_cell(r, j) for j, c in enumerate(cols)}
        for j, c in enumerate(cols):
            v = rec[j]
            if c in formulas:
                book.write_formula(ws, r, j, to_excel(formulas[c], cell.__getitem__), float(v),
                                   FORMAT.get(c, "real"))
            elif isinstance(v, (bool, np.bool_)):
                ws.write_boolean(r, j, bool(v), book.fmt["bool"])
            elif isinstance(v, (int, float, np.integer, np.floating)):
                book.number(ws, r, j, v, FORMAT.get(c, "real"))
            else:
                book.text(ws, r, j, v)
    # the mesh and parallelism texts ("dp:2,fsdp:16,tp:8") as wide as they are
    book.fit_columns(ws, header, [df[c].to_numpy() for c in cols], least=11)
    ws.freeze_panes(TOP, 0)
    book.print_setup(ws, (TOP - 1, TOP - 1))
