"""README: what the workbook is, what to edit, how the bounds are defined."""

from __future__ import annotations

import datetime as _dt

from .... import __version__

NAME = "README"


def wanted(data) -> bool:
    return True


def write(book, ws, data, layout):
    ws.set_column(0, 0, 120)
    coll = " Collectives (per collective op: hops, bytes, latency and bandwidth terms)," \
        if "Collectives" in layout.sheets else ""
    model = " Model (per transformer workload: ledger, group times, step totals, memory; its headline " \
        "cells are the defined names step_t_lower, step_t_upper, step_t_step, step_mfu, " \
        "step_tokens_per_s, step_memory_bytes_per_chip)," if "Model" in layout.sheets else ""
    multi = (" Compare (t_lower per chip and speed-ups), ByChip (every op on every chip: the cells Compare "
             "and the charts read),") if "ByChip" in layout.sheets else ""
    lines = [
        ("perfmodel roofline workbook", "title"),
        (f"perfmodel {__version__}; written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
         f"workloads: {', '.join(w.name for w in data.workloads)}; chips: {', '.join(data.chips)}; "
         f"active chip when written: {data.active.name}.", None),
        ("", None),
        ("What to edit (yellow cells are inputs; every other number is a live formula):", "bold"),
        ("- Inputs!B2: the active chip (drop-down). Ops, Model, Collectives and the op points on the Roofline "
         "chart of the active chip follow it.", None),
        ("- Inputs column C ('override'): type a number there (e.g. 2.5E+12 next to hbm_bandwidth) for a what-if on "
         "the active chip; column B then uses it instead of the Hardware value. Clear it to go back.", None),
        ("- Hardware: one column per chip (hover a value for its citation). Edit a number there and Compare, ByChip "
         "and the roofs follow (and Ops, when that chip is active).", None),
        ("- Workload: one row per op; its fields (m, k, n, seq, kv_seq, heads, ...) are inputs. Change seq and the op "
         "recomputes. Structural choices (impl, dtype) are fixed per row: rerun perfmodel to change them.", None),
        ("", None),
        ("How bounds are defined:", "bold"),
        ("- t_compute = flops_exec / peak_used (flops_exec pads matmul dims up to the chip's matmul_tile_m/k/n). "
         "peak_used is the rate of the unit the op runs on: a matmul's matrix_rate_<dtype> (an fp32 product at "
         "JAX precision high/highest: matrix_rate_fp32_high/_highest, e.g. 3 or 6 bf16 passes on a TPU), an "
         "elementwise op's vector_rate_<dtype>; attention adds its softmax at vector_rate and its exps at "
         "transcendental_rate. Those rates are rows of Hardware, formulas over each chip's peaks.", None),
        ("- t_memory = hbm_bytes / hbm_bandwidth.  t_comm = collective time (links, hops x hop_latency).", None),
        ("- t_lower = MAX of the terms (perfect overlap); t_upper = SUM of the terms (no overlap).", None),
        ("- bound = the largest term. intensity = flops / hbm_bytes; ridge = peak / hbm_bandwidth (compute-bound iff "
         "intensity > ridge).", None),
        ("- MFU = flops / (t_lower x peak_used); MBU = hbm_bytes / (t_lower x hbm_bandwidth); both at the lower "
         "bound, so an op at its own unit's peak shows 100% (an fp32 'highest' product too, at its slower rate). A "
         "whole model's MFU (Model sheet) counts PaLM's model FLOPs, every attention score included: a causal "
         "kernel that skips masked blocks can show above 100%; HFU counts what runs.", None),
        ("- fits_onchip (attention): whether the kernel's on-chip working set fits onchip_memory; a 'no' row (red) is "
         "an infeasible schedule whose times are shown only for comparison.", None),
        ("- Units: SI throughout (bytes, seconds, FLOP/s, B/s), named in each column header. FLOPs and bytes "
         "show in engineering notation from 10^5 on (268.44E+6 B = 268 MB), times in seconds as decimals "
         "(0.01180 s = 11.8 ms; below 1 ms 1.23E-05 s = 12.3 us), rates with 3 significant digits, ratios as %.", None),
        ("- A blank cell with a note means the value does not exist (e.g. a dtype a chip has no peak for).", None),
        ("", None),
        ("Sheets: Inputs, Hardware, Workload, Ops (one row per op on the active chip),"
         f"{model}{multi}{coll} Sources (citations and disagreements), Roofline (log-log charts, one per chip "
         "and dtype; their data below them).", None),
        ("Sources: every hardware number is cited on the Sources sheet (and in a comment on its Hardware cell); "
         "other published values are listed there as alternatives, beside the value used.", None),
    ]
    for i, (s, f) in enumerate(lines):
        if f:
            book.text(ws, i, 0, s, f)
        else:
            book.para(ws, i, 0, s, 120)
    book.print_setup(ws)
