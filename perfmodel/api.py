"""The public API; the CLI and users' scripts call these."""

from __future__ import annotations

from pathlib import Path

from .atomic import check_output
from .catalog import all_hardware, all_workloads, builtin_names, load_hardware, load_workload  # noqa: F401
from .engine import evaluate, evaluate_rows, totals
from .results import to_json
from .specs import Hardware, SpecError, Workload

__all__ = [
    "check_output", "load_hardware", "load_workload", "evaluate", "evaluate_rows", "to_json",
    "totals", "select_hardware", "select_workloads", "json_schema", "write_workbook",
    "roofline_png", "Hardware", "Workload", "SpecError", "builtin_names", "sweep", "sweep_totals",
    "measure_collectives", "all_hardware", "analyze", "Analysis",
]


def analyze(fn, *example_args, hardware, mesh=None, **kw):
    """The roofline spreadsheet of a JAX function: ``fn(*example_args)`` jitted and lowered
    (never run unless ``measure=True``), its XLA program turned into ledger ops and priced on
    ``hardware``. Returns an ``Analysis`` (``rows`` DataFrame, ``totals``, ``to_json()``,
    ``to_workload()``). See perfmodel/calibrate/analyze.py for how instructions are counted."""
    from .analysis import analyze as _analyze

    return _analyze(fn, *example_args, hardware=hardware, mesh=mesh, **kw)


def __getattr__(name):
    if name == "Analysis":
        from .analysis import Analysis

        return Analysis
    raise AttributeError(name)


def sweep(workload, hardware, vary, **kw):
    """Every combination of the varied op fields (``"m=1..1024:1"``, ``"seq=1024..32768:log2"``,
    ``"impl=naive,flash"``) on each chip: a DataFrame, one row per (configuration, chip, op).
    ``workload``/``hardware`` may be names, paths or loaded specs."""
    from .sweeps import sweep as _sweep

    wl = workload if isinstance(workload, Workload) else load_workload(workload)
    hws = [h if isinstance(h, Hardware) else load_hardware(h)
           for h in ([hardware] if isinstance(hardware, (str, Hardware)) else hardware)]
    return _sweep(wl, hws, [vary] if isinstance(vary, str) else list(vary), **kw)


def sweep_totals(df):
    """One row per (configuration, chip): sums over the ops of a ``sweep`` table."""
    from .sweeps import sweep_totals as _totals

    return _totals(df)


def _names(names: str, what: str) -> list[str]:
    """A comma-separated list of names or paths: none empty, none twice."""
    out = [n.strip() for n in names.split(",")]
    if not any(out):
        raise SpecError(f"--{what} {names!r}: no names given; write one or more, separated by "
                        f"commas, e.g. --{what} {'tpu-v5e,h100' if what == 'hardware' else 'course-attention'}.")
    if not all(out):
        raise SpecError(f"--{what} {names!r}: an empty name between commas; remove the extra comma.")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise SpecError(f"--{what} {names!r}: {', '.join(twice)} given twice; name each once "
                        f"(for a variant of a chip use --set CHIP.FIELD=VALUE).")
    return out


def select_hardware(names: str | None) -> list[Hardware]:
    if names is None or names == "":
        return [h for h in all_hardware() if h.kind != "cpu"]
    out: dict[str, Hardware] = {}  # by name: an alias (ironwood = tpu-v7) never lists a chip twice
    for n in _names(names, "hardware"):  # the same name written twice is an error
        hw = load_hardware(n)
        out.setdefault(hw.name, hw)
    return list(out.values())


def select_workloads(names: str | None) -> list[Workload]:
    if names is None or names == "":
        return all_workloads()
    wls = [load_workload(n) for n in _names(names, "workload")]
    return wls


def json_schema(what: str) -> dict:
    return {"hardware": Hardware, "workload": Workload}[what].model_json_schema()


def roofline_png(hw, series, path):
    from .report.plots import roofline_png as _png

    return _png(hw, series, path)


def write_workbook(path: Path, workloads, hardware, active: str | None = None,
                   measured_collectives=None, calibration=None, plan=None) -> Path:
    from .report.workbook import write_workbook as _write

    return _write(Path(path), workloads, hardware, active=active,
                  measured_collectives=measured_collectives, calibration=calibration, plan=plan)


def measure_collectives(quick: bool = True) -> list[dict]:
    """Time the collectives on 8 JAX host devices (in a subprocess: the device count must be
    set before jax starts). Rows: collective, bytes, measured_s, predicted_s, ..."""
    from .calibrate.xla_collectives import in_subprocess

    sizes = [1 << 16, 1 << 20] if quick else [1 << 16, 1 << 20, 1 << 23]
    return in_subprocess("time_collectives", sizes=sizes, budget="quick" if quick else "full")
