"""Command line: thin wrappers over the public API. Exit codes: 0 ok, 2 bad input.

Heavy modules (pandas, matplotlib, the Excel writer, jax) are imported inside the commands
that need them, so ``perfmodel --help`` stays fast and never imports jax.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import click

from .units import fmt_capacity, fmt_exact, fmt_si  # light: math and re

EXIT_BAD_INPUT = 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as shells report them


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (temporary files) runs on the way out."""


def _on_signal(signum, frame):
    """Ctrl-C and SIGTERM as exceptions. Inside a garbage-collector callback (jax registers
    one) an exception is only printed and dropped, so the signal is sent again a moment later."""
    if _in_gc_callback(frame):
        import os
        import threading

        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    import signal

    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _in_gc_callback(frame) -> bool:
    import gc

    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def interrupt_status(e: BaseException) -> int:
    return EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT


class _Group(click.Group):
    """Turns SpecError (bad input) and OS errors on output into a one-paragraph message and
    exit status 2, Ctrl-C and SIGTERM into 130 and 143 (after temporary files are removed)."""

    def invoke(self, ctx):
        import signal
        import warnings

        from .atomic import os_error
        from .specs import SpecError

        old = signal.signal(signal.SIGTERM, _on_signal)
        old_int = signal.signal(signal.SIGINT, _on_signal)
        try:
            with warnings.catch_warnings():
                # numpy's divide/overflow warnings: a non-finite value is shown as "-" or null
                warnings.simplefilter("ignore", RuntimeWarning)
                out = super().invoke(ctx)
                sys.stdout.flush()  # a full or closed stdout fails here, not at exit
                return out
        except SpecError as e:
            _error(f"perfmodel: error: {e}")
            ctx.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt as e:
            from .atomic import cleanup

            cleanup()  # temporary files a writer could not remove itself
            _error("\nperfmodel: interrupted.")
            ctx.exit(interrupt_status(e))
        except Exception as e:
            err = os_error(e)
            if err is None:
                raise
            _stdout_gone()
            if err.errno == errno.EPIPE and err.filename is None:
                ctx.exit(0)  # `perfmodel ... | head`: the reader has what it wanted
            where = err.filename or "standard output"
            _error(f"perfmodel: error: {where}: {err.strerror or err} (an operating-system error); "
                   f"check the path, its permissions and free space.")
            ctx.exit(EXIT_BAD_INPUT)
        finally:
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)


def _error(msg: str) -> None:
    try:
        click.echo(msg, err=True)
    except OSError:
        pass  # stderr itself is gone: the exit status still tells


def _stdout_gone() -> None:
    """Point stdout at /dev/null so the interpreter's flush at exit does not fail again."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests' captured output)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perfmodel")
def main():
    """perfmodel: roofline models of LLM kernels on TPUs and GPUs, as tables, JSON, PNG plots
    and live Excel workbooks.

    Exit status: 0 success, 2 bad input (file, field or value; the message says which),
    1 a failed check (`check` found an unexplained mismatch, a `bench` kernel failed),
    130 interrupted.
    """


# past this size JSON is printed on one line: the indenting encoder is pure Python (13 s for
# 100,000 ops), the compact one is C (one second)
_PRETTY_JSON_CHARS = 1_000_000


def _json_out(obj) -> None:
    text = json.dumps(obj, allow_nan=False)
    if len(text) <= _PRETTY_JSON_CHARS:
        text = json.dumps(obj, indent=2, allow_nan=False)
    click.echo(text)


@main.command()
@click.option("--hardware", "-H", required=True, help="Built-in chip name or path to a YAML spec.")
@click.option("--workload", "-w", required=True, help="Built-in workload name or path to a YAML file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SI units).")
@click.option("--output", "-o", type=click.Path(dir_okay=True), help="Write a live Excel workbook.")
@click.option("--slice", "slice_", default=None,
              help="Override the workload's slice shape (e.g. 8x16, 4x4x8; GPU 8 or 2x8); "
                   "the workload's mesh must still fit it.")
def roofline(hardware, workload, as_json, output, slice_):
    """Roofline of one workload on one chip: a table, --json, or a workbook (--output)."""
    from . import api

    if output is not None:
        api.check_output(output, ".xlsx")
    hw, wl = api.load_hardware(hardware), api.load_workload(workload)
    if slice_ is not None:
        from .model import with_slice

        wl = with_slice(wl, slice_, source=workload)
    rows = api.evaluate_rows(hw, wl)
    if hw.calibration is not None:
        missing = sorted({r["name"] for r in rows if "t_calibrated" not in r})
        if missing:
            click.echo(f"perfmodel: note: {hw.name} has no fitted group for {len(missing)} op(s) "
                       f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}): no "
                       f"t_calibrated for them (groups are per kind and dtype: "
                       f"{', '.join(hw.calibration.kinds)}).", err=True)
    if as_json:
        _json_out(api.to_json(hw, wl, rows))
    else:
        click.echo(roofline_table_for(wl, hw, rows))
    if output is not None:
        path = api.write_workbook(Path(output), [wl], [hw], active=hw.name)
        if not as_json:
            click.echo(f"wrote {path}")


@main.command()
@click.option("--output-dir", "-o", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--hardware", "-H", default=None, help="Comma-separated chips (default: all built-in).")
@click.option("--workload", "-w", default=None, help="Comma-separated workloads (default: all built-in).")
@click.option("--measure-collectives", is_flag=True,
              help="Also run the collectives on 8 JAX host devices (needs jax; slow) and show measured vs predicted.")
@click.option("--detail", is_flag=True,
              help="Also print every per-op table (they are always written to OUTPUT_DIR/tables/).")
def report(output_dir, hardware, workload, measure_collectives, detail):
    """Every built-in workload on every built-in chip: one summary line per pair, the skipped
    and not-fitting pairs, a roofline PNG per chip, per-op tables in reports/tables/ and
    reports/perfmodel.xlsx."""
    from . import api
    from .atomic import atomic_path
    from .report.tables import summary_table

    out = Path(output_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    hws = api.select_hardware(hardware)
    wls = api.select_workloads(workload)
    done, skipped, wrote = [], [], []
    for hw in hws:
        series = {}
        for wl in wls:
            try:
                rows = api.evaluate_rows(hw, wl)
            except api.SpecError as e:  # e.g. a TPU slice shape on a GPU: skip this pair
                msg = str(e)
                named = msg.startswith(f"workload {wl.name!r} on {hw.name!r}")
                skipped.append(msg if named else f"{wl.name} on {hw.name}: {msg}")
                continue
            series[wl.name] = rows
            total = api.to_json(hw, wl, rows)["total"]
            done.append((wl.name, hw.name, rows, total))
            table = roofline_table_for(wl, hw, rows, total)
            with atomic_path(out / "tables" / f"{wl.name}--{hw.name}.txt") as tmp:
                tmp.write_text(table + "\n")
            if detail:
                click.echo(table + "\n")
        wrote.append(api.roofline_png(hw, series, out / f"roofline-{hw.name}.png"))
    compared = _compare_new_chips(hws, wls, out, detail)
    active = "tpu-v4" if any(h.name == "tpu-v4" for h in hws) else hws[0].name  # the course's chip
    measured = api.measure_collectives() if measure_collectives else None
    wrote.append(api.write_workbook(out / "perfmodel.xlsx", wls, hws, active=active,
                                    measured_collectives=measured))
    click.echo(f"{len(done)} workload x chip pairs. Each cell: t_step (a whole model's step, "
               f"else the sum of its ops' t_lower), the bound taking most of it (c compute, "
               f"m memory, n communication), MFU for whole models, '!' when it does not fit "
               f"in HBM\n")
    click.echo(summary_table(done, [hw.name for hw in hws], [wl.name for wl in wls]))
    big = [(w, c, t) for w, c, _, t in done if t.get("fits_memory") is False]
    if big:
        click.echo(f"\nDOES NOT FIT in HBM ({len(big)}):")
        for w, c, t in big:
            click.echo(f"  {w} on {c}: {fmt_si(t['memory_bytes_per_chip'], 'B')} per chip, "
                       f"HBM {fmt_capacity(t['hbm_capacity'])}")
    if skipped:
        click.echo(f"\nskipped ({len(skipped)}):")
        for msg in skipped:
            click.echo(f"  {msg}")
    pngs = [p for p in wrote if p.suffix == ".png"]
    click.echo(f"\nwrote {out / 'tables'}/*.txt (per-op tables; --detail prints them), "
               + (f"{len(compared)} compare-*.txt (the newer chips on decode), " if compared else "")
               + f"{len(pngs)} x {out}/roofline-CHIP.png, {wrote[-1]}")





def _compare_new_chips(hws, wls, out, detail) -> list:
    """The report's Compare of the newer chips (catalog.COMPARE_CHIPS) on the decode workloads
    of catalog.COMPARE_WORKLOADS, among the chips and workloads the report covers: written to
    OUT/tables/compare-WORKLOAD.txt (printed with --detail)."""
    from . import api
    from .atomic import atomic_path
    from .catalog import COMPARE_CHIPS, COMPARE_WORKLOADS
    from .report.tables import compare_table

    chips = [h for name in COMPARE_CHIPS for h in hws if h.name == name]
    if len(chips) < 2:
        return []
    wrote = []
    for wl in (w for name in COMPARE_WORKLOADS for w in wls if w.name == name):
        results, totals, skipped = {}, {}, []
        for hw in chips:
            try:
                results[hw.name] = api.evaluate_rows(hw, wl)
            except api.SpecError as e:
                skipped.append(f"skipped {hw.name}: {e}")
                continue
            totals[hw.name] = api.to_json(hw, wl, results[hw.name])["total"]
        shown = [h for h in chips if h.name in results]
        text = "\n".join([f"Compare (newer chips): {wl.name}",
                          compare_table(wl.name, shown, results, totals), *skipped])
        path = out / "tables" / f"compare-{wl.name}.txt"
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")
        wrote.append(path)
        if detail:
            click.echo(text + "\n")
    return wrote


def roofline_table_for(wl, hw, rows, total=None):
    from . import api
    from .report.tables import roofline_table, step_block

    if total is None:  # a transformer's step total, else the sums
        total = api.to_json(hw, wl, rows)["total"]
    block = step_block(total)
    return roofline_table(f"{wl.name} on {hw.name}", rows, total) + (f"\n{block}" if block else "")


@main.group(invoke_without_command=True)
@click.pass_context
def hardware(ctx):
    """List built-in chips, or `hardware show NAME` for one spec with its sources."""
    if ctx.invoked_subcommand is None:
        from . import api

        for hw in api.all_hardware():
            peaks = ", ".join(f"{d} {fmt_si(v, 'FLOP/s')}" for d, v in hw.peak_flops.items())
            vec = ", ".join(f"{d} {fmt_si(v, 'FLOP/s')}" for d, v in (hw.vector_flops or {}).items())
            ic = hw.interconnect
            dom = (f"; {ic.topology} domain {ic.domain_size}"
                   if ic.domain_size and ic.topology in ("switched", "full_mesh") else "")
            click.echo(f"{hw.name:10s} {hw.kind}  HBM {fmt_capacity(hw.hbm_capacity)} at "
                       f"{fmt_si(hw.hbm_bandwidth, 'B/s')}, on-chip {fmt_si(hw.onchip_memory, 'B')}; "
                       f"matrix {peaks}" + (f"; vector {vec}" if vec else "") + dom)


@hardware.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def hardware_show(name, as_json):
    """One chip's parameters (SI), sources and alternatives."""
    from . import api

    hw = api.load_hardware(name)
    if as_json:
        _json_out(hw.model_dump(mode="json", exclude_none=True))  # SI numbers
    else:
        import yaml

        # quantities in units people read, each reading back to the same number, so the output
        # is itself a loadable hardware spec
        click.echo(yaml.safe_dump(_with_units(hw.model_dump(exclude_none=True)),
                                  sort_keys=False, width=100))


# the hardware fields that hold bytes (dumped as plain numbers of bytes)
_BYTE_FIELDS = ("hbm_capacity", "onchip_memory", "cache_bytes")


def _with_units(obj, key: str | None = None):
    """A spec dump with its quantities written as '197 TFLOP/s', '16 GiB', '1 us'."""
    import re


    if isinstance(obj, dict):
        return {k: _with_units(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_with_units(v, key) for v in obj]
    if isinstance(obj, str):
        m = re.fullmatch(r"(\S+) (FLOP/s|B/s|s)", obj)
        if m:
            try:
                return fmt_exact(float(m[1]), m[2])
            except ValueError:
                return obj
        return obj
    if key in _BYTE_FIELDS and isinstance(obj, float):
        return fmt_exact(obj, "B")
    return obj


@main.command("import-hf")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(["train", "prefill", "decode"]), default="decode",
              show_default=True, help="The op's mode (not in a config.json).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sequences per step.")
@click.option("--seq", type=click.IntRange(min=1), default=None,
              help="Tokens per sequence (decode: the KV length) [default: 2048, or the "
                   "sliding window when shorter].")
def import_hf(config, mode, batch, seq):
    """Print the transformer op a Hugging Face config.json gives, as YAML for a workload's
    ops list, with the source of each field as a comment. In a workload, `config: PATH` does
    the same at load (fields written in the op override it)."""
    from .model.hf_config import op_yaml

    click.echo(op_yaml(Path(config), mode=mode, batch=batch, seq=seq), nl=False)


@main.command()
@click.argument("what", type=click.Choice(["hardware", "workload"]))
def schema(what):
    """Print the JSON Schema of hardware or workload YAML files (for editors)."""
    from . import api

    _json_out(api.json_schema(what))


@main.command()
@click.option("--quick", is_flag=True, help="A subset of the suite, a few times shorter (times: docs/measurements.md).")
@click.option("--output", "-o", default="reports/measurements.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV to append to (resumed if it exists).")
@click.option("--passes", type=click.IntRange(min=1), default=None,
              help="Interleaved passes over the suite [default: 5, or 3 with --quick].")
@click.option("--kernels", default=None,
              help="Only these kernel kinds: comma-separated glob patterns, e.g. 'matmul*,softmax'.")
@click.option("--tiny", is_flag=True, hidden=True, help="Every kernel kind once, tiny shapes (tests).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def bench(quick, output, passes, kernels, tiny, no_progress):
    """Time the calibration kernels on the current JAX backend and append one row per
    (kernel, shape, dtype, pass) to a CSV: kernel, params, dtype, median_s, min_s, p20_s, cv,
    reps, pass, backend, device_kind, n_devices, jax_version, host.

    Ctrl-C keeps the rows measured so far; rerunning the same command resumes. Exit status 130
    when interrupted, 1 if a kernel failed to run.
    """
    from .calibrate import bench as _bench

    from .specs import SpecError

    if Path(output).suffix.lower() != ".csv":  # its directory is created if missing
        raise SpecError(f"output {output!r}: expected a .csv file name (bench writes CSV); use "
                        f"e.g. {Path(output).with_suffix('.csv') if output.strip() else 'm.csv'}.")
    mode = "tiny" if tiny else "quick" if quick else "full"
    try:
        res = _bench.run_bench(Path(output), mode=mode, passes=passes, kernels=kernels,
                               progress=not no_progress)
    except _bench.BenchInterrupted as e:
        again = " ".join(a for a in ["perfmodel bench", "--quick" if quick else "",
                                     f"--output {output}",
                                     f"--passes {passes}" if passes else "",
                                     f"--kernels '{kernels}'" if kernels else ""] if a)
        click.echo(f"\nperfmodel: interrupted: kept {e.rows_kept} row(s) in {e.path} "
                   f"({e.rows_new} measured this run, {e.rows_todo} still to do). "
                   f"To resume, run the same command again: {again}", err=True)
        click.get_current_context().exit(interrupt_status(e.__context__ or e))
    except KeyboardInterrupt as e:  # before the first kernel ran (jax import, set-up)
        click.echo("\nperfmodel: interrupted before any kernel was measured.", err=True)
        click.get_current_context().exit(interrupt_status(e))
    click.echo(_bench.summary_text(res))
    if res.failed:
        click.get_current_context().exit(1)


def _chips(hardware: str, sets: tuple[str, ...]):
    from . import api
    from .whatif import with_overrides

    return with_overrides(api.select_hardware(hardware), list(sets))


@main.command()
@click.option("--hardware", "-H", required=True, help="Comma-separated chips (names or paths).")
@click.option("--workload", "-w", required=True, help="Built-in workload name or YAML path.")
@click.option("--set", "sets", multiple=True, metavar="CHIP.FIELD=VALUE",
              help="What-if variant beside CHIP, e.g. tpu-v6e.hbm_bandwidth=2x or h100.onchip_memory=64MiB. Repeatable.")
@click.option("--output", "-o", type=click.Path(), help="Write a workbook (Compare sheet with live ratios).")
@click.option("--json", "as_json", is_flag=True, help="Print per-chip JSON objects.")
def compare(hardware, workload, sets, output, as_json):
    """The same workload on several chips (and what-if variants), side by side."""
    from . import api
    from .report.tables import compare_table

    if output is not None:
        api.check_output(output, ".xlsx")
    hws = _chips(hardware, sets)
    wl = api.load_workload(workload)
    results = {hw.name: api.evaluate_rows(hw, wl) for hw in hws}
    objs = {hw.name: api.to_json(hw, wl, results[hw.name]) for hw in hws}
    if as_json:
        _json_out(list(objs.values()))
    else:
        click.echo(compare_table(wl.name, hws, results, {n: o["total"] for n, o in objs.items()}))
    if output is not None:
        path = api.write_workbook(Path(output), [wl], hws, active=hws[0].name)
        if not as_json:
            click.echo(f"wrote {path}")


@main.command()
@click.option("--workload", "-w", required=True, help="Built-in workload name or YAML path.")
@click.option("--hardware", "-H", required=True, help="Comma-separated chips.")
@click.option("--vary", "varies", multiple=True, required=True, metavar="FIELD=SPEC",
              help="FIELD=LO..HI:STEP, FIELD=LO..HI:log2 or FIELD=a,b,c; applies to every op with FIELD. Repeatable.")
@click.option("--set", "sets", multiple=True, metavar="CHIP.FIELD=VALUE", help="What-if variant (as in compare).")
@click.option("--csv", "csv_path", type=click.Path(), help="Write the per-op table as CSV.")
@click.option("--output", "-o", type=click.Path(), help="Write a Sweep workbook and PNG plots beside it.")
@click.option("--totals", is_flag=True, help="CSV and workbook: one row per (configuration, chip) instead of per op "
                   "(the terminal always shows these totals).")
@click.option("--max-rows", type=click.IntRange(min=1), default=None,
              help="Refuse sweeps of more rows than this (per op, all chips) [default: 20,000,000].")
def sweep(workload, hardware, varies, sets, csv_path, output, totals, max_rows):
    """Evaluate every combination of the varied fields, vectorised; print the crossovers.
    --csv is written in pieces as they are computed, so memory stays bounded."""
    import contextlib

    import pandas as pd

    from . import api
    from .atomic import atomic_path
    from .limits import EXCEL_ROWS, MAX_ROWS
    from .sweeps import Crossovers, parse_varies, sweep_chunks, sweep_rows, sweep_totals

    for p, suffix in ((csv_path, ".csv"), (output, ".xlsx")):
        if p is not None:
            api.check_output(p, suffix)
    hws = _chips(hardware, sets)
    wl = api.load_workload(workload)
    vary = parse_varies(list(varies))
    max_rows = max_rows or MAX_ROWS
    # refuse oversized outputs before computing or writing any of them
    rows = sweep_rows(wl, hws, vary)
    if output is not None:
        listed = rows // max(1, len(wl.ops)) if totals else rows
        if listed + 1 > EXCEL_ROWS:
            raise api.SpecError(f"{output}: {listed:,} rows do not fit an Excel sheet "
                                f"({EXCEL_ROWS:,} rows, EXCEL_ROWS); use --totals, vary fewer "
                                f"values, or --csv.")
    fields = [v.field for v in vary]
    numeric = [v.field for v in vary if v.numeric]
    found = Crossovers(numeric[0]) if numeric else None
    kept, tots, head, n, ntot = [], [], [], 0, 0
    with contextlib.ExitStack() as stack:
        out = None
        if csv_path is not None:
            tmp = stack.enter_context(atomic_path(Path(csv_path)))
            out = stack.enter_context(open(tmp, "w", newline=""))
        for df in sweep_chunks(wl, hws, vary, progress=True, max_rows=max_rows):
            tot = sweep_totals(df)
            n, ntot = n + len(df), ntot + len(tot)
            if out is not None:
                (tot if totals else df).to_csv(out, index=False, header=out.tell() == 0)
            if found is not None:
                found.feed(df)
            if output is not None:  # the workbook needs the whole table (at most EXCEL_ROWS)
                kept.append(df)
                tots.append(tot)
            elif sum(len(t) for t in head) < 20:
                head.append(tot.head(20))
        if out is not None:
            out.close()
    from .report.tables import sweep_table

    click.echo(f"{n:,} rows ({ntot:,} configuration x chip totals)")
    shown = pd.concat(tots or head, ignore_index=True).head(20)
    click.echo(sweep_table(shown, fields, len(shown), ntot))
    if found is not None:
        lines = found.lines()
        click.echo("\ncrossovers:" if lines else "\nno crossovers in this range")
        for line in lines:
            click.echo("  " + line)
    if csv_path is not None:
        click.echo(f"wrote {csv_path}")
    if output is not None:
        from .report.sweep_report import write_sweep

        table = pd.concat(kept, ignore_index=True)
        table.attrs = dict(kept[0].attrs)
        tot = pd.concat(tots, ignore_index=True)
        shown_fields = [f for f in fields if f in table.columns]
        for p in write_sweep(Path(output), tot if totals else table, tot, shown_fields, hws, wl,
                             max_rows=max_rows):
            click.echo(f"wrote {p}")


def _numbers(text, flag, kind=int):
    """'1,2,4' -> [1, 2, 4]; a bad item is bad input (exit 2) naming the flag."""
    from .specs import SpecError

    if text is None:
        return None
    out = []
    for item in text.split(","):
        try:
            v = kind(item.strip())
        except ValueError:
            raise SpecError(f"{flag} {text!r}: {item.strip()!r} is not a whole number; write "
                            f"e.g. {flag} 8 or {flag} 8,16,32") from None
        if v < 1:
            raise SpecError(f"{flag} {text!r}: {v} must be at least 1")
        out.append(v)
    return out


@main.command()
@click.option("--workload", "-w", required=True,
              help="A workload with one transformer op (built-in name, workloads/models/ name, "
                   "or YAML path); fields it omits (mode, batch, slice, mesh, parallelism, "
                   "remat, grad_accum, microbatches) are searched.")
@click.option("--hardware", "-H", required=True, help="Comma-separated chips.")
@click.option("--chips", default=None, metavar="N[,N...]",
              help="Chip counts to search [default: the slices each chip is sold in].")
@click.option("--mode", type=click.Choice(["train", "prefill", "decode"]), default=None,
              help="Override or supply the op's mode.")
@click.option("--batch", default=None, metavar="B[,B...]",
              help="Batch sizes (sequences per step) [default: the op's, else 1,2,4..1024].")
@click.option("--max-ttft", type=float, default=None, metavar="SECONDS",
              help="Prefill: the longest time to first token allowed.")
@click.option("--max-tpot", type=float, default=None, metavar="SECONDS",
              help="Decode: the longest time per output token allowed.")
@click.option("--min-tokens-per-s", type=float, default=None, metavar="X",
              help="The fewest tokens per second allowed (whole job).")
@click.option("--objective", type=click.Choice(["tokens_per_s", "cost", "latency"]),
              default="tokens_per_s", show_default=True,
              help="Rank by throughput, USD per million tokens, or step time.")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many configurations to list.")
@click.option("--hbm-fraction", type=float, default=0.9, show_default=True,
              help="The share of HBM a configuration may fill.")
@click.option("--explain", "explain_rank", type=click.IntRange(min=1), default=None,
              metavar="RANK", help="Print that rank's workload YAML and why it ranks there.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--csv", "csv_path", type=click.Path(), default=None,
              help="Write the top configurations as CSV.")
@click.option("--output", "-o", type=click.Path(), default=None,
              help="Write a workbook (Plan sheet and the best configuration's sheets) and a "
                   "Pareto PNG beside it.")
def plan(workload, hardware, chips, mode, batch, max_ttft, max_tpot, min_tokens_per_s,
         objective, top_k, hbm_fraction, explain_rank, as_json, csv_path, output):
    """Search slices, meshes, strategies, remat, grad_accum and batch sizes for one model and
    rank the configurations that fit memory and the latency limits."""
    from . import api
    from . import plan as _plan

    for p, suffix in ((csv_path, ".csv"), (output, ".xlsx")):
        if p:
            api.check_output(Path(p), suffix)
    req = _plan.load_request(workload, mode=mode, batches=_numbers(batch, "--batch"),
                             max_ttft=max_ttft, max_tpot=max_tpot,
                             min_tokens_per_s=min_tokens_per_s, objective=objective,
                             hbm_fraction=hbm_fraction)
    hws = api.select_hardware(hardware)
    res = _plan.search(req, hws, _numbers(chips, "--chips"), progress=True)
    if explain_rank is not None:
        click.echo(_plan.explain_text(res, explain_rank))
    elif as_json:
        _json_out(_plan.to_json(res, top_k))
    else:
        click.echo(_plan.table_text(res, top_k))
    if csv_path:
        from .atomic import atomic_path

        with atomic_path(Path(csv_path)) as tmp:
            _plan.csv_table(res, top_k).to_csv(tmp, index=False)
        if not as_json:
            click.echo(f"wrote {csv_path}")
    if output:
        from .report.plan_report import write_outputs

        for p in write_outputs(res, top_k, Path(output)):
            if not as_json:
                click.echo(f"wrote {p}")


@main.command()
@click.option("--measurements", "-m", default="reports/measurements.csv", show_default=True,
              type=click.Path(dir_okay=False), help="CSV written by `perfmodel bench` (here or on a TPU/GPU host).")
@click.option("--hardware", "-H", default="cpu-local", show_default=True, help="Base spec to calibrate.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Calibrated hardware spec to write (YAML; usable by every command).")
@click.option("--workbook", type=click.Path(dir_okay=False), help="Also write a workbook with a Calibration sheet.")
@click.option("--name", default=None, help="Name of the calibrated spec [default: the output file's "
                                           "name without its suffix].")
def calibrate(measurements, hardware, output, workbook, name):
    """Fit per-kind achievable FLOP/s, bandwidth, overhead, matmul shape and cache terms to the
    measurements; print held-out error beside the spec roofline's and the noise floor."""
    import yaml

    from . import api
    from .atomic import atomic_path
    from .calibrate.bench import read_measurements
    from .calibrate.fit import bench_workload, fit, report_text

    for p, suffix in ((output, (".yaml", ".yml")), (workbook, ".xlsx")):
        if p is not None:
            api.check_output(p, suffix)
    base = api.load_hardware(hardware)
    df = read_measurements(measurements)
    res = fit(df, base, source=str(measurements))
    if not res.groups:
        raise api.SpecError(f"{measurements}: no kernel group had enough shapes to fit; measure "
                            f"more (perfmodel bench) before calibrating.")
    hw = res.hardware(name or (Path(output).stem if Path(output).stem != "measurements" else None))
    click.echo(report_text(res))
    unfitted = sorted({r.group for r in res.rows if r.group != "composite"} - set(res.groups))
    if unfitted:
        click.echo(f"not fitted (too few stable shapes; ops of these groups get no t_calibrated): "
                   f"{', '.join(unfitted)}")
    with atomic_path(Path(output)) as tmp:
        tmp.write_text(f"# calibrated by perfmodel from {measurements}; base {base.name}\n"
                       + yaml.safe_dump(hw.model_dump(exclude_none=True), sort_keys=False, width=100))
    click.echo(f"wrote {output} (hardware spec {hw.name!r})")
    if workbook is not None:
        wl, index = bench_workload(res)
        path = api.write_workbook(Path(workbook), [wl], [hw], active=hw.name, calibration=(res, index))
        click.echo(f"wrote {path}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: rows, summary, relations.")
@click.option("--kernels", default=None,
              help="Comma-separated kernel kinds or glob patterns (e.g. 'matmul*,softmax'); default all.")
@click.option("--quick", is_flag=True, help="The quick bench subset instead of the full suite.")
@click.option("--tiny", is_flag=True, hidden=True, help="Every kernel kind once, tiny shapes (tests).")
def check(as_json, kernels, quick, tiny):
    """Cross-check our FLOPs and bytes for every bench kernel against XLA's cost_analysis (and
    jax.experimental.roofline where it applies). A FLOPs difference above 1% must satisfy the
    kernel kind's derived relation (perfmodel/calibrate/xla.py) to count as explained.

    Exit status 1 if any kernel has an unexplained FLOPs mismatch."""
    from .calibrate import xla

    mode = "tiny" if tiny else "quick" if quick else "full"
    bar = None
    if not as_json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="kernel", file=sys.stderr, leave=False)

    def progress(i, n, kernel):
        if bar is not None:
            bar.total = n
            bar.set_description(kernel.label()[:40])
            bar.update(1)

    try:
        res = xla.run_check(mode, kernels, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        _json_out(res.to_json())
    else:
        click.echo(xla.table_text(res))
    if res.mismatches:
        click.get_current_context().exit(1)


@main.command()
@click.option("--quick", is_flag=True,
              help="Fewer configs (5 on 1 device, 3 on 8) and a shorter timing budget (run "
                   "times: docs/measurements.md).")
@click.option("--hardware", "-H", default=None,
              help="Calibrated hardware spec to predict with [default: "
                   "reports/cpu-local-calibrated.yaml, from perfmodel calibrate].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SI units).")
def validate(quick, hardware, as_json):
    """Run a reference transformer written in plain JAX (train step with Adam; decode step
    with a KV cache) on 1 device and on 8 host devices (FSDP, TP), time it and print measured
    vs predicted step time (calibrated and roofline), a per-op breakdown where they differ
    most, and XLA cost_analysis FLOPs vs perfmodel's."""
    from .calibrate import validate as _v

    rep = _v.validate(quick=quick, hardware=hardware, log=lambda m: click.echo(m, err=True))
    if as_json:
        _json_out(rep)
    else:
        click.echo(_v.report_text(rep))


@main.command()
@click.argument("target", metavar="MODULE_OR_FILE:FUNCTION")
@click.option("--args", "args_", default=None, metavar="SPECS",
              help="The function's array arguments in JAX's notation, ';'-separated, in order: "
                   "'f32[512,1024];bf16[8,128,4096];i32[8]'.")
@click.option("--arg", "arg_list", multiple=True, metavar="SPEC",
              help="One array argument (repeatable; after those of --args).")
@click.option("--static", "statics", multiple=True, metavar="NAME=VALUE",
              help="A non-array keyword argument (a Python literal: 4, 0.5, True, 'gelu'). "
                   "Repeatable.")
@click.option("--hardware", "-H", required=True, help="Chip name or hardware YAML (a calibrated "
                                                      "spec adds t_calibrated).")
@click.option("--mesh", default=None, metavar="AXES",
              help="Mesh axes of the program's collectives, outermost first: 'x=8' or "
                   "'data=2,model=4' (that many host devices are simulated here).")
@click.option("--slice", "slice_", default=None,
              help="The chips holding the mesh (default: the mesh sizes, e.g. 8 or 2x4).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SI units).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write a live Excel workbook.")
@click.option("--workload-out", type=click.Path(dir_okay=False),
              help="Write the ops as a workload YAML (roofline, compare, sweep take it).")
@click.option("--annotations", type=click.Path(dir_okay=False),
              help="YAML mapping custom-call targets to op specs (else they are 'unpriced').")
@click.option("--measure", is_flag=True,
              help="Also run the function here: t_measured per call and per row (profile).")
def analyze(target, args_, arg_list, statics, hardware, mesh, slice_, as_json, output,
            workload_out, annotations, measure):
    """The roofline spreadsheet of your own JAX function: jitted and lowered with abstract
    arguments (never run unless --measure), XLA's program read as ledger ops (matmuls, fused
    elementwise kernels, collectives) named by their named_scope, and priced on the chip.
    Counting conventions: perfmodel/calibrate/analyze.py."""
    from . import api
    from .analysis import load_annotations
    from .argspec import load_function, parse_arrays, parse_mesh, parse_statics
    from .calibrate.analyze import abstract_arrays

    for p, suffix in ((output, ".xlsx"), (workload_out, (".yaml", ".yml"))):
        if p:
            api.check_output(Path(p), suffix)
    hw = api.load_hardware(hardware)
    ann = load_annotations(annotations) if annotations else None
    mesh_d = parse_mesh(mesh) if mesh else None
    specs = parse_arrays(args_, arg_list)
    kwargs = parse_statics(statics)
    if mesh_d:
        import math as _m

        from .calibrate.xla_collectives import host_devices

        n = _m.prod(mesh_d.values())
        try:
            host_devices(n)
        except RuntimeError as e:
            raise api.SpecError(f"--mesh {mesh}: {e}") from None
    fn = load_function(target, kwargs)
    label = target.rpartition(":")[2]  # as the user named it (a wrapper may rename it)
    a = api.analyze(fn, *abstract_arrays(specs), hardware=hw, mesh=mesh_d, slice=slice_,
                    annotations=ann, measure=measure, name=f"analyze-{label}")
    a.function = label
    if as_json:
        _json_out(a.to_json())
    else:
        click.echo(a.table())
    if workload_out:
        from .atomic import atomic_path

        with atomic_path(Path(workload_out)) as tmp:
            tmp.write_text(a.workload_yaml())
        if not as_json:
            click.echo(f"wrote {workload_out}")
    if output:
        path = api.write_workbook(Path(output), [a.to_workload()], [hw], active=hw.name)
        if not as_json:
            click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
