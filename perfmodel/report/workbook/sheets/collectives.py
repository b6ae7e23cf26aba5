"""Collectives: per collective op its topology (axes, lengths, wraparound), input cells and
time terms (live from Ops and Workload), and the host-measured block when given."""

from __future__ import annotations

from xlsxwriter.utility import xl_rowcol_to_cell

from ....formula import Ref
from ....ops import REGISTRY, OpContext
from ..book import FORMATS

NAME = "Collectives"
RATIO = Ref("measured") / Ref("predicted")  # measured / predicted


def wanted(data) -> bool:
    return any(r.op.kind == "collective" for r in data.rows) or bool(data.measured)


def write(book, ws, data, layout):
    coll = [r for r in data.rows if r.op.kind == "collective"]
    book.text(ws, 0, 0, "Collectives on the active chip's topology (live from Ops and Workload; override "
                        "link_bandwidth or hop_latency on Inputs and they recompute)", "title")
    in_cols = [k for k in layout.in_fields if any(k in r.inputs for r in coll)]
    keys = [k for k in ["comm_bytes", "hops", "t_latency", "t_bandwidth", "t_comm", "algbw", "busbw"]
            if k in layout.ops_col]
    cols = ["workload", "op", "collective", "axes", "axis lengths", "wraparound"] + in_cols + keys
    book.header(ws, 1, cols)
    wl_by_name = {w.name: w for w in data.workloads}
    for n, row in enumerate(coll):
        r = 2 + n
        info = REGISTRY["collective"].info(row.op, OpContext(wl_by_name[row.workload], data.active))
        wrap = info.get("wraparound") or []
        flags = " ".join("-" if w is None else ("wrap" if w else "no-wrap") for w in wrap)
        for c, v in enumerate([row.workload, row.op.name, row.op.collective, ",".join(row.op.axes),
                               "x".join(str(x) for x in info.get("axis_lengths") or []), flags]):
            book.text(ws, r, c, v)
        for c, k in enumerate(in_cols):
            if k in row.inputs:
                v = float(row.inputs[k])
                book.ref(ws, r, 6 + c, layout.input_ref(row.index, k), v, "count" if v.is_integer() else "real")
        for c, k in enumerate(keys):
            if k in row.values:
                book.ref(ws, r, 6 + len(in_cols) + c, layout.ops_cell(row.index, k), row.values[k],
                         FORMATS.get(k, ("", "rate"))[1])
    ws.set_column(0, 1, 18)
    ws.set_column(2, 5, 12)
    ws.set_column(6, len(cols), 11)
    if data.measured:
        _measured_block(book, ws, data, 4 + len(coll))
    book.print_setup(ws, (1, 1))


def _measured_block(book, ws, data, r):
    book.text(ws, r, 0, "Measured on this host: the same collectives on 8 JAX host devices", "title")
    book.para(ws, r + 1, 0, "Host-device collectives are memory copies on the host's cores and far from linear "
              "in bytes: this block checks that the programs run and the bytes agree, it is NOT an accuracy "
              "claim for TPU/GPU links. predicted_s uses cpu-local with a nominal switched link (see "
              "perfmodel/calibrate/xla_collectives.py).", 110)
    ws.merge_range(r + 1, 0, r + 1, 9, None)
    cols = ["collective", "ours", "bytes", "comm_bytes", "measured_s", "cv", "predicted_s", "measured / predicted"]
    for c, h in enumerate(cols):
        book.text(ws, r + 2, c, h, "head")
    for j, m in enumerate(data.measured):
        rr = r + 3 + j
        book.text(ws, rr, 0, m["collective"])
        book.text(ws, rr, 1, m["ours"])
        for c, k in enumerate(["bytes", "comm_bytes", "measured_s", "cv", "predicted_s"], start=2):
            book.number(ws, rr, c, m[k], {"bytes": "size", "comm_bytes": "size", "cv": "pct"}.get(k, "time"))
        cells = {"measured": xl_rowcol_to_cell(rr, 4), "predicted": xl_rowcol_to_cell(rr, 6)}
        book.formula(ws, rr, 7, RATIO, cells.__getitem__,
                     m["measured_s"] / m["predicted_s"] if m["predicted_s"] else None, "real")
