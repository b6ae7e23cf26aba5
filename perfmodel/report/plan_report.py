"""perfmodel plan's files: a workbook whose Plan sheet lists the best configurations (the best
one's sheets beside it) and a Pareto PNG (tokens/s per chip against latency or cost)."""

from __future__ import annotations

from pathlib import Path

from .. import plan
from ..formula import Ref
from ..model import expand_workload
from ..specs import SpecError, Workload
from .plots import pareto_png
from .workbook import write_workbook


def write_outputs(result: "plan.Result", k: int, path: Path) -> list[Path]:
    """The workbook (a Plan sheet of the top configurations beside the best one's sheets) and
    the Pareto PNG (tokens/s per chip against latency, or against cost)."""
    import yaml

    ranked = result.ranked()
    if not len(ranked):
        raise SpecError(f"--output {path}: no feasible configuration to write; relax the "
                        f"limits or search more chips")
    row = ranked.iloc[0]
    hw = result.hardware[int(row["hi"])]
    wl = expand_workload(Workload.model_validate(yaml.safe_load(plan.candidate_yaml(result, row))))
    plan_rows = plan.csv_table(result, k)
    lat = plan.latency_column(result.req.mode)  # ttft or t_per_token: the step time
    plan_rows.attrs["formulas"] = {**plan.PLAN_FORMULAS, **({lat: Ref("t_step")} if lat else {})}
    out = [write_workbook(path, [wl], [hw], active=hw.name, plan=plan_rows)]
    f = result.feasible
    cost = result.req.objective == "cost"
    x = f["usd_per_mtok"] if cost else f["t_step"]
    xlabel = "USD per million tokens" if cost else {
        "train": "step time (s)", "prefill": "time to first token (s)",
        "decode": "time per output token (s)"}[result.req.mode]
    png = path.with_name(path.stem + "-pareto.png")
    out.append(pareto_png(x.to_numpy(float), f["tokens_per_s_per_chip"].to_numpy(float),
                          f["chip"].to_numpy(), png, xlabel,
                          f"{result.req.name} ({result.req.mode}): {len(f):,} feasible "
                          f"configurations"))
    return out
