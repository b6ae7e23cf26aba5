"""Terminal tables: engineering notation for people, one row per op plus a total."""

from __future__ import annotations

from ..units import fmt_si

COLUMNS = [  # (field, header, unit or None for a plain number, percent?)
    ("flops", "FLOPs", "", False),
    ("hbm_bytes", "HBM bytes", "B", False),
    ("intensity", "AI", None, False),
    ("t_compute", "t_compute", "s", False),
    ("t_memory", "t_memory", "s", False),
    ("t_lower", "t_lower", "s", False),
    ("t_upper", "t_upper", "s", False),
    ("bound", "bound", None, False),
    ("mfu", "MFU", None, True),
]


def _cell(v, unit, pct):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if pct:
        return f"{100 * v:.1f}%"
    if unit is None:
        return f"{v:.4g}"
    return fmt_si(v, unit)


def roofline_table(title: str, rows: list[dict], total: dict) -> str:
    cols = list(COLUMNS)
    if any("fits_onchip" in r for r in rows):
        cols.append(("fits_onchip", "fits on chip", None, False))
    head = ["op"] + [c[1] for c in cols]
    body = [[r["name"]] + [_cell(r.get(f), u, p) for f, _, u, p in cols] for r in rows]
    body.append(["total"] + [_cell(total.get(f), u, p) if f in total else "" for f, _, u, p in cols])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [title, line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body[:-1]] + [line(["-" * w for w in widths]), line(body[-1])]
    return "\n".join(out)
