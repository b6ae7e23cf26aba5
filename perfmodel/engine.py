"""Evaluate workloads on hardware: op inputs -> cost columns -> roofline columns.

The numeric path and the workbook's formulas share one definition: ``op_columns`` with numbers
gives values; with ``symbolic=True`` it gives expression trees whose Refs name op input cells,
hardware parameters and earlier columns of the same row.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import calibrated
from .formula import NS, Ref, symbols
from .ops import REGISTRY, OpContext
from .roofline import COLUMNS, derive
from .specs import DTYPE_BYTES, Hardware, SpecError, Workload

TOTAL_FIELDS = ["flops", "flops_exec", "hbm_bytes", "t_compute", "t_memory", "t_lower", "t_upper",
                "t_calibrated"]


def hw_env(hw: Hardware) -> dict[str, float]:
    """The hardware's numeric parameters under the names formulas use."""
    env = {f"peak_flops_{d}": v for d, v in hw.peak_flops.items()}
    env.update(hbm_bandwidth=hw.hbm_bandwidth, hbm_capacity=hw.hbm_capacity,
               onchip_memory=hw.onchip_memory, matmul_tile=float(hw.matmul_tile or 1))
    # interconnect (collectives): the same keys on every chip, 0 where a chip has none (a
    # collective that would need a missing one is refused by topology.py, never divided by 0)
    ic = hw.interconnect
    env.update({k: float(getattr(ic, k) or 0.0) for k in INTERCONNECT_PARAMS})
    env.update(calibrated.env(hw))
    return env


# link_bandwidth: one-way per link; hop_latency: per hop / ring step; scale_out_bandwidth: per
# GPU NIC; dcn_bandwidth: per chip between slices
INTERCONNECT_PARAMS = ["link_bandwidth", "hop_latency", "scale_out_bandwidth", "dcn_bandwidth"]

HW_PARAMS = ["hbm_bandwidth", "hbm_capacity", "onchip_memory", "matmul_tile"] + [
    f"peak_flops_{d}" for d in DTYPE_BYTES] + INTERCONNECT_PARAMS


def peak_key(hw: Hardware, dtype: str) -> str:
    if dtype not in hw.peak_flops:
        raise SpecError(
            f"hardware {hw.name!r} has no peak_flops for dtype {dtype!r} (it lists "
            f"{', '.join(hw.peak_flops)}): use one of those dtypes in the workload, or add "
            f"peak_flops.{dtype} with a source to the hardware spec.")
    return f"peak_flops_{dtype}"


def op_columns(op, hw: Hardware, wl: Workload | None = None, *, symbolic: bool = False,
               inputs: dict | None = None):
    """(inputs, cost, roofline) for one op. Numbers, or expression trees when symbolic."""
    model = REGISTRY[op.kind]
    values = inputs if inputs is not None else model.inputs(op, OpContext(wl, hw))
    henv = hw_env(hw)
    key = peak_key(hw, op.dtype)
    if symbolic:
        p, h = symbols(values), symbols(henv)
    else:
        p = NS({k: np.float64(v) if np.isscalar(v) else v for k, v in values.items()})
        h = NS({k: np.float64(v) for k, v in henv.items()})
    cost = model.cost(p, h, op)
    env = NS({**h, **p, "peak": h[key], **(symbols(cost) if symbolic else cost)})
    columns = COLUMNS
    cal = calibrated.lookup(hw, op)
    if cal is not None:  # the fitted model of this kind of kernel, beside the roofline bounds
        combine = hw.calibration.kinds[cal].combine
        columns = COLUMNS + [("t_calibrated", lambda e: calibrated.t_calibrated(e, cal, combine, op.kind))]
    roof = derive(env, columns, Ref if symbolic else None)
    return values, cost, roof


def _clean(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.str_):
        return str(v)
    return v


def evaluate_op(op, hw: Hardware, wl: Workload | None = None) -> dict:
    _, cost, roof = op_columns(op, hw, wl)
    row = {"name": op.name, "kind": op.kind, "dtype": op.dtype}
    info = REGISTRY[op.kind].info
    if info is not None:  # descriptive fields (a collective's wraparound flags per axis)
        row.update(info(op, OpContext(wl, hw)))
    row.update({k: _clean(v) for k, v in {**cost, **roof}.items()})
    return row


def evaluate_rows(hw: Hardware, wl: Workload) -> list[dict]:
    return [evaluate_op(op, hw, wl) for op in wl.ops]


def evaluate(hw: Hardware, wl: Workload) -> pd.DataFrame:
    """One row per op with every cost and roofline column (NaN where a kind lacks one)."""
    return pd.DataFrame(evaluate_rows(hw, wl))


def totals(rows: list[dict]) -> dict:
    # a column an op lacks is skipped; a non-finite value (None in a row) makes the total null
    # t_calibrated only when every op is calibrated: a partial sum would mislead
    return {k: _clean(sum(math.nan if r[k] is None else r[k] for r in rows if k in r))
            for k in TOTAL_FIELDS if k != "t_calibrated" or all(k in r for r in rows)}


def to_json(hw: Hardware, wl: Workload, rows: list[dict] | None = None) -> dict:
    rows = rows if rows is not None else evaluate_rows(hw, wl)
    return {"schema_version": 1, "hardware": hw.name, "workload": wl.name, "ops": rows,
            "total": totals(rows)}
