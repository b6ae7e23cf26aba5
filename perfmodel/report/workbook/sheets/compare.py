"""Compare: t_lower and bound per chip (live from ByChip) and the speed-up over the first chip."""

from __future__ import annotations

from xlsxwriter.utility import xl_rowcol_to_cell

from ....formula import Ref, rsum
from ....roofline import speedup

NAME = "Compare"
SPEEDUP = speedup(Ref("base"), Ref("t"))
TOTAL = rsum(Ref("rows"))


def wanted(data) -> bool:
    return len(data.hardware) > 1  # one chip: Ops holds every op on it


def write(book, ws, data, layout):
    chips = data.chips
    base = chips[0]
    n = len(chips)
    title = "t_lower per chip [s] (live from ByChip)"
    if n > 1:
        title += f"; speed-up = t_lower({base}) / t_lower(chip), as a percentage"
    book.text(ws, 0, 0, title, "title")
    cols = ["workload", "op"] + [f"{c}\nt_lower [s]" for c in chips] + [f"{c}\nbound" for c in chips] + \
           [f"speed-up\n{c} / {base}" for c in chips[1:]] + ["note"]
    for c, h in enumerate(cols):
        book.text(ws, 1, c, h, "head")
    ws.set_row(1, 45)
    note_col = len(cols) - 1

    def ratio(r, j, tb, t):
        cells = {"base": xl_rowcol_to_cell(r, 2), "t": xl_rowcol_to_cell(r, 2 + j)}
        book.formula(ws, r, 2 + 2 * n + j - 1, SPEEDUP, cells.__getitem__,
                     speedup(tb, t) if t else None, "pct")

    for row in data.rows:
        r = 2 + row.index
        book.text(ws, r, 0, row.workload)
        book.text(ws, r, 1, row.op.name)
        absent = []
        for j, chip in enumerate(chips):
            c = row.by_chip.get(chip)
            if c is None:
                absent.append(chip)
                continue
            book.ref(ws, r, 2 + j, layout.bychip_cell(chip, row.index, "t_lower"), c.values["t_lower"], "time")
            book.ref(ws, r, 2 + n + j, layout.bychip_cell(chip, row.index, "bound"), c.values["bound"], "center")
        for j, chip in enumerate(chips[1:], start=1):
            if chip in row.by_chip and base in row.by_chip:
                ratio(r, j, row.by_chip[base].values["t_lower"], row.by_chip[chip].values["t_lower"])
        if absent:
            book.text(ws, r, note_col, f"blank: no {row.op.dtype} peak on {', '.join(absent)}", "note")
    r = 3 + len(data.rows)
    book.text(ws, r - 1, 0, "totals: sum of the ops' t_lower per workload (a transformer's step time, with "
                            "overlap and pipeline, is on Model)", "bold")
    for wl in data.workloads:
        rows = data.rows_of(wl.name)
        if not rows:
            continue
        book.text(ws, r, 0, "total", "bold")
        book.text(ws, r, 1, wl.name, "bold")
        totals = {}
        for j, chip in enumerate(chips):
            if all(chip in x.by_chip for x in rows):
                rng = xl_rowcol_to_cell(2 + rows[0].index, 2 + j) + ":" + xl_rowcol_to_cell(2 + rows[-1].index, 2 + j)
                totals[chip] = sum(x.by_chip[chip].values["t_lower"] for x in rows)
                book.formula(ws, r, 2 + j, TOTAL, {"rows": rng}.__getitem__, totals[chip], "time")
        for j, chip in enumerate(chips[1:], start=1):
            if base in totals and chip in totals:
                ratio(r, j, totals[base], totals[chip])
        r += 1
    ws.set_column(0, 1, 22)
    ws.set_column(2, len(cols) - 2, 11)
    ws.set_column(note_col, note_col, 30)
    ws.freeze_panes(2, 2)
    book.print_setup(ws, (1, 1))
