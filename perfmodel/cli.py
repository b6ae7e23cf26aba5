"""Command line: thin wrappers over the public API. Exit codes: 0 ok, 2 bad input.

Heavy modules (pandas, matplotlib, the Excel writer, jax) are imported inside the commands
that need them, so ``perfmodel --help`` stays fast and never imports jax.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """Turns SpecError (bad input) into a one-paragraph message and exit status 2."""

    def invoke(self, ctx):
        from .specs import SpecError

        try:
            return super().invoke(ctx)
        except SpecError as e:
            click.echo(f"perfmodel: error: {e}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perfmodel")
def main():
    """perfmodel: roofline models of LLM kernels on TPUs and GPUs, as tables, JSON, PNG plots
    and live Excel workbooks.

    Exit status: 0 success, 2 bad input (file, field or value; the message says which).
    """


def _json_out(obj) -> None:
    click.echo(json.dumps(obj, indent=2, allow_nan=False))


@main.command()
@click.option("--hardware", "-H", required=True, help="Built-in chip name or path to a YAML spec.")
@click.option("--workload", "-w", required=True, help="Built-in workload name or path to a YAML file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SI units).")
@click.option("--output", "-o", type=click.Path(dir_okay=True), help="Write a live Excel workbook.")
def roofline(hardware, workload, as_json, output):
    """Roofline of one workload on one chip: a table, --json, or a workbook (--output)."""
    from . import api

    if output:
        api.check_output(Path(output))
    hw, wl = api.load_hardware(hardware), api.load_workload(workload)
    rows = api.evaluate_rows(hw, wl)
    if as_json:
        _json_out(api.to_json(hw, wl, rows))
    else:
        from .report.tables import roofline_table

        click.echo(roofline_table(f"{wl.name} on {hw.name}", rows, api.totals(rows)))
    if output:
        path = api.write_workbook(Path(output), [wl], [hw], active=hw.name)
        if not as_json:
            click.echo(f"wrote {path}")


@main.command()
@click.option("--output-dir", "-o", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--hardware", "-H", default=None, help="Comma-separated chips (default: all built-in).")
@click.option("--workload", "-w", default=None, help="Comma-separated workloads (default: all built-in).")
def report(output_dir, hardware, workload):
    """Every built-in workload on every built-in chip: tables, a roofline PNG per chip and
    reports/perfmodel.xlsx."""
    from . import api

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hws = api.select_hardware(hardware)
    wls = api.select_workloads(workload)
    for hw in hws:
        series = {}
        for wl in wls:
            rows = api.evaluate_rows(hw, wl)
            series[wl.name] = rows
            click.echo(roofline_table_for(wl, hw, rows) + "\n")
        png = api.roofline_png(hw, series, out / f"roofline-{hw.name}.png")
        click.echo(f"wrote {png}\n")
    active = "tpu-v4" if any(h.name == "tpu-v4" for h in hws) else hws[0].name  # the course's chip
    path = api.write_workbook(out / "perfmodel.xlsx", wls, hws, active=active)
    click.echo(f"wrote {path}")


def roofline_table_for(wl, hw, rows):
    from . import api
    from .report.tables import roofline_table

    return roofline_table(f"{wl.name} on {hw.name}", rows, api.totals(rows))


@main.group(invoke_without_command=True)
@click.pass_context
def hardware(ctx):
    """List built-in chips, or `hardware show NAME` for one spec with its sources."""
    if ctx.invoked_subcommand is None:
        from . import api
        from .units import fmt_si

        for hw in api.select_hardware(None):
            peaks = ", ".join(f"{d} {fmt_si(v, 'FLOP/s')}" for d, v in hw.peak_flops.items())
            click.echo(f"{hw.name:10s} {hw.kind}  HBM {fmt_si(hw.hbm_capacity, 'B')} at "
                       f"{fmt_si(hw.hbm_bandwidth, 'B/s')}, on-chip {fmt_si(hw.onchip_memory, 'B')}; {peaks}")


@hardware.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def hardware_show(name, as_json):
    """One chip's parameters (SI), sources and alternatives."""
    from . import api

    hw = api.load_hardware(name)
    data = hw.model_dump(mode="json", exclude_none=True)
    if as_json:
        _json_out(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, width=100))


@main.command()
@click.argument("what", type=click.Choice(["hardware", "workload"]))
def schema(what):
    """Print the JSON Schema of hardware or workload YAML files (for editors)."""
    from . import api

    _json_out(api.json_schema(what))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
