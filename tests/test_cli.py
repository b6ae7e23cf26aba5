"""The command line: `roofline --json` (one strict JSON object), `hardware`, `schema`."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from perfmodel import api, catalog
from perfmodel.cli import main
from perfmodel.specs import Hardware

OP_FIELDS = {"name", "kind", "flops", "hbm_bytes", "intensity", "t_compute", "t_memory",
             "t_lower", "t_upper", "bound"}
TOTAL_SUMS = ("flops", "hbm_bytes", "t_lower", "t_upper")
COURSE = ["course-attention", "course-matmul-sweep", "course-elementwise", "course-big-matmul"]


def _no_constants(name):
    raise AssertionError(f"non-standard JSON constant {name} in the output")


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity (which Python's json would accept by default)."""
    return json.loads(text, parse_constant=_no_constants)


def cli(*args: str):
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, (res.output, res.exception)
    return res


@pytest.mark.parametrize("chip", ["tpu-v4", "h100"])
@pytest.mark.parametrize("workload", COURSE)
def test_roofline_json_is_one_object_with_sums(chip, workload):
    res = cli("roofline", "--hardware", chip, "--workload", workload, "--json")
    js = strict_json(res.stdout)  # the whole stdout is exactly one JSON value
    assert isinstance(js, dict)
    assert {"schema_version", "hardware", "workload", "ops", "total"} <= set(js)
    assert js["schema_version"] == 2
    assert js["hardware"] == chip and js["workload"] == workload
    ops = js["ops"]
    assert len(ops) == len(catalog.load_workload(workload).ops) > 0
    for op in ops:
        assert OP_FIELDS <= set(op), OP_FIELDS - set(op)
        assert op["bound"] in ("compute", "memory")
        assert op["t_lower"] == max(op["t_compute"], op["t_memory"])
        if op["kind"] == "attention":
            assert {"onchip_bytes", "fits_onchip"} <= set(op)
            assert isinstance(op["fits_onchip"], bool)
    for k in TOTAL_SUMS:
        assert js["total"][k] == pytest.approx(sum(op[k] for op in ops), rel=1e-12), k


def test_roofline_json_numbers_course_attention_v4():
    # spot values through the CLI (derivations in test_core): fused S=2048 bf16 moves
    # 8*S*D = 8*2048*128 = 2097152 bytes and needs 2*S^2 = 8388608 bytes on chip (fits 160 MB);
    # fused S=16384 needs 2*16384^2 = 536870912 bytes and does not fit
    js = strict_json(cli("roofline", "-H", "tpu-v4", "-w", "course-attention", "--json").stdout)
    ops = {o["name"]: o for o in js["ops"]}
    assert ops["fused-2048"]["hbm_bytes"] == 2097152
    assert ops["fused-2048"]["onchip_bytes"] == 8388608 and ops["fused-2048"]["fits_onchip"]
    assert ops["fused-16384"]["onchip_bytes"] == 536870912
    assert ops["fused-16384"]["fits_onchip"] is False


def test_non_finite_values_are_null(monkeypatch):
    # A chip with zero bandwidth cannot be loaded from YAML (bad input); build one around the
    # validator so t_memory = bytes/0 = inf and mbu = bytes/(inf*0) = nan reach the JSON writer.
    v4 = catalog.load_hardware("tpu-v4")
    broken = Hardware.model_construct(**{**dict(v4), "hbm_bandwidth": 0.0})
    monkeypatch.setattr(api, "load_hardware", lambda name: broken)
    import warnings

    with warnings.catch_warnings(record=True) as seen:  # numpy divides by zero inside...
        warnings.simplefilter("always")
        res = cli("roofline", "-H", "tpu-v4", "-w", "course-matmul-sweep", "--json")
    assert not [w for w in seen if w.category is RuntimeWarning]  # ...but no warning leaks out
    js = strict_json(res.stdout)
    op = js["ops"][0]
    assert op["t_memory"] is None and op["t_lower"] is None and op["mbu"] is None
    assert op["flops"] > 0 and math.isfinite(op["t_compute"])  # finite values stay numbers
    # a total over an infinite term is not finite either (not the sum of the finite ones)
    assert js["total"]["t_memory"] is None and js["total"]["t_lower"] is None
    assert js["total"]["flops"] == pytest.approx(sum(o["flops"] for o in js["ops"]), rel=1e-12)


def test_roofline_table():
    res = cli("roofline", "-H", "tpu-v4", "-w", "course-attention")
    for op in catalog.load_workload("course-attention").ops:
        assert op.name in res.stdout
    assert res.stderr == ""


def test_hardware_list_names_every_chip():
    res = cli("hardware")
    listed = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    assert set(listed) == set(catalog.builtin_names("hardware"))  # cpu-local too
    v4 = next(line for line in res.stdout.splitlines() if line.startswith("tpu-v4"))
    assert "1.23 TB/s" in v4 and "275 TFLOP/s" in v4


def test_hardware_show():
    res = cli("hardware", "show", "tpu-v5e")
    assert res.stdout.startswith("name: tpu-v5e")
    # quantities as people write them: 810e9 B/s, 16 x 2^30 bytes, 1.97e14 FLOP/s, 1e-6 s
    for text in ("hbm_bandwidth: 810 GB/s", "hbm_capacity: 16 GiB", "bf16: 197 TFLOP/s",
                 "hop_latency: 1 us"):
        assert text in res.stdout
    assert "sources:" in res.stdout and "alternatives:" in res.stdout


@pytest.mark.parametrize("chip", catalog.builtin_names("hardware"))
def test_hardware_show_reads_back_as_the_same_spec(tmp_path, chip):
    # the shown units are for people, but each must parse back to the very same number
    from perfmodel.specs import Hardware

    p = tmp_path / "hw.yaml"
    p.write_text(cli("hardware", "show", chip).stdout)
    again = catalog.load_hardware(str(p))
    want = catalog.load_hardware(chip)
    assert isinstance(again, Hardware)
    assert again.model_dump(mode="json") == want.model_dump(mode="json")


def test_hardware_show_json():
    js = strict_json(cli("hardware", "show", "tpu-v5e", "--json").stdout)
    assert js["hbm_bandwidth"] == 810e9  # 810 GB/s
    assert js["hbm_capacity"] == 16 * 2**30  # 16 GiB = 17179869184 bytes
    assert js["peak_flops"] == {"bf16": 1.97e14, "int8": 3.94e14}


def test_hardware_show_by_path():
    path = catalog.DATA / "hardware" / "h100.yaml"
    assert cli("hardware", "show", str(path)).stdout.startswith("name: h100")


@pytest.mark.parametrize("what", ["hardware", "workload"])
def test_schema(what):
    js = strict_json(cli("schema", what).stdout)
    assert js["type"] == "object" and "properties" in js
    assert {"hardware": "hbm_bandwidth", "workload": "ops"}[what] in js["properties"]


def test_schema_rejects_unknown_kind():
    res = CliRunner().invoke(main, ["schema", "chip"])
    assert res.exit_code == 2  # click's usage error, also status 2
    assert "hardware" in res.stderr and "workload" in res.stderr


def test_help_documents_exit_status():
    res = cli("--help")
    text = " ".join(res.stdout.split())
    assert "Exit status: 0 success, 2 bad input" in text
    for command in ("roofline", "hardware", "schema", "report"):
        assert command in res.stdout


# ---- report: a summary people read ---------------------------------------------------------

def test_report_summarises_every_pair_and_lists_skipped_and_not_fitting(tmp_path):
    res = CliRunner().invoke(main, ["report", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) <= 150, len(lines)
    hws, wls = api.select_hardware(None), api.select_workloads(None)
    evaluated, skipped, big = [], [], []
    for hw in hws:  # which pairs evaluate, which do not, from the API (not from the report)
        for wl in wls:
            try:
                total = api.to_json(hw, wl)["total"]
            except api.SpecError:
                skipped.append((wl.name, hw.name))
                continue
            evaluated.append((wl.name, hw.name))
            if total.get("fits_memory") is False:
                big.append((wl.name, hw.name))
    assert skipped and big  # the built-ins exercise both lists
    # the summary panels: a row per workload, a column per chip; every evaluated pair has a
    # cell with its t_step, every skipped one says 'skip', the not-fitting ones end in '!'
    cells = {}
    chips = []
    for ln in lines:
        cols = re.split(r"\s{2,}", ln.strip())
        if cols[0] == "workload":
            chips = cols[1:]
        elif chips and len(cols) == len(chips) + 1 and cols[0] in {w.name for w in wls}:
            cells.update({(cols[0], c): v for c, v in zip(chips, cols[1:])})
    assert sorted(k for k, v in cells.items() if v != "skip") == sorted(evaluated)
    assert sorted(k for k, v in cells.items() if v == "skip") == sorted(skipped)
    assert sorted(k for k, v in cells.items() if v.endswith("!")) == sorted(big)
    fit_at = lines.index(next(ln for ln in lines if ln.startswith("DOES NOT FIT in HBM")))
    skip_at = lines.index(next(ln for ln in lines if ln.startswith("skipped (")))
    listed_big = lines[fit_at + 1:fit_at + 1 + len(big)]
    assert sorted(tuple(ln.split(":")[0].strip().split(" on ")) for ln in listed_big) == sorted(big)
    listed_skip = lines[skip_at + 1:skip_at + 1 + len(skipped)]
    for (w, c), ln in zip(sorted(skipped, key=lambda p: (p[1], p[0])),
                          sorted(listed_skip, key=lambda ln: (ln.split("'")[3], ln.split("'")[1]))):
        assert f"'{w}' on '{c}'" in ln, ln
        clauses = [x.strip() for x in re.split(r"[:;]", ln) if x.strip()]
        assert len(clauses) == len(set(clauses)), ln  # no part of a message said twice
    assert lines.index(next(ln for ln in lines if ln.startswith("workload "))) < fit_at < skip_at
    # the per-op tables: one file per evaluated pair, none for a skipped one
    files = {p.name for p in (tmp_path / "tables").glob("*.txt")
             if not p.name.startswith("compare-")}
    assert files == {f"{w}--{c}.txt" for w, c in evaluated}
    text = (tmp_path / "tables" / "course-attention--tpu-v4.txt").read_text()
    assert text.startswith("course-attention on tpu-v4\nop ") and "flash-16384" in text
    assert "flash-16384" not in res.stdout  # per-op rows only with --detail


def test_report_detail_prints_the_per_op_tables(tmp_path):
    res = CliRunner().invoke(main, ["report", "-o", str(tmp_path), "--detail", "-H", "tpu-v4",
                                    "-w", "course-attention,course-elementwise"])
    assert res.exit_code == 0, res.output
    for name in ("course-attention", "course-elementwise"):
        table = (tmp_path / "tables" / f"{name}--tpu-v4.txt").read_text()
        assert table in res.stdout


def test_summary_bound_is_the_one_taking_most_of_t_lower():
    from perfmodel.report.tables import summary_cell, summary_table

    rows = [{"bound": "memory", "t_lower": 3e-3}, {"bound": "compute", "t_lower": 1e-3}]
    step = {"t_step": 5.0, "t_lower": 5.0, "mfu": 0.5, "fits_memory": False,
            "bounds": {"embed": "memory", "layer": "comm", "lm_head": "compute"},
            "group_times": {"embed": 0.5, "layer": 4.0, "lm_head": 0.5}}
    # kernels: memory 3 ms of 4 ms = 75%; model: by group, comm 4 s of 5 s = 80% (its rows'
    # own bounds do not count: the step overlaps communication within a group)
    assert summary_cell(rows, {"t_lower": 4e-3}) == "4 ms m"
    assert summary_cell(rows, step) == "5 s n 50%!"
    text = summary_table([("kernels", "chip-a", rows, {"t_lower": 4e-3}),
                          ("model", "chip-b", rows, step)], ["chip-a", "chip-b"]).splitlines()
    assert text[0].split() == ["workload", "chip-a", "chip-b"]
    assert text[2].split() == ["kernels", "4", "ms", "m", "skip"]
    assert text[3].split() == ["model", "skip", "5", "s", "n", "50%!"]


def test_report_explains_mfu_above_100_percent(tmp_path):
    # causal prefill of Llama-3-70B: PaLM's 12 L H Q T counts every score, the kernel about
    # half, so MFU passes 100% on some chips; the report says why below its table
    from perfmodel.report.tables import summary_table

    over = {"t_step": 1.0, "mfu": 1.05}
    text = summary_table([("w", "c", [], over)], ["c"])
    assert "MFU above 100%" in text and "HFU" in text
    assert "MFU above 100%" not in summary_table([("w", "c", [], {"t_step": 1.0, "mfu": 0.5})],
                                                 ["c"])
