"""Hardware: one column per chip, one row per parameter (inputs, each with its citation)."""

from __future__ import annotations

from xlsxwriter.utility import xl_rowcol_to_cell

from .... import precision
from ....engine import hw_env

NAME = "Hardware"
HW_UNITS = {"hbm_bandwidth": "B/s", "hbm_capacity": "B", "onchip_memory": "B",
            "matmul_tile_m": "elements", "matmul_tile_k": "elements", "matmul_tile_n": "elements",
            "flash_block_q": "rows", "link_bandwidth": "B/s one-way/link", "hop_latency": "s",
            "links_per_chip": "links", "scale_out_bandwidth": "B/s per NIC",
            "dcn_bandwidth": "B/s per chip"}
INTERCONNECT = {"link_bandwidth", "hop_latency", "links_per_chip", "scale_out_bandwidth",
                "dcn_bandwidth"}
INTEGER_PARAMS = ("matmul_tile_m", "matmul_tile_k", "matmul_tile_n", "flash_block_q", "links_per_chip")
SOURCE_PREFIXES = ("peak_flops", "vector_flops", "transcendental_flops", "matmul_tile")


def unit(p: str) -> str:
    return HW_UNITS.get(p, "FLOP/s" if p.startswith(("peak", "vector", "transcendental", "matrix_rate"))
                        else "")


def number_format(p: str) -> str | None:
    """The format key of a parameter's cells (None: General, e.g. a fitted exponent)."""
    if p in INTEGER_PARAMS:
        return "int"
    u = unit(p)
    return {"B": "size", "s": "time"}.get(u) or ("rate" if u.startswith(("B/s", "FLOP/s")) else None)


def wanted(data) -> bool:
    return True


def write(book, ws, data, layout):
    book.text(ws, 0, 0, "parameter", "head")
    book.text(ws, 0, 1, "unit", "head")
    book.text(ws, 1, 0, "kind")
    for hw in data.hardware:
        c = layout.hw_col[hw.name]
        book.text(ws, 0, c, hw.name, "head")
        book.text(ws, 1, c, hw.kind, "center")
    last = 1 + len(data.hardware)
    notes = last + 1
    book.text(ws, 0, notes, "note", "head")
    for p in data.hw_params:
        r = layout.hw_row[p]
        book.text(ws, r, 0, p)
        book.text(ws, r, 1, unit(p))
        key = next((f for f in SOURCE_PREFIXES if p.startswith(f)), "interconnect" if p in INTERCONNECT else p)
        missing = []
        for hw in data.hardware:
            v = hw_env(hw).get(p)
            c = layout.hw_col[hw.name]
            if v is None:
                missing.append(hw.name)
                ws.write_blank(r, c, None, book.fmt["input"])
                continue
            if p in precision.RATE_NAMES:  # derived from this chip's own cells
                book.formula(ws, r, c, precision.rate_exprs(hw)[p],
                             lambda n, c=c: xl_rowcol_to_cell(layout.hw_row[n], c), v, "rate")
                continue
            ws.write_number(r, c, v, book.fmt["input_" + (number_format(p) or "text")])
            src = hw.sources.get(key)
            if src:
                ws.write_comment(r, c, f"{hw.name} {p}: " + ("; ".join(src) if isinstance(src, list) else src),
                                 {"x_scale": 3, "y_scale": 2})
        if missing:
            book.text(ws, r, notes, f"blank: {', '.join(missing)} has no value", "note")
    ws.set_column(0, 0, 22)
    ws.set_column(1, 1, 16)
    ws.set_column(2, last, 16)
    ws.set_column(notes, notes, 30)
    ws.freeze_panes(1, 2)
    book.print_setup(ws, (0, 0))
