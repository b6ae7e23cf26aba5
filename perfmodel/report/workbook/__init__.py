"""The live workbook: every derived cell is a formula rendered by the formula layer.

The only package that imports the Excel library. Sheets are modules in ``sheets/``, listed in
``SHEETS`` in tab order; each has ``NAME``, ``wanted(data)`` (whether this book has the sheet)
and ``write(book, ws, data, layout)``. ``data`` holds every number (evaluated first, per op and
chip), ``layout`` every cell position another sheet refers to (planned before any sheet is
written), so a sheet depends on no other sheet having run: adding a sheet is one module and
one line in ``SHEETS``.

Sheets: Plan (perfmodel plan's ranked configurations, when planning), README, Calibration (when calibrating), Inputs (active chip drop-down, its parameters
as defined names), Hardware (one column per chip), Workload (op input cells), Ops (one row per
op, derived cells over Workload and Inputs), Model (transformer step totals, when a workload has
a transformer), Compare (t_lower per chip and speed-ups), ByChip (every op on every chip, over
the Hardware sheet), Collectives (when the workload has any), Sources, Roofline (charts).
"""

from __future__ import annotations

import gc
from pathlib import Path

from ...atomic import atomic_path, check_output
from .book import Book
from .data import evaluate_book
from .layout import plan
from .sheets import (bychip, calibration, collectives, compare, hardware, inputs, model, ops,
                     plan as plan_sheet, readme, roofline, sources, workload)
from .sweep import write_sweep_book  # noqa: F401  (the sweep's values workbook)

SHEETS = [plan_sheet, readme, calibration, inputs, hardware, workload, ops, model, compare, bychip,
          collectives, sources, roofline]


def _write(path: Path, workloads, hardware, active=None, measured_collectives=None,
           calibration=None, plan=None) -> Book:
    # a large book allocates millions of small acyclic objects (cells, tuples, strings): the
    # cyclic garbage collector's passes over them took a fifth of the time, and find nothing
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _write_book(path, workloads, hardware, active, measured_collectives, calibration,
                           plan)
    finally:
        if enabled:
            gc.enable()


def _write_book(path, workloads, hardware, active, measured_collectives, calibration,
                plan_rows=None) -> Book:
    path = check_output(Path(path))
    data = evaluate_book(list(workloads), list(hardware), active, measured_collectives, calibration)
    data.plan = plan_rows
    sheets = [s for s in SHEETS if s.wanted(data)]
    layout = plan(data, [s.NAME for s in sheets])
    with atomic_path(path) as tmp:
        book = Book(tmp)
        for s in sheets:  # tab order; each sheet reads positions from the layout
            s.write(book, book.add_sheet(s.NAME), data, layout)
        book.ws["Plan" if plan_rows is not None else "Ops"].activate()
        book.close()
    return book


def write_workbook(path: Path, workloads, hardware, active: str | None = None,
                   measured_collectives=None, calibration=None, plan=None) -> Path:
    """Write the workbook atomically; return its path. Raises SpecError on bad input/paths.
    ``plan``: perfmodel plan's ranked configurations for a Plan sheet (sheets/plan.py)."""
    _write(path, workloads, hardware, active, measured_collectives, calibration, plan)
    return Path(path)


def write_workbook_stats(path: Path, workloads, hardware, active=None) -> int:
    """Write and return the number of formula cells (for the benchmark)."""
    return _write(path, workloads, hardware, active).formula_cells
