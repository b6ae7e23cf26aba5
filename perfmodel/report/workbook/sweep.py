"""The sweep's values workbook (Sweep: one row per configuration, chip and op; Totals: one
row per configuration and chip): numbers, not formulas."""

from __future__ import annotations

from pathlib import Path

import xlsxwriter

from ...atomic import atomic_path
from .book import FORMATS, HEAD, NUMBER_FORMATS, Book


def write_sweep_book(path: Path, table, totals, fields: list[str]) -> Path:
    with atomic_path(Path(path)) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "nan_inf_to_errors": True})
        fmt = {k: wb.add_format({"num_format": v}) for k, v in NUMBER_FORMATS.items()}
        head = wb.add_format(HEAD)
        for name, df in (("Sweep", table), ("Totals", totals)):
            ws = wb.add_worksheet(name)
            header = []
            for j, c in enumerate(df.columns):
                unit = FORMATS.get(c, ("", ""))[0]
                header.append(f"{c}\n[{unit}]" if unit else str(c))
                ws.write_string(0, j, header[-1], head)
                f = None if c in fields else fmt.get(FORMATS.get(c, ("", "rate"))[1], fmt["rate"])
                for i, v in enumerate(df[c].to_numpy()):
                    if isinstance(v, str):
                        ws.write_string(1 + i, j, v)
                    else:
                        ws.write_number(1 + i, j, float(v), f)
            # widths from the first rows' texts (a sweep repeats its labels)
            Book.fit_columns(ws, header, [df[c].to_numpy()[:1000] for c in df.columns], least=13)
            ws.set_row(0, 30)
            ws.freeze_panes(1, 0)
            ws.set_landscape()
            ws.fit_to_pages(1, 0)
            ws.repeat_rows(0)
        wb.close()
    return Path(path)
