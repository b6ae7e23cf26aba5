"""Terminal tables: engineering notation for people, one row per op plus a total."""

from __future__ import annotations

from ..roofline import speedup
from ..units import fmt_capacity, fmt_si

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
    if any(r.get("t_comm") is not None for r in rows):  # collectives: the interconnect term
        i = [c[0] for c in cols].index("t_memory") + 1
        cols.insert(i, ("t_comm", "t_comm", "s", False))
    if any("fits_onchip" in r for r in rows):
        cols.append(("fits_onchip", "fits on chip", None, False))
    if len({r.get("runs_as") for r in rows}) > 1:  # ops on different units or precisions
        cols.append(("runs_as", "runs as", None, False))
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


def step_block(total: dict) -> str:
    """A transformer step's headline figures under its table ('' for other workloads)."""
    if "mfu" not in total:
        return ""
    t = total
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"step: {t['model']} {t['mode']} on {t['chips']} chip(s); rows and sums are per "
             f"chip, tokens/s for the whole job",
             f"  t_lower {fmt_si(t['t_lower'], 's')} (communication overlapped per layer group), "
             f"t_upper {fmt_si(t['t_upper'], 's')}"
             + (f", t_calibrated {fmt_si(t['t_calibrated'], 's')}" if "t_calibrated" in t else "")
             + f"; figures at {t['t_step_basis']}"]
    pt = "flops_6pt" if "flops_6pt" in t else "flops_2pt"
    over = (t.get("mfu") or 0) > 1  # PaLM's count takes every attention score; causal skips half
    lines.append(f"  MFU {pct(t['mfu'])} (PaLM model FLOPs {fmt_si(t['flops_model'], 'FLOP')}), "
                 f"HFU {pct(t['hfu'])} (every executed FLOP), at {fmt_si(t['peak_used'], 'FLOP/s')}"
                 f" per chip; {fmt_si(t['tokens_per_s'])} tokens/s; {pt[6:].upper()} "
                 f"{fmt_si(t[pt], 'FLOP')}")
    if over:
        lines.append("  (MFU above 100%: PaLM's model FLOPs count every attention score, while a "
                     "causal kernel skips the masked half; HFU counts what runs)")
    parts = ", ".join(f"{k} {fmt_si(v, 'B')}" for k, v in t["memory_parts"].items() if v)
    verdict = "fits" if t["fits_memory"] else "DOES NOT FIT"
    lines.append(f"  memory per chip {fmt_si(t['memory_bytes_per_chip'], 'B')} of "
                 f"{fmt_capacity(t['hbm_capacity'])} HBM: {verdict} ({parts})")
    lines.append("  bound: " + ", ".join(f"{g} {b}" for g, b in t["bounds"].items()))
    if "pipeline_bubble" in t:
        lines.append(f"  pipeline bubble {pct(t['pipeline_bubble'])} of the step")
    if "ttft" in t:
        lines.append(f"  prefill: time to first token {fmt_si(t['ttft'], 's')}")
    if "t_per_token" in t:
        cb = t.get("compute_bound_batch")
        lines.append(f"  decode: time per output token {fmt_si(t['t_per_token'], 's')}; layer "
                     f"matmuls compute-bound from batch "
                     + (f"{cb}" if cb else "(not below 16M sequences)"))
    return "\n".join(lines)


def compare_table(workload: str, hardware: list, results: dict[str, list[dict]],
                  totals: dict[str, dict] | None = None) -> str:
    """t_lower and bound per chip per op, speed-up vs the first chip, totals and cost."""
    names = [h.name for h in hardware]
    base = names[0]
    head = ["op"] + [f"{n}" for n in names]
    ops = [r["name"] for r in results[base]]
    body = []
    for i, op in enumerate(ops):
        cells = [op]
        for n in names:
            r = results[n][i]
            sp = speedup(results[base][i]["t_lower"], r["t_lower"]) if r["t_lower"] else None
            cells.append(f"{fmt_si(r['t_lower'], 's')} {r['bound']}" +
                         (f" x{sp:.2f}" if n != base and sp else ""))
        body.append(cells)
    totals = totals or {}
    whole = all("t_step" in totals.get(n, {}) for n in names)
    if not whole:  # a whole model's time is its step's (below), which overlaps communication
        tot = {n: sum(r["t_lower"] for r in results[n]) for n in names}
        body.append(["sum of t_lower"] + [
            fmt_si(tot[n], "s") + (f" x{speedup(tot[base], tot[n]):.2f}" if n != base else "")
            for n in names])
    if whole:  # whole models: the step's figures
        step = {n: totals[n] for n in names}
        body.append(["step t_step"] + [
            fmt_si(step[n]["t_step"], "s") + (f" x{speedup(step[base]['t_step'], step[n]['t_step']):.2f}"
                                              if n != base else "") for n in names])
        body.append(["MFU"] + [_cell(step[n].get("mfu"), None, True) for n in names])
        body.append(["tokens/s"] + [fmt_si(step[n]["tokens_per_s"]) if step[n].get("tokens_per_s")
                                    else "-" for n in names])
        body.append(["memory per chip"] + [
            fmt_si(step[n]["memory_bytes_per_chip"], "B")
            + ("" if step[n].get("fits_memory", True) else " DOES NOT FIT") for n in names])
    for key, label, unit in (("usd_per_step", "$ per step (all chips)", "$"),
                             ("usd_per_mtok", "$ per million tokens", "$"),
                             ("flop_per_usd", "FLOP per $", "")):
        if any(key in totals.get(n, {}) for n in names):
            body.append([label] + [_money(totals[n][key]) if unit and key in totals.get(n, {})
                                   else fmt_si(totals[n][key]) if key in totals.get(n, {})
                                   else "-" for n in names])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                                  for j, (c, w) in enumerate(zip(cells, widths)))
    out = [f"{workload}: t_lower per chip (bound; speed-up vs {base})", fmt(head),
           fmt(["-" * w for w in widths])]
    out += [fmt(b) for b in body]
    return "\n".join(out)


def _money(usd: float) -> str:
    """Dollars as people read them: '$1.71', '$0.0786', '$2.73e-5' below a thousandth."""
    if usd >= 1e-3 or usd == 0:
        return f"${usd:,.3g}" if usd < 1000 else f"${usd:,.0f}"
    return f"${usd:.3g}".replace("e-0", "e-")


BOUND_MARK = {"compute": "c", "memory": "m", "comm": "n"}
PANEL_CHIPS = 5  # chips side by side in one summary panel (about 110 columns)


def dominant_bound(rows: list[dict], total: dict) -> tuple[str | None, float]:
    """The bound taking most of t_lower and its share. A whole model's t_lower is its ledger
    groups' (communication overlapped within a group), so its share is by group; a kernel
    workload's by op."""
    if "group_times" in total and "bounds" in total:
        parts = [(total["bounds"][g], t) for g, t in total["group_times"].items()]
    else:
        parts = [(r.get("bound"), r.get("t_lower")) for r in rows]
    share: dict[str, float] = {}
    for bound, t in parts:
        if bound and t:
            share[bound] = share.get(bound, 0.0) + t
    whole = sum(share.values())
    top = max(share, key=share.get) if share else None
    return top, (share[top] / whole if top else 0.0)


def summary_cell(rows: list[dict], total: dict) -> str:
    """t_step, the dominant bound's mark (c, m, n), MFU for a whole model, '!' if it does not
    fit in HBM: '4.05 ms m 45%!'."""
    top, _ = dominant_bound(rows, total)
    cell = f"{_cell(total.get('t_step', total.get('t_lower')), 's', False)} " \
           f"{BOUND_MARK.get(top, '-')}"
    if total.get("mfu") is not None:
        cell += f" {100 * total['mfu']:.0f}%"
    return cell + ("!" if total.get("fits_memory") is False else "")


def summary_table(results: list[tuple[str, str, list[dict], dict]], chips: list[str],
                  workloads: list[str] | None = None) -> str:
    """Workloads down, chips across (panels of PANEL_CHIPS chips): each cell is summary_cell of
    that pair; 'skip' where the pair could not be evaluated. ``results`` holds (workload, chip,
    rows, total) for the evaluated pairs."""
    cells = {(wl, chip): summary_cell(rows, total) for wl, chip, rows, total in results}
    workloads = workloads or list(dict.fromkeys(wl for wl, *_ in results))
    out = []
    for i in range(0, len(chips), PANEL_CHIPS):
        panel = chips[i:i + PANEL_CHIPS]
        head = ["workload"] + panel
        body = [[wl] + [cells.get((wl, c), "skip") for c in panel] for wl in workloads]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

        def line(row):
            return "  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                             for j, (c, w) in enumerate(zip(row, widths)))

        out += [line(head), line(["-" * w for w in widths])] + [line(b) for b in body] + [""]
    if any((total.get("mfu") or 0) > 1 for *_, total in results):
        out.append("MFU above 100%: PaLM's model FLOPs count every attention score, but a "
                   "causal kernel computes about half of them (HFU counts what runs; "
                   "docs/model.md).")
    return "\n".join(out).rstrip("\n")


# a sweep's totals: (column, header, unit or None for a plain number, percent?)
SWEEP_COLUMNS = COLUMNS[:-1] + [
    ("tokens_per_s", "tokens/s", "", False),
    ("mfu", "MFU", None, True),
    ("memory_bytes_per_chip", "memory/chip", "B", False),
    ("fits_memory", "fits HBM", None, False),
    ("usd_per_step", "$/step", None, False),
    ("usd_per_mtok", "$/Mtok", None, False),
    ("flop_per_usd", "FLOP/$", "", False),
]


def sweep_table(totals, fields: list[str], shown: int, of: int) -> str:
    """The first ``shown`` of ``of`` configuration x chip totals of a sweep, in engineering
    notation, with what the reader needs to know about the rest."""
    cols = [(f, f, None, False) for f in [*fields, "hardware"] if f in totals.columns]
    cols += [c for c in SWEEP_COLUMNS if c[0] in totals.columns]
    head = [h for _, h, _, _ in cols]
    body = [[_cell(None if _missing(v) else v, unit, pct) for v, (_, _, unit, pct)
             in zip(row, cols)] for row in totals[[c[0] for c in cols]].itertuples(index=False)]
    width = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(r, width)) for r in [head, *body]]
    if "bound" in totals.columns and totals["bound"].astype(str).str.contains("/").any():
        lines.append("bound: what bounds the step's groups (compute, memory, comm), "
                     "several when they differ")
    if "fits_memory" in totals.columns and not totals["fits_memory"].astype(bool).all():
        lines.append("fits HBM 'no': the configuration does not fit in the chip's memory")
    if shown < of:
        lines.append(f"(the first {shown} of {of:,}; --csv PATH --totals writes them all)")
    return "\n".join(lines)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)
