"""Every bad input from the issue, through the CLI: exit status 2, one paragraph on stderr that
names the file (and line where YAML gives one), the field path and what would be valid; no
traceback. Bad files are written into tmp_path by each test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmodel.catalog import DATA
from perfmodel.cli import main
from perfmodel.specs import DTYPE_BYTES, PEAK_KEYS

V4_TEXT = (DATA / "hardware" / "tpu-v4.yaml").read_text()


def run_bad(*args: str) -> str:
    """Run the CLI, check the bad-input contract, return the message (one line)."""
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit)  # handled, not an escaped exception
    err = res.stderr.strip()
    assert err.startswith("perfmodel: error: ")
    assert "Traceback" not in err and "Traceback" not in res.stdout
    assert "\n" not in err  # one paragraph: a single line of text
    assert res.stdout == ""  # nothing half-printed on stdout
    return err


def workload(tmp_path: Path, text: str, name: str = "wl.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def one_op(tmp_path: Path, op: str) -> Path:
    """A workload whose single op (line 3) is the given flow mapping."""
    return workload(tmp_path, f"name: w\nops:\n  - {op}\n")


def bad_workload(path: Path) -> str:
    return run_bad("roofline", "--hardware", "tpu-v4", "--workload", str(path))


def v4_with(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """tpu-v4's spec with one line changed; returns (path, 1-based line of the change)."""
    assert old in V4_TEXT
    text = V4_TEXT.replace(old, new, 1)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if new in ln)
    p = tmp_path / "chip.yaml"
    p.write_text(text)
    return p, line


def bad_hardware(path: Path) -> str:
    return run_bad("roofline", "--hardware", str(path), "--workload", "course-matmul-sweep")


MATMUL = "{name: mm, kind: matmul, m: 64, k: 64, n: 64}"
ATTN = "{name: at, kind: attention, batch: 1, seq: 128, heads: 8, head_dim: 64}"


def with_field(op: str, field: str, value: str) -> str:
    """Set (or add) one field of a flow-mapping op."""
    import re

    if re.search(rf"\b{field}: ", op):
        return re.sub(rf"\b{field}: [^,}}]+", f"{field}: {value}", op)
    return op[:-1] + f", {field}: {value}}}"


# ---- the file itself ----------------------------------------------------------------------

def test_yaml_syntax_error_names_file_and_line(tmp_path):
    # an unquoted ': ' inside a value on line 3
    p = workload(tmp_path, "name: w\nops:\n  - name: a: b\n")
    msg = bad_workload(p)
    assert str(p) in msg
    assert "line 3, column 12" in msg  # "  - name: a: b": the second ":" is character 12
    assert "mapping values are not allowed here" in msg and "fix the YAML syntax" in msg


def test_yaml_unclosed_bracket_says_where_it_opened(tmp_path):
    p = workload(tmp_path, "name: w\nops: [\n  {name: a, kind: matmul, m: 1, k: 1, n: 1}\n")
    msg = bad_workload(p)
    assert str(p) in msg and "started on line 2" in msg


@pytest.mark.parametrize("text,key,first,again", [
    ("name: w\nops:\n  - {name: a, kind: matmul, m: 1, k: 1, n: 1}\nname: v\n", "name", 1, 4),
    # inside an op (a flow mapping): m twice on line 3
    ("name: w\nops:\n  - {name: a, kind: matmul, m: 1, k: 1, n: 1, m: 2}\n", "m", 3, 3),
])
def test_duplicate_keys_are_an_error_not_silently_dropped(tmp_path, text, key, first, again):
    p = workload(tmp_path, text)
    msg = bad_workload(p)
    assert str(p) in msg and f"line {again}: key '{key}' appears twice" in msg
    assert f"first on line {first}" in msg and "remove or rename" in msg


def test_tab_indentation_is_a_syntax_error(tmp_path):
    p = workload(tmp_path, "name: w\nops:\n\t- {name: a}\n")
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg and "'\\t'" in msg


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    p = workload(tmp_path, text)
    msg = bad_workload(p)
    assert str(p) in msg and "empty" in msg
    assert "mapping" in msg  # what would be valid


def test_binary_file(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    msg = bad_workload(p)
    assert str(p) in msg and "binary" in msg and "YAML" in msg


def test_non_utf8_text(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_bytes(b"name: caf\xe9\nops: []\n")  # latin-1, no NUL bytes
    msg = bad_workload(p)
    assert str(p) in msg and "UTF-8" in msg


@pytest.mark.parametrize("text, got", [("- 1\n- 2\n", "list"), ("hello\n", "str"), ("42\n", "int")])
def test_top_level_not_a_mapping(tmp_path, text, got):
    p = workload(tmp_path, text)
    msg = bad_workload(p)
    assert str(p) in msg and "top level must be a mapping" in msg and f"got {got}" in msg


def test_path_that_does_not_exist(tmp_path):
    p = tmp_path / "nope" / "missing.yaml"
    msg = bad_workload(p)
    assert str(p) in msg and "no such file" in msg and "built-in name" in msg


def test_directory_instead_of_file(tmp_path):
    msg = bad_workload(tmp_path)
    assert str(tmp_path) in msg and "directory" in msg


def test_object_constructing_yaml_tag_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = workload(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\nops: []\n")
    msg = bad_workload(p)
    assert not marker.exists()  # safe loading: the tag constructed nothing
    assert str(p) in msg and "line 1" in msg
    assert "python/object/apply:os.system" in msg and "tags are not allowed" in msg


# ---- keys and fields ----------------------------------------------------------------------

def test_unknown_key_suggests_close_match(tmp_path):
    p = one_op(tmp_path, "{name: a, kind: attention, batch: 1, seq: 8, heads: 1, hed_dim: 8}")
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg
    assert "unknown key 'ops[0].hed_dim'" in msg and "did you mean 'head_dim'?" in msg
    assert "valid keys here:" in msg
    # the suggestion covers the field it misspelled: no separate "missing head_dim"
    assert "missing" not in msg


def test_unknown_top_level_key(tmp_path):
    p = workload(tmp_path, f"name: w\nopps:\n  - {MATMUL}\n")
    msg = bad_workload(p)
    assert "line 2" in msg and "unknown key 'opps'" in msg and "did you mean 'ops'?" in msg


def test_unknown_hardware_key(tmp_path):
    p, line = v4_with(tmp_path, "matmul_tile: 128", "matmul_tiel: 128")
    msg = bad_hardware(p)
    assert str(p) in msg and f"line {line}" in msg and "did you mean 'matmul_tile'?" in msg


def test_missing_field(tmp_path):
    p = one_op(tmp_path, "{name: mm, kind: matmul, m: 64, k: 64}")
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg
    assert "missing required field 'ops[0].n'" in msg
    assert "required here: name, kind, m, k, n" in msg


def test_missing_top_level_field(tmp_path):
    p = workload(tmp_path, f"ops:\n  - {MATMUL}\n")
    msg = bad_workload(p)
    assert "missing required field 'name'" in msg and "required here: name, ops" in msg


def test_missing_hardware_field(tmp_path):
    p, _ = v4_with(tmp_path, "hbm_bandwidth: 1.23 TB/s", "# no bandwidth")
    msg = bad_hardware(p)
    assert str(p) in msg and "missing required field 'hbm_bandwidth'" in msg


@pytest.mark.parametrize("op, field", [
    (ATTN, "heads"), (ATTN, "head_dim"), (ATTN, "seq"), (ATTN, "batch"),
    (MATMUL, "m"), (MATMUL, "k"), (MATMUL, "n"), (MATMUL, "batch"),
])
@pytest.mark.parametrize("value", ["0", "-4"])
def test_zero_or_negative_count(tmp_path, op, field, value):
    p = one_op(tmp_path, with_field(op, field, value))
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg
    assert f"ops[0].{field}: must be a positive whole number" in msg
    assert f"(got {value})" in msg


def test_zero_shape_dimension(tmp_path):
    p = one_op(tmp_path, "{name: e, kind: elementwise, shape: [1024, 0]}")
    msg = bad_workload(p)
    assert "ops[0].shape[1]: must be a positive whole number" in msg


@pytest.mark.parametrize("value, why", [
    (".nan", "not NaN or infinity"), (".inf", "not NaN or infinity"),
    ("-.inf", "not NaN or infinity"),
    ("true", "not a boolean"), ("false", "not a boolean"),
    ("1.5", "not a fraction"), ("64.0", "without a decimal point, e.g. 64"),
    ("'64'", "not a quoted string"), ("big", "must be a whole number, e.g."),
    ("[64]", "must be a whole number"),
])
def test_count_must_be_a_whole_number(tmp_path, value, why):
    p = one_op(tmp_path, with_field(MATMUL, "m", value))
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg and "ops[0].m:" in msg
    assert why in msg


def test_nan_count_message_reads_well(tmp_path):
    # pydantic's own words for a strict int given NaN are "Input should be a valid integer";
    # the user wrote .nan, so the message should say NaN, in plain terms
    p = one_op(tmp_path, with_field(ATTN, "heads", ".nan"))
    msg = bad_workload(p)
    assert msg.endswith("ops[0].heads: must be a whole number, not NaN or infinity (got nan).")
    assert "Input should" not in msg


def test_huge_count_is_refused_not_overflowed(tmp_path):
    # 10**400 does not fit a float64 (max ~1.8e308): refused at the edge, not an OverflowError
    p = one_op(tmp_path, with_field(MATMUL, "m", "1" + "0" * 400))
    msg = bad_workload(p)
    assert "ops[0].m: must be at most 9007199254740992" in msg
    assert len(msg) < 400  # the 401-digit value is abbreviated


def test_boolean_in_shape(tmp_path):
    p = one_op(tmp_path, "{name: e, kind: elementwise, shape: [4, true]}")
    msg = bad_workload(p)
    assert "ops[0].shape[1]: must be a whole number, not a boolean" in msg


@pytest.mark.parametrize("value, why", [
    (".nan", "must be a finite number"), (".inf", "must be a finite number"),
    ("-1", "must be zero or positive"), ("lots", "must be a number"), ("true", "must be a number"),
])
def test_bad_float_field(tmp_path, value, why):
    p = one_op(tmp_path, f"{{name: e, kind: elementwise, shape: [8], flops_per_element: {value}}}")
    msg = bad_workload(p)
    assert "line 3" in msg and "ops[0].flops_per_element:" in msg and why in msg


def test_elementwise_moving_nothing(tmp_path):
    p = one_op(tmp_path, "{name: e, kind: elementwise, shape: [8], inputs: 0, outputs: 0}")
    msg = bad_workload(p)
    assert "ops[0]:" in msg and "inputs + outputs is 0" in msg


def test_unknown_dtype_suggests(tmp_path):
    p = one_op(tmp_path, with_field(MATMUL, "dtype", "bf17"))
    msg = bad_workload(p)
    assert "line 3" in msg and "ops[0].dtype: must be one of bf16, fp16, fp32, fp8, int8" in msg
    assert "did you mean 'bf16'?" in msg and "(got 'bf17')" in msg
    # the allowed list is DTYPE_BYTES' keys, in its order (one table: a new dtype is one edit)
    assert f"must be one of {', '.join(DTYPE_BYTES)};" in msg


def test_dtype_alias_is_accepted(tmp_path):
    p = one_op(tmp_path, with_field(MATMUL, "dtype", "bfloat16"))
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v4", "-w", str(p), "--json"])
    assert res.exit_code == 0, res.output
    assert '"dtype": "bf16"' in res.stdout


def test_unknown_dtype_in_hardware_peak(tmp_path):
    p, line = v4_with(tmp_path, "bf16: 275 TFLOP/s", "bf17: 275 TFLOP/s")
    msg = bad_hardware(p)
    assert f"line {line}" in msg and "peak_flops.bf17 (the key): must be one of" in msg
    assert f"must be one of {', '.join(PEAK_KEYS)};" in msg and "tf32" in PEAK_KEYS


def test_unknown_op_kind(tmp_path):
    p = one_op(tmp_path, "{name: c, kind: conv, m: 1}")
    msg = bad_workload(p)
    assert "line 3" in msg and "ops[0]: unknown op kind 'conv'" in msg
    assert "valid kinds: matmul, elementwise, attention" in msg


def test_op_without_kind(tmp_path):
    p = one_op(tmp_path, "{name: c, m: 1, k: 1, n: 1}")
    msg = bad_workload(p)
    assert "ops[0]: missing 'kind'" in msg and "valid kinds" in msg


def test_unknown_impl_suggests(tmp_path):
    p = one_op(tmp_path, with_field(ATTN, "impl", "flsh"))
    msg = bad_workload(p)
    assert "ops[0].impl: must be one of naive, fused, flash; did you mean 'flash'?" in msg


def test_causal_needs_at_least_as_many_keys_as_queries(tmp_path):
    # with seq 128 > kv_seq 1 the kept fraction 1 - (S-1)/(2T) = 1 - 127/2 would be negative
    p = one_op(tmp_path, with_field(with_field(ATTN, "kv_seq", "1"), "causal", "true"))
    msg = bad_workload(p)
    assert "line 3" in msg and "ops[0]:" in msg and "kv_seq (1) >= seq (128)" in msg


def test_kv_heads_must_divide_heads(tmp_path):
    p = one_op(tmp_path, with_field(ATTN, "kv_heads", "3"))  # 8 % 3 = 2
    msg = bad_workload(p)
    assert str(p) in msg and "line 3" in msg and "ops[0]:" in msg
    assert "kv_heads 3 must divide heads 8" in msg


@pytest.mark.parametrize("text, field, why", [
    ("name: w\nops: 3\n", "ops", "must be a list"),
    ("name: w\nops: []\n", "ops", "at least 1 item"),
    ("name: w\nops: [3]\n", "ops[0]", "must be a mapping"),
    (f"name: 123\nops:\n  - {MATMUL}\n", "name", "must be text"),
])
def test_wrong_structure(tmp_path, text, field, why):
    p = workload(tmp_path, text)
    msg = bad_workload(p)
    assert f"{field}: " in msg and why in msg


def test_many_problems_are_summarised_in_one_paragraph(tmp_path):
    p = one_op(tmp_path, "{name: a, kind: matmul, m: 0, k: 0, n: 0, batch: 0, dtype: x}")
    msg = bad_workload(p)
    assert msg.count(str(p)) == 4 and msg.endswith("... and 1 more problem(s).")


# ---- hardware units -----------------------------------------------------------------------

@pytest.mark.parametrize("new, why", [
    ("hbm_bandwidth: 1.23 TB", "(a bandwidth needs '/s')"),                # no /s
    ("hbm_bandwidth: 1.23 TFLOP/s", "that is a FLOP rate, not bytes per second"),
    ("hbm_bandwidth: 1230000000000", "a bare number 1230000000000 is ambiguous"),
    ("hbm_bandwidth: '1230000000000'", "has no unit, which is ambiguous"),
    ("hbm_bandwidth: 1.23 TB/h", "unknown unit 'TB/h'"),
    ("hbm_bandwidth: fast", "cannot read 'fast' as a quantity"),
    ("hbm_bandwidth: -1 TB/s", "must be a finite, non-negative quantity"),
    ("hbm_bandwidth: .nan", "(NaN or infinity) is not a quantity"),
    ("hbm_bandwidth: 0 TB/s", "is zero, which is meaningless here"),
    ("hbm_bandwidth: true", "got a boolean"),
])
def test_bandwidth_unit_mistakes(tmp_path, new, why):
    p, line = v4_with(tmp_path, "hbm_bandwidth: 1.23 TB/s", new)
    msg = bad_hardware(p)
    assert str(p) in msg and f"line {line}" in msg and "hbm_bandwidth:" in msg
    assert why in msg
    assert 'e.g. "1.23 TB/s"' in msg  # what would be valid


@pytest.mark.parametrize("old, new, field, why", [
    ("bf16: 275 TFLOP/s", "bf16: 275 TB/s", "peak_flops.bf16", "that is a bandwidth, not a FLOP rate"),
    ("bf16: 275 TFLOP/s", "bf16: 275e12", "peak_flops.bf16", "ambiguous"),
    ("bf16: 275 TFLOP/s", "bf16: 0 TFLOP/s", "peak_flops.bf16", "is zero"),
    ("hbm_capacity: 32 GiB", "hbm_capacity: 32 GB/s", "hbm_capacity", "a capacity has no '/s'"),
    ("link_bandwidth: 45 GB/s", "link_bandwidth: 45 GB", "interconnect.link_bandwidth", "needs '/s'"),
    ("hop_latency: 1 us", "hop_latency: 1 GB", "interconnect.hop_latency", "expected a time"),
    ("matmul_tile: 128", "matmul_tile: 12.5", "matmul_tile", "not a fraction"),
    ("kind: tpu", "kind: npu", "kind", "must be one of tpu, gpu, cpu"),
])
def test_other_hardware_mistakes(tmp_path, old, new, field, why):
    p, line = v4_with(tmp_path, old, new)
    msg = bad_hardware(p)
    assert str(p) in msg and f"line {line}" in msg and f"{field}:" in msg and why in msg


def test_hardware_numbers_need_citations(tmp_path):
    text = V4_TEXT.replace("  hbm_bandwidth: ", "  hbm_bandwidth_: ", 1)
    assert text != V4_TEXT
    p = tmp_path / "chip.yaml"
    p.write_text(text)
    msg = bad_hardware(p)
    assert "sources must cite hbm_bandwidth" in msg


# ---- names and dtypes across files --------------------------------------------------------

def test_unknown_hardware_name_suggests():
    msg = run_bad("roofline", "--hardware", "tpu-v44", "--workload", "course-attention")
    assert "unknown hardware 'tpu-v44'" in msg and "Did you mean tpu-v4" in msg
    assert "Built-in: " in msg and "path to a YAML file" in msg


def test_unknown_workload_name_suggests():
    msg = run_bad("roofline", "--hardware", "tpu-v4", "--workload", "course-atention")
    assert "unknown workload 'course-atention'" in msg and "Did you mean course-attention" in msg


def test_hardware_show_unknown_name():
    msg = run_bad("hardware", "show", "h10")
    assert "unknown hardware 'h10'" in msg and "h100" in msg


def test_tf32_is_a_rate_not_a_dtype(tmp_path):
    p = one_op(tmp_path, with_field(MATMUL, "dtype", "tf32"))
    msg = bad_workload(p)
    assert "tf32 is not a storage dtype" in msg and "dtype: fp32" in msg


# ---- the real process ---------------------------------------------------------------------

def _script() -> Path:
    exe = Path(sys.executable).parent / "perfmodel"
    if not exe.exists():
        pytest.skip("perfmodel console script not installed next to this python")
    return exe


@pytest.mark.parametrize("text", ["name: w\nops:\n  - {name: a, kind: matmul, m: 0, k: 1, n: 1}\n",
                                  "name: [\n"])
def test_real_process_exit_status_and_stderr(tmp_path, text):
    p = workload(tmp_path, text)
    res = subprocess.run([str(_script()), "roofline", "-H", "tpu-v4", "-w", str(p)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("perfmodel: error: ") and str(p) in res.stderr
    assert res.stderr.count("\n") == 1
