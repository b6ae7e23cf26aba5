"""Inputs: the active chip (a drop-down) and its parameters as defined names, each a lookup
into Hardware unless the user types an override beside it."""

from __future__ import annotations

import numpy as np

from ....engine import hw_env
from ....formula import Ref, evaluate, is_blank, lookup, where
from .hardware import number_format, unit

NAME = "Inputs"

# the value used: the override when one is typed, else the active chip's Hardware value (blank
# when the chip has none)
VALUE_USED = where(is_blank(Ref("override")),
                   where(is_blank(lookup(Ref("chip_values"), Ref("chips"), Ref("active_chip"))), "",
                         lookup(Ref("chip_values"), Ref("chips"), Ref("active_chip"))),
                   Ref("override"))


def wanted(data) -> bool:
    return True


def write(book, ws, data, layout):
    book.text(ws, 0, 0, "Active chip and its parameters (defined names used by every formula on Ops)", "title")
    book.text(ws, 1, 0, "active_chip", "bold")
    ws.write_string(1, 1, data.active.name, book.fmt["input_text"])
    ws.data_validation(1, 1, 1, 1, {"validate": "list", "source": "=" + layout.chip_range,
                                    "ignore_blank": False})
    book.wb.define_name("active_chip", "=Inputs!$B$2")
    book.text(ws, 1, 2, "<- pick a chip from the drop-down")
    for c, h in enumerate(["parameter", "value used", "override", "unit", "note"]):
        book.text(ws, 2, c, h, "head")
    chips = np.asarray(data.chips)
    envs = [hw_env(h) for h in data.hardware]
    for p in data.hw_params:
        r = layout.inputs_row[p]
        book.text(ws, r, 0, p)
        env = {"override": np.nan, "chips": chips, "active_chip": data.active.name,
               "chip_values": np.asarray([e.get(p, np.nan) for e in envs], dtype=float)}
        cells = {"override": f"C{r + 1}", "chips": layout.chip_range, "active_chip": "active_chip",
                 "chip_values": layout.hw_param_range(p)}
        v = evaluate(VALUE_USED, env)
        v = "" if isinstance(v, (str, np.str_)) else float(v)
        fk = number_format(p)
        book.formula(ws, r, 1, VALUE_USED, cells.__getitem__, v, fk)
        ws.write_blank(r, 2, None, book.fmt["input_" + (fk or "text")])
        book.text(ws, r, 3, unit(p))
        book.wb.define_name(p, f"=Inputs!$B${r + 1}")
        if any(p not in e for e in envs):
            book.text(ws, r, 4, "blank when the active chip has no value for it", "note")
    ws.set_column(0, 0, 26)
    ws.set_column(1, 2, 16)
    ws.set_column(3, 3, 18)
    ws.set_column(4, 4, 44)
    book.print_setup(ws, (2, 2))
