"""Sources: the citation of every hardware number, and published values that disagree."""

from __future__ import annotations

from ....units import fmt_si

NAME = "Sources"


def wanted(data) -> bool:
    return True


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


def write(book, ws, data, layout):
    book.text(ws, 0, 0, "Citations per chip and field", "title")
    for c, h in enumerate(["chip", "field", "source"]):
        book.text(ws, 1, c, h, "head")
    r = 2
    for hw in data.hardware:
        for f, s in hw.sources.items():
            book.text(ws, r, 0, hw.name)
            book.text(ws, r, 1, f)
            book.para(ws, r, 2, "; ".join(s) if isinstance(s, list) else s, 70)
            r += 1
    r += 1
    book.text(ws, r, 0, "Disagreements: other published values (the engine uses 'value used', which is also "
                        "on Hardware)", "title")
    r += 1
    for c, h in enumerate(["chip", "field", "value used", "alternative", "source", "note"]):
        book.text(ws, r, c, h, "head")
    r += 1
    for hw in data.hardware:
        dump = hw.model_dump()  # python mode: quantities keep their units
        for f, alts in hw.alternatives.items():
            used = dump
            for part in f.split("."):
                used = used.get(part) if isinstance(used, dict) else None
            for a in alts:
                book.text(ws, r, 0, hw.name)
                book.text(ws, r, 1, f)
                book.text(ws, r, 2, _show(used))
                book.text(ws, r, 3, str(a.value))
                book.para(ws, r, 4, a.source + (f" ({a.note})" if a.note else ""), 60)
                r += 1
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 28)
    ws.set_column(2, 2, 70)
    ws.set_column(3, 3, 16)
    ws.set_column(4, 4, 60)
    book.print_setup(ws, (1, 1))
