"""Normalised text dump of a workbook (cell -> formula or value, number format) for goldens."""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl


def dump(path: Path) -> str:
    wb = openpyxl.load_workbook(path)  # formulas as written
    out = []
    for ws in wb.worksheets:
        out.append(f"## {ws.title}")
        for row in ws.iter_rows():
            for c in row:
                if c.value is None:
                    continue
                v = c.value
                if isinstance(v, float):
                    v = f"{v:.12g}"
                v = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<date>", str(v)).replace("\n", "\\n")
                fmt = "" if c.number_format == "General" else f"  [{c.number_format}]"
                out.append(f"{c.coordinate}: {v}{fmt}")
    for name, dn in sorted(wb.defined_names.items()):
        out.append(f"name {name} = {dn.attr_text}")
    return "\n".join(out) + "\n"
