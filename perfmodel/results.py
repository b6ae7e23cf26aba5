"""A workload's result as one JSON object: the engine's rows, their totals, a transformer's
step summary and the price figures. Above the model layer, because the step summary is the
model's (perfmodel.model.summary) and the engine's rows are its input."""

from __future__ import annotations

from .engine import SCHEMA_VERSION, evaluate_rows, price_columns, totals
from .model import expand_workload
from .model.summary import step_summary
from .specs import Hardware, Workload


def to_json(hw: Hardware, wl: Workload, rows: list[dict] | None = None) -> dict:
    """The rows and their ``total``. For a transformer workload the total is the step's
    (perfmodel.model.summary): t_lower overlaps each layer's communication with its compute,
    and it adds MFU, tokens/s, memory per chip and the inference latencies."""
    wl = expand_workload(wl)
    rows = rows if rows is not None else evaluate_rows(hw, wl)
    total = totals(rows)
    step = step_summary(hw, wl, rows)
    if step is not None:
        total.update(step)
    total.update(price_columns(hw.price_per_hour, total))
    return {"schema_version": SCHEMA_VERSION, "hardware": hw.name, "workload": wl.name, "ops": rows,
            "total": total}
