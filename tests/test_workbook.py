"""The live workbook: LibreOffice recalculation parity, what-if edits, goldens, injection and
output handling."""

from __future__ import annotations

import math
import os
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from perfmodel import catalog, engine, results
from perfmodel.cli import main
from perfmodel.report.workbook import write_workbook
from perfmodel.specs import Hardware, Workload

from . import lo
from .wbdump import dump

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PERFMODEL_UPDATE_GOLDEN") == "1"
WORKLOADS = ["course-attention", "course-elementwise", "course-matmul-sweep", "precision-mix"]
CHIPS = ["tpu-v4", "h100", "tpu-v5e"]


def _book(tmp_path, workloads=WORKLOADS, chips=CHIPS, active="tpu-v4"):
    wls = [catalog.load_workload(w) for w in workloads]
    hws = [catalog.load_hardware(h) for h in chips]
    return write_workbook(tmp_path / "book.xlsx", wls, hws, active=active), wls, hws


def _same(a, b, rel=1e-9, abs_tol=1e-300):
    """Recalculated vs expected: errors (#DIV/0!, #N/A) match Python's non-finite."""
    def norm(x):
        if isinstance(x, str) and x.startswith("#"):
            return None
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    a, b = norm(a), norm(b)
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def _ops_expected(ws, rows):
    """(cell, expected) for every formula cell on the Ops sheet given Python's op rows."""
    header = [str(c.value).split("\n")[0] for c in ws[1]]
    for i, row in enumerate(rows):
        for j, name in enumerate(header):
            cell = ws.cell(row=2 + i, column=1 + j)
            if isinstance(cell.value, str) and cell.value.startswith("=") and name != "chip":
                yield cell.coordinate, row[name]


def _assert_parity(path, tmp_path, min_cells, abs_tol=1e-300):
    """Every formula cell, recalculated by LibreOffice, equals the value Python cached."""
    recalced = lo.convert(path, tmp_path / "lo")
    formulas = openpyxl.load_workbook(path)
    cached = openpyxl.load_workbook(path, data_only=True)
    fresh = openpyxl.load_workbook(recalced, data_only=True)
    n, bad = 0, []
    for ws in formulas.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str) and c.value.startswith("="):
                    n += 1
                    want = cached[ws.title][c.coordinate].value
                    got = fresh[ws.title][c.coordinate].value
                    if not _same(got, want, abs_tol=abs_tol):
                        bad.append((ws.title, c.coordinate, c.value, want, got))
    assert n > min_cells, n
    assert not bad, bad[:10]


@lo.needs_lo
def test_calibrated_prediction_is_a_live_formula(tmp_path):
    spec = tmp_path / "cal.yaml"
    spec.write_text("""base: cpu-local
name: cpu-local-calibrated
calibration:
  kinds:
    matmul_bf16: {peak_flops: 120 GFLOP/s, bandwidth: 20 GB/s, overhead: 20 us, small_dim: 24}
    elementwise_bf16: {peak_flops: 30 GFLOP/s, bandwidth: 22 GB/s, overhead: 18 us,
                  cache_bytes: 32 MiB, cache_bandwidth: 60 GB/s, combine: max}
sources:
  calibration: synthetic parameters for this test
""")
    hw = catalog.load_hardware(spec)
    wls = [catalog.load_workload(w) for w in ("course-matmul-sweep", "course-elementwise")]
    path = write_workbook(tmp_path / "cal.xlsx", wls, [hw])
    _assert_parity(path, tmp_path, 100)
    ws = openpyxl.load_workbook(path)["Ops"]
    header = [str(c.value).split("\n")[0] for c in ws[1]]
    col = header.index("t_calibrated") + 1
    f = ws.cell(row=2, column=col).value
    assert "cal_matmul_bf16_peak_flops" in f and "cal_matmul_bf16_small_dim" in f, f


@lo.needs_lo
def test_every_formula_cell_recalculates_to_python(tmp_path):
    path, wls, hws = _book(tmp_path)
    _assert_parity(path, tmp_path, 500)
    # and the cached values are Python's own numbers for the active chip
    formulas = openpyxl.load_workbook(path)
    ops = openpyxl.load_workbook(path, data_only=True)["Ops"]
    rows = [r for wl in wls for r in engine.evaluate_rows(hws[0], wl)]
    for coord, want in _ops_expected(formulas["Ops"], rows):
        assert _same(ops[coord].value, want), coord


def _edit_and_recalc(tmp_path, path, edits):
    wb = openpyxl.load_workbook(path)
    for sheet, coord, value in edits:
        wb[sheet][coord] = value
    edited = tmp_path / "edited.xlsx"
    wb.save(edited)  # openpyxl keeps formulas and drops cached values: LO must recompute
    return openpyxl.load_workbook(lo.convert(edited, tmp_path / "lo2"), data_only=True)


def _input_cell(path, name):
    wb = openpyxl.load_workbook(path)
    sheet, coord = list(wb.defined_names[name].destinations)[0]
    return sheet, coord.replace("$", "")


@lo.needs_lo
def test_what_if_hbm_bandwidth_and_active_chip(tmp_path):
    path, wls, hws = _book(tmp_path)
    sheet, coord = _input_cell(path, "hbm_bandwidth")
    # the documented way: type the what-if into the override column beside the named cell
    override = "C" + coord.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    fresh = _edit_and_recalc(tmp_path, path, [(sheet, override, 2.5e12)])
    v4 = hws[0]
    faster = Hardware.model_validate({**v4.model_dump(), "hbm_bandwidth": "2.5e12 B/s"})
    rows = [r for wl in wls for r in engine.evaluate_rows(faster, wl)]
    formulas = openpyxl.load_workbook(path)["Ops"]
    checked = 0
    for c, want in _ops_expected(formulas, rows):
        assert _same(fresh["Ops"][c].value, want), (c, fresh["Ops"][c].value, want)
        checked += 1
    assert checked > 100
    # the edit really changed something: a memory-bound op's t_memory moved
    assert rows[0]["t_memory"] != engine.evaluate_rows(v4, wls[0])[0]["t_memory"]

    # switch the drop-down to h100: every Ops cell follows
    fresh = _edit_and_recalc(tmp_path, path, [("Inputs", "B2", "h100")])
    rows = [r for wl in wls for r in engine.evaluate_rows(hws[1], wl)]
    for c, want in _ops_expected(formulas, rows):
        assert _same(fresh["Ops"][c].value, want), (c, fresh["Ops"][c].value, want)


@lo.needs_lo
def test_editing_sequence_length_recomputes_attention(tmp_path):
    path, wls, hws = _book(tmp_path, workloads=["course-attention"], chips=["tpu-v4"])
    ws = openpyxl.load_workbook(path)["Workload"]
    header = [str(c.value).split("\n")[0] for c in ws[1]]
    seq_col = header.index("seq") + 1
    kv_col = header.index("kv_seq") + 1
    cell = ws.cell(row=2, column=seq_col).coordinate
    kv = ws.cell(row=2, column=kv_col).coordinate
    fresh = _edit_and_recalc(tmp_path, path, [("Workload", cell, 4096), ("Workload", kv, 4096)])
    op = wls[0].ops[0].model_copy(update={"seq": 4096})  # copy is fine: fields already valid
    want = engine.evaluate_op(op, hws[0])
    formulas = openpyxl.load_workbook(path)["Ops"]
    for c, w in _ops_expected(formulas, [want]):
        assert _same(fresh["Ops"][c].value, w), c


def test_cached_values_visible_without_recalculation(tmp_path):
    path, wls, hws = _book(tmp_path, workloads=["course-big-matmul"], chips=["tpu-v4"])
    df = pd.read_excel(path, sheet_name="Ops")
    t = df[[c for c in df.columns if c.startswith("t_lower")][0]]
    assert t.iloc[0] == pytest.approx(2 * 16384**3 / 2.75e14)


@pytest.mark.parametrize("case", [("course-attention", "tpu-v4"), ("course-elementwise", "h100")])
def test_golden_dump(tmp_path, case):
    wl, chip = case
    path, _, _ = _book(tmp_path, workloads=[wl], chips=[chip], active=chip)
    text = dump(path)
    gold = GOLDEN / f"{wl}--{chip}.txt"
    if UPDATE or not gold.exists():
        gold.write_text(text)
        if not UPDATE:
            pytest.fail(f"golden {gold.name} was missing and has been written; rerun")
    assert text == gold.read_text(), (
        f"workbook differs from {gold}; if intended, rerun with PERFMODEL_UPDATE_GOLDEN=1 "
        "and review the diff")


def test_formula_injection_is_written_as_text(tmp_path):
    wl = Workload.model_validate({"name": "evil", "ops": [
        {"name": n, "kind": "matmul", "m": 8, "k": 8, "n": 8}
        for n in ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2", "@SUM(A1)"]]})
    path = write_workbook(tmp_path / "evil.xlsx", [wl], [catalog.load_hardware("tpu-v4")])
    wb = openpyxl.load_workbook(path)
    for sheet in ("Ops", "Workload"):
        col = 1 + [c.value for c in wb[sheet][1]].index("op")
        names = [wb[sheet].cell(row=r, column=col) for r in range(2, 6)]
        for c, want in zip(names, [o.name for o in wl.ops]):
            assert c.data_type == "s" and c.value == want


def _run(args):
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("kind", ["missing_dir", "is_dir", "parent_is_file"])
def test_bad_output_paths_exit_2_and_leave_nothing(tmp_path, kind):
    (tmp_path / "afile").write_text("x")
    target = {"missing_dir": tmp_path / "nope" / "o.xlsx", "is_dir": tmp_path,
              "parent_is_file": tmp_path / "afile" / "o.xlsx"}[kind]
    before = sorted(tmp_path.rglob("*"))
    r = _run(["roofline", "-H", "tpu-v4", "-w", "course-attention", "-o", str(target)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_workload_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nops:\n  - {name: a, kind: matmul, m: 0, k: 1, n: 1}\n")
    out = tmp_path / "o.xlsx"
    r = _run(["roofline", "-H", "tpu-v4", "-w", str(bad), "-o", str(out)])
    assert r.exit_code == 2 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_failure_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from perfmodel.report.workbook.sheets import roofline

    def boom(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(roofline, "write", boom)
    with pytest.raises(RuntimeError):
        _book(tmp_path)
    assert list(tmp_path.iterdir()) == []


PIPELINED = {"name": "llama-7b-8l-pipelined", "slice": "4", "mesh": {"stage": 4}, "ops": [
    {"kind": "transformer", "name": "llama2-7b-8l", "layers": 8, "d_model": 4096, "heads": 32,
     "kv_heads": 32, "head_dim": 128, "d_ff": 11008, "vocab": 32000, "mlp": "gated",
     "mode": "train", "batch": 8, "seq": 512, "parallelism": {"pipeline": "stage"},
     "microbatches": 8}]}
STEP_NAMES = {"step_t_lower": "t_lower", "step_t_upper": "t_upper", "step_t_step": "t_step",
              "step_mfu": "mfu", "step_tokens_per_s": "tokens_per_s",
              "step_memory_bytes_per_chip": "memory_bytes_per_chip"}


@lo.needs_lo
@pytest.mark.parametrize("workload, chip", [
    (PIPELINED, "h100"),                  # 4 stages, 8 microbatches: the bubble stretches the step
    ("llama3-70b-prefill", "h100"),       # 8-way tensor parallel
    ("mixtral-8x7b-train", "tpu-v5p"),    # mixture of experts (all-to-all), FSDP
])
def test_model_sheet_named_cells_recalculate_to_json_total(tmp_path, workload, chip):
    from perfmodel.model import expand_workload

    wl = (expand_workload(Workload.model_validate(workload)) if isinstance(workload, dict)
          else catalog.load_workload(workload))
    hw = catalog.load_hardware(chip)
    path = write_workbook(tmp_path / "model.xlsx", [wl], [hw])
    _assert_parity(path, tmp_path, 100)
    total = results.to_json(hw, wl)["total"]
    fresh = openpyxl.load_workbook(tmp_path / "lo" / "model.xlsx", data_only=True)
    names = openpyxl.load_workbook(path).defined_names
    for name, key in STEP_NAMES.items():
        sheet, coord = list(names[name].destinations)[0]
        got = fresh[sheet][coord.replace("$", "")].value
        assert got == pytest.approx(total[key], rel=1e-9), (name, got, total[key])
    ws = fresh["Model"]
    vals = {str(r[0].value): r[1].value for r in ws.iter_rows() if r[0].value is not None}
    if isinstance(workload, dict):
        # the case of the issue: 4 stages, 8 microbatches run in m + p - 1 = 11 slots, so every
        # group but the optimizer takes 11/8 of its busy time (the sheet once left this out)
        assert vals["pipeline stretch (m+p-1)/m of every group but the optimizer"] == 11 / 8
        assert vals["pipeline bubble (p-1)/(m+p-1)"] == pytest.approx(3 / 11)
    assert vals["fits in HBM (memory per chip <= hbm_capacity)"] == total["fits_memory"]


@lo.needs_lo
def test_calibration_workbook_recalculates(tmp_path):
    """`perfmodel calibrate --workbook` on measurements of the whole suite: every formula cell,
    including the smooth cache term over working sets (in-place elementwise, one attention
    head) and decode attention priced from its gemv parts, recalculates to Python's value."""
    import json

    from perfmodel.calibrate import kernels as K
    from perfmodel.calibrate.bench import COLUMNS

    base = catalog.load_hardware("cpu-local")
    rows = []
    for i, k in enumerate(K.suite("full")):
        c = K.op_costs(k.name, k.params, k.dtype, base)
        # made-up times: a per-call cost, bytes 3x slower past a 32 MiB cliff, and a scatter
        # (an exact fit would leave relative errors of 1e-10, compared at rounding level)
        t = (5e-5 + c["t_compute"] + c["t_memory"] * (1 if c["hbm_bytes"] < 2**25 else 3)) \
            * (1 + 0.1 * math.sin(i))
        for p in (1, 2):
            rows.append({"kernel": k.name, "params": json.dumps(k.params, sort_keys=True, separators=(",", ":")),
                         "dtype": k.dtype, "median_s": t * (1 + 0.01 * p), "min_s": t, "p20_s": t,
                         "cv": 0.02, "reps": 10, "pass": p, "backend": "cpu", "device_kind": "cpu",
                         "n_devices": 1, "jax_version": "synthetic", "host": "test"})
    csv = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(csv, index=False)
    out = CliRunner().invoke(main, ["calibrate", "-m", str(csv), "-o", str(tmp_path / "cal.yaml"),
                                    "--workbook", str(tmp_path / "cal.xlsx")])
    assert out.exit_code == 0, out.output
    assert "MiB" in out.output  # some group chose a cache term
    # (a group with as many shapes as parameters fits exactly: its relative errors are ~1e-9
    # and agree only to rounding, hence an absolute tolerance far below any real error)
    _assert_parity(tmp_path / "cal.xlsx", tmp_path, 500, abs_tol=1e-12)
    formulas = [c.value for row in openpyxl.load_workbook(tmp_path / "cal.xlsx")["Ops"].iter_rows()
                for c in row if isinstance(c.value, str) and c.value.startswith("=")]
    assert any("cal_gemv_" in f and "cal_softmax_" in f for f in formulas)  # decode from parts
    assert any("_cache_sharpness" in f for f in formulas)


def test_shared_templates_are_each_ops_own_formulas_and_numbers():
    """Ops of one structure share a formula template (rendered once, filled per row) and are
    evaluated together: for every built-in workload each op's template is the tree op_columns
    builds for that op alone, and its numbers are the engine's."""
    from perfmodel.formula import to_excel
    from perfmodel.report.workbook.data import evaluate_book

    hws = [catalog.load_hardware(h) for h in ("tpu-v4", "h100", "tpu-v5p")]
    shared = 0
    for name in catalog.builtin_names("workloads"):
        wl = catalog.load_workload(name)
        data = evaluate_book([wl], hws, hws[0].name)
        templates = {}
        for row in data.rows:
            for hw in hws:
                c = row.by_chip.get(hw.name)
                if c is None:
                    continue
                templates.setdefault(id(c.template), []).append(row.index)
                _, cost, roof = engine.op_columns(row.op, hw, wl, symbolic=True, inputs=c.inputs)
                own = {**cost, **roof}
                assert list(own) == list(c.template.exprs), row.op.name
                for k, e in own.items():
                    assert to_excel(e, str) == to_excel(c.template.exprs[k], str), (name, row.op.name, k)
                want = engine.evaluate_op(row.op, hw, wl)
                for k in own:
                    assert _same(c.values[k], want[k], rel=1e-12, abs_tol=1e-300), (name, row.op.name, k)
        shared += sum(len(v) - 1 for v in templates.values())
    assert shared > 50  # the sharing is real: many ops reuse a template


def test_every_sheet_prints_one_page_wide_in_landscape(tmp_path):
    # print setup on every sheet: landscape, fit to one page width (any number of pages down),
    # header rows repeated on the tabular sheets
    path, _, _ = _book(tmp_path, workloads=["course-attention", "collectives-v5e", "course-model-train"])
    wb = openpyxl.load_workbook(path)
    assert {"Model", "Compare", "ByChip", "Collectives", "Roofline"} <= set(wb.sheetnames)
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        # (xlsxwriter leaves out fitToWidth="1", the default of the file format)
        assert (ws.page_setup.fitToWidth or 1, ws.page_setup.fitToHeight) == (1, 0), ws.title
    for name in ("Ops", "ByChip", "Workload", "Hardware", "Compare"):
        assert wb[name].print_title_rows, name


def test_chip_colours_and_workload_markers_are_fixed_and_distinct():
    from perfmodel.report.style import chip_color, workload_marker

    chips = catalog.builtin_names("hardware")
    assert len({chip_color(c) for c in chips}) == len(chips)  # every built-in chip its own
    names = catalog.builtin_names("workloads")
    assert len({workload_marker(w) for w in names}) == len(names)
    # a name's style does not depend on what else is drawn (same call, same answer)
    assert chip_color("my-chip") == chip_color("my-chip")


def _charts(path):
    """Per chart of the workbook (in file order): its title, series (name, dash type) and y-axis
    maximum, read from the chart XML."""
    import re
    import zipfile

    out = []
    with zipfile.ZipFile(path) as z:
        names = sorted((n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)),
                       key=lambda n: int(re.search(r"\d+", n).group()))
        for n in names:
            xml = z.read(n).decode()
            series = []
            for ser in re.findall(r"<c:ser>(.*?)</c:ser>", xml, re.S):
                name = re.search(r"<c:tx>.*?<c:v>(.*?)</c:v>", ser, re.S).group(1)
                dash = re.search(r'<a:prstDash val="(\w+)"', ser)
                series.append((name, dash.group(1) if dash else "solid"))
            title = "".join(re.findall(r"<a:t>(.*?)</a:t>", xml.split("<c:plotArea>")[0]))
            axes = re.findall(r"<c:valAx>(.*?)</c:valAx>", xml, re.S)
            ymax = float(re.search(r'<c:max val="([^"]+)"', axes[1]).group(1))
            out.append((title, series, ymax))
    return out


def test_roofline_charts_label_each_roof_once_and_draw_only_hbm_roofs(tmp_path):
    """Each roof series names the chip, the unit and rate, and that it is the HBM roof (no dtype
    twice with different meanings); no interconnect roof on a FLOP-per-HBM-byte axis; one dash
    style per rate; the y axis ends a little above the highest roof drawn; the heading names
    ByChip only where the book has it."""
    hw = catalog.load_hardware("tpu-v5e")
    env = engine.hw_env(hw)
    path = write_workbook(tmp_path / "one.xlsx", [catalog.load_workload("precision-mix")], [hw],
                          active=hw.name)
    charts = _charts(path)
    fp32 = next(c for c in charts if c[0].endswith("fp32 ops"))
    roofs = [(n, d) for n, d in fp32[1] if " roof" in n]
    # 1, 3 and 6 bf16 MXU passes and the vector unit: four rates, each one HBM roof
    assert len(roofs) == 4, roofs
    for name, _ in roofs:
        assert name.startswith("tpu-v5e HBM roof, "), name
        assert "interconnect" not in name and "fp32 roof" not in name, name
    assert len({d for _, d in roofs}) == 4  # one dash style per rate
    # the multi-pass rates say what the passes are
    assert any(n.endswith("MXU bf16 x3 (fp32 high: 3 passes)") for n, _ in roofs), roofs
    highest = max(env[k] for k in ("matrix_rate_fp32_default", "matrix_rate_fp32_high",
                                   "matrix_rate_fp32_highest", "vector_rate_fp32"))
    # was 1e17 (the largest peak of any dtype x 1.5, up to a power of ten); now at most the
    # next 1-2-5 step above twice the highest roof drawn
    assert highest < fp32[2] <= 5 * highest, (fp32[2], highest)
    assert all("interconnect" not in n for c in charts for n, _ in c[1])
    ws = openpyxl.load_workbook(path)["Roofline"]
    assert "ByChip" not in ws["A1"].value and "Ops" in ws["A1"].value
    two = write_workbook(tmp_path / "two.xlsx", [catalog.load_workload("collectives-v5e")],
                         [hw, catalog.load_hardware("tpu-v4")], active=hw.name)
    assert "ByChip" in openpyxl.load_workbook(two)["Roofline"]["A1"].value
    # a workload with collectives: still no interconnect roof (its points are FLOP per HBM byte)
    assert all("interconnect" not in n for c in _charts(two) for n, _ in c[1])


def _widths(ws) -> dict[int, float]:
    """0-based column -> width in characters (openpyxl keeps a range under its first letter)."""
    out = {}
    for dim in ws.column_dimensions.values():
        if dim.width:
            for c in range(dim.min, dim.max + 1):
                out[c - 1] = dim.width
    return out


def _cut(shown_rows, ws, first_row=0):
    """Cells whose displayed text is wider than their column (#### for a number, cut off for a
    text with a neighbour): (row, column, text, width)."""
    widths = _widths(ws)
    bad = []
    for i, row in enumerate(shown_rows[first_row:], first_row):
        for j, text in enumerate(row):
            longest = max((len(line) for line in text.split("\n")), default=0)
            if longest > widths.get(j, 8.43):
                bad.append((i, j, text, widths.get(j, 8.43)))
    return bad


@lo.needs_lo
def test_numbers_read_as_a_user_sees_them(tmp_path):
    """As LibreOffice displays them: times in seconds as decimals from 1 ms up (was 1.18E-02),
    FLOPs and bytes in engineering notation (was 9,660,671,296, and #### in a 13-wide column
    from 1e11), tokens/s as whole numbers with separators (was 2.34E+02), units in the headers,
    and no number or text wider than its column (the Plan's mesh and parallelism were cut)."""
    import re

    out = tmp_path / "plan.xlsx"
    res = _run(["plan", "-w", "llama2-7b", "-H", "tpu-v5e", "--mode", "train", "--chips", "64",
                "--top", "5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    swp = tmp_path / "sw" / "sweep.xlsx"
    swp.parent.mkdir()
    res = _run(["sweep", "-w", "llama2-7b-train-fsdp", "-H", "tpu-v4,tpu-v5p", "--vary",
                "batch=8,64,512", "-o", str(swp)])
    assert res.exit_code == 0, res.output
    books = {"plan": (out, lo.shown(out, tmp_path / "lo-plan")),
             "sweep": (swp, lo.shown(swp, tmp_path / "lo-sweep"))}
    time_ok = re.compile(r"^(\d[\d,]*\.\d+|\d\.\d\dE[-+]\d\d)$")  # 0.01180, 4.089, 1.23E-05
    eng = re.compile(r"^(\d{1,3}\.\d\dE\+(\d+)|[\d,]{1,6})$")        # 268.44E+6, or below 10^5
    tput = re.compile(r"^\d[\d,]*(\.\d\d)?$")
    checked = set()
    for name, (path, sheets) in books.items():
        wb = openpyxl.load_workbook(path)
        for sheet, first in (("Plan", 2), ("Totals", 0), ("Sweep", 0)):
            if sheet not in sheets:
                continue
            rows = sheets[sheet]
            assert not _cut(rows, wb[sheet], first), (sheet, _cut(rows, wb[sheet], first)[:5])
            head = [h.split("\n") for h in rows[first]]
            for j, h in enumerate(head):
                col = [r[j] for r in rows[first + 1:] if j < len(r) and r[j]]
                key = h[0]
                if key.startswith("t_") or key in ("ttft", "t_per_token"):
                    assert h[1:] == ["[s]"], (sheet, h)
                    for v in col:
                        x = float(v.replace(",", ""))
                        # scientific only below 1 ms (0 too: a format has two conditions)
                        assert time_ok.match(v) and ("E" in v) == (x < 1e-3), (sheet, key, v)
                    checked.add("time")
                elif key in ("flops", "hbm_bytes", "memory_bytes_per_chip"):
                    for v in col:
                        m = eng.match(v)
                        assert m and (m.group(2) is None or int(m.group(2)) % 3 == 0), (sheet, key, v)
                    checked.add("size")
                elif key == "fits_memory":  # was 1.00E+00 / 0.00E+00 in the sweep's Totals
                    assert set(col) <= {"yes", "no", "TRUE", "FALSE"} and col, (sheet, col)
                    checked.add("bool")
                elif key.startswith("tokens_per_s"):
                    assert h[1:] == ["[tokens/s]"], (sheet, h)
                    assert all(tput.match(v) for v in col), (sheet, key, col)
                    checked.add("tput")
        if name == "plan":  # the Model sheet's headline step time reads in seconds
            model = books["plan"][1]["Model"]
            row = next(r for r in model if r and r[0].startswith("t_step (the headline time)"))
            assert time_ok.match(row[1]) and "E" not in row[1], row
    assert checked == {"time", "size", "tput", "bool"}
