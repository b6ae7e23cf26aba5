"""Hostile input and faults (issue 12): every case runs the real CLI in a subprocess, which must
end within a time bound (the subprocess timeout: a hang fails the test; no timed assertion on
speed), with exit status 0, 1, 2, 130 or 143 as documented, never a Python traceback, and
without leaving files behind (no ``.NAME.*.tmp``, no half-written output).

Set HOSTILE_LOG=path to append one JSON line per CLI run (case, exit status, seconds, leftover
files): the table in the issue's closing note is made from it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel import limits
from perfmodel.catalog import DATA
from perfmodel.units import fmt_si

TIMEOUT_S = 120  # a run that takes longer has hung (the slowest case here takes a few seconds)
V4 = DATA / "hardware" / "tpu-v4.yaml"
MATMUL = "{name: mm, kind: matmul, m: 64, k: 64, n: 64}"


def tmp_leftovers(*dirs: Path) -> list[str]:
    """Temporary files of atomic writers (``.NAME.XXXXXXXX.tmp``) left in ``dirs``."""
    return sorted(p.name for d in dirs for p in Path(d).glob(".*.tmp"))


# `perfmodel ARGS` whose files may not grow past LIMIT bytes (a full disk, in effect): a write
# beyond it fails with EFBIG instead of killing the process (SIGXFSZ ignored). Set in the child
# itself: a preexec_fn would fork this (multithreaded, jax-importing) test process.
_FULL_DISK = ("import resource, runpy, signal, sys; lim = int(sys.argv.pop(1)); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim)); "
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); sys.argv[0] = 'perfmodel'; "
              "runpy.run_module('perfmodel.cli', run_name='__main__')")


def cli(*args: str, cwd: Path, case: str = "", stdout=None, timeout: float = TIMEOUT_S,
        file_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run ``perfmodel ARGS`` in ``cwd``; fail on a hang, a traceback or a temporary file left."""
    t = time.perf_counter()
    head = ([sys.executable, "-m", "perfmodel.cli"] if file_limit is None else
            [sys.executable, "-c", _FULL_DISK, str(file_limit)])
    res = subprocess.run([*head, *args], cwd=cwd, text=True,
                         stdout=stdout if stdout is not None else subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=timeout)
    took = time.perf_counter() - t
    left = tmp_leftovers(cwd)
    _log(case or " ".join(args), res.returncode, took, left)
    assert "Traceback" not in res.stderr, res.stderr
    assert not left, left
    return res


def _log(case: str, status: int, seconds: float, left: list[str]) -> None:
    path = os.environ.get("HOSTILE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"case": case, "exit": status, "s": round(seconds, 2),
                                "leftovers": left}) + "\n")


def bad(*args: str, cwd: Path, case: str = "", **kw) -> str:
    """A bad-input run: exit 2, one paragraph on stderr, nothing on stdout; the message."""
    res = cli(*args, cwd=cwd, case=case, **kw)
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    err = res.stderr.strip()
    assert err.startswith("perfmodel: error: ") and "\n" not in err, err
    return err


def write(path: Path, text: str | bytes) -> Path:
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def one_op(tmp_path: Path, op: str, name: str = "w.yaml", extra: str = "") -> Path:
    return write(tmp_path / name, f"name: w\n{extra}ops:\n  - {op}\n")


# ---- hangs and runaway memory -------------------------------------------------------------

def test_nested_aliases_billion_laughs(tmp_path):
    # nine levels of nine aliases: 9**9 = 387,420,489 values from a few hundred bytes
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    p = write(tmp_path / "laughs.yaml", "\n".join(lines) + "\nname: w\n")
    assert p.stat().st_size < 500
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="nested aliases")
    assert "MAX_YAML_NODES" in msg and f"{limits.MAX_YAML_NODES:,}" in msg and "line" in msg


def test_alias_inside_its_own_anchor(tmp_path):
    p = write(tmp_path / "loop.yaml", "name: w\nops: &o [*o]\n")
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="recursive alias")
    assert "expands without end" in msg


def test_merge_keys_still_work(tmp_path):
    # `<<:` merges count as the values they add, far below the limit
    p = write(tmp_path / "merge.yaml", "name: w\nops:\n  - &b {name: a, kind: matmul, m: 8, k: 64, "
              "n: 64}\n  - {<<: *b, name: b, m: 16}\n")
    res = cli("roofline", "-H", "tpu-v4", "-w", str(p), "--json", cwd=tmp_path, case="merge keys")
    assert res.returncode == 0, res.stderr
    ops = json.loads(res.stdout)["ops"]
    # b = a's fields with m: 16: 2 m k n = 2*16*64*64 = 131072 FLOPs
    assert [o["name"] for o in ops] == ["a", "b"] and ops[1]["flops"] == 131072


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_as_workload(tmp_path, device):
    msg = bad("roofline", "-H", "tpu-v4", "-w", device, cwd=tmp_path, case=f"--workload {device}")
    assert device in msg and "not a regular file" in msg


def test_fifo_as_workload(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # nobody writes to it: opening it would block for ever
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(fifo), cwd=tmp_path, case="--workload FIFO")
    assert "not a regular file" in msg


def test_file_over_the_size_limit(tmp_path):
    p = tmp_path / "huge.yaml"
    with open(p, "wb") as f:  # sparse: no disk used
        f.truncate(limits.MAX_FILE_BYTES + 1)
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="file over 64 MiB")
    assert "MAX_FILE_BYTES" in msg and f"{limits.MAX_FILE_BYTES:,}" in msg


def test_config_json_over_the_size_limit_or_not_a_file(tmp_path):
    """A Hugging Face config.json is read like every other input (specs.read_input): the size
    limit and regular files only, for import-hf and for a workload's config:."""
    big = tmp_path / "config.json"
    with open(big, "wb") as f:  # sparse: no disk used
        f.truncate(limits.MAX_FILE_BYTES + 1)
    msg = bad("import-hf", str(big), cwd=tmp_path, case="import-hf config.json over 64 MiB")
    assert str(big) in msg and "MAX_FILE_BYTES" in msg and f"{limits.MAX_FILE_BYTES:,}" in msg
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # nobody writes to it: opening it would block for ever
    msg = bad("import-hf", str(fifo), cwd=tmp_path, case="import-hf FIFO")
    assert str(fifo) in msg and "not a regular file" in msg and "config.json" in msg
    wl = write(tmp_path / "w.yaml", "name: w\nops:\n  - {name: x, kind: transformer, config: "
               "pipe.json, mode: decode, batch: 1, seq: 64}\n")
    msg = bad("roofline", "-H", "h100", "-w", str(wl), cwd=tmp_path, case="config: a FIFO")
    assert "pipe.json" in msg and "not a regular file" in msg
    (tmp_path / "bin.json").write_bytes(b"{\x00}")
    msg = bad("import-hf", str(tmp_path / "bin.json"), cwd=tmp_path, case="import-hf binary")
    assert "bin.json" in msg and "binary" in msg and "JSON" in msg


@pytest.mark.parametrize("args", [
    ["--slice", "99999999x99999999"],
])
def test_slice_of_absurd_size(tmp_path, args):
    msg = bad("roofline", "-H", "tpu-v5e", "-w", "collectives-v5e", *args, cwd=tmp_path,
              case="--slice 99999999x99999999")
    assert "MAX_DEVICES" in msg and f"{limits.MAX_DEVICES:,}" in msg


def test_mesh_of_absurd_size(tmp_path):
    p = one_op(tmp_path, "{name: ar, kind: collective, collective: all_reduce, axes: [d], "
               "bytes: 1 MiB}", extra="mesh: {d: 4096, e: 4096}\n")
    msg = bad("roofline", "-H", "tpu-v5e", "-w", str(p), cwd=tmp_path, case="mesh of 2**24 chips")
    assert "MAX_DEVICES" in msg


def test_three_way_vary_beyond_the_grid_limit(tmp_path):
    p = one_op(tmp_path, MATMUL)
    msg = bad("sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1..1000000:1",
              "--vary", "k=1..1000000:1", "--vary", "n=1..1000000:1", cwd=tmp_path,
              case="three-way --vary of 10**18 points")
    assert "MAX_GRID_POINTS" in msg


def test_sweep_rows_beyond_max_rows_and_raised(tmp_path):
    p = one_op(tmp_path, MATMUL)
    msg = bad("sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1..1000:1", "--max-rows", "999",
              cwd=tmp_path, case="sweep over --max-rows")
    assert "1,000 rows" in msg and "999" in msg and "--max-rows" in msg
    res = cli("sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1..1000:1", "--max-rows", "1000",
              cwd=tmp_path, case="sweep at --max-rows")
    assert res.returncode == 0 and "1,000 rows" in res.stdout


def test_sweep_csv_streams_in_pieces():
    # the pieces `sweep --csv` writes one by one make up the table computed whole, and the
    # crossovers found as they stream are those of the whole table
    import pandas as pd

    from perfmodel import catalog
    from perfmodel.specs import Workload
    from perfmodel.sweeps import Crossovers, crossovers, sweep, sweep_chunks

    # test_whatif_sweep's hand-derived case: proj turns compute-bound between m=256 and 257
    wl = Workload.model_validate({"name": "x", "ops": [
        {"name": "proj", "kind": "matmul", "m": 1, "k": 4096, "n": 16384},
        {"name": "ew", "kind": "elementwise", "shape": [1, 4096]}]})
    hws = [catalog.load_hardware("tpu-v5e"), catalog.load_hardware("h100")]
    vary = ["m=1..1024:1"]
    pieces = list(sweep_chunks(wl, hws, vary, chunk_rows=1000))
    # 1024 values x 2 chips x 2 ops = 4096 rows; a piece holds 1000 // (2 x 2) = 250 values
    assert [len(p) for p in pieces] == [1000] * 4 + [96]
    whole = sweep(wl, hws, vary)
    key = ["m", "hardware", "op"]
    a = pd.concat(pieces).sort_values(key).reset_index(drop=True)
    b = whole.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    found = Crossovers("m")
    for p in pieces:
        found.feed(p)
    lines = found.lines()
    assert "proj on tpu-v5e: memory -> compute between m=256 and m=257" in lines
    assert lines == crossovers(whole, "m")


@pytest.mark.slow
def test_sweep_csv_of_millions_of_rows_in_bounded_memory(tmp_path):
    # 3,000,000 rows: the table held whole took ~0.8 kB a row (7.9 GB for 10M); streamed, the
    # process stays near its fixed size (numpy, pandas, one piece, the varied values)
    p = one_op(tmp_path, MATMUL)
    # the sweep's own peak: measured by a fresh parent (this process's RUSAGE_CHILDREN would
    # include every earlier child of the test run, a jax one among them)
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
             "stdout=subprocess.DEVNULL); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "perfmodel.cli",
                          "sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1..3000000:1",
                          "--csv", "s.csv"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    rc, peak_kb = map(int, out.stdout.split())
    assert rc == 0 and "Traceback" not in out.stderr, out.stderr
    assert peak_kb < 1_000_000  # under 1 GB
    with open(tmp_path / "s.csv") as f:
        assert sum(1 for _ in f) == 3_000_001


# ---- tracebacks that must be exit 2 -------------------------------------------------------

@pytest.mark.parametrize("depth", [limits.MAX_YAML_DEPTH + 1, 5000])
def test_deep_nesting(tmp_path, depth):
    p = write(tmp_path / "deep.yaml", "name: w\nx: " + "[" * depth + "]" * depth + "\n")
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case=f"nesting {depth} deep")
    assert "MAX_YAML_DEPTH" in msg


def test_base_that_points_at_itself(tmp_path):
    p = write(tmp_path / "self.yaml", "base: self.yaml\nname: me\n")
    msg = bad("hardware", "show", str(p), cwd=tmp_path, case="base: itself")
    assert "comes back" in msg and "self.yaml" in msg


def test_base_cycle_of_two(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nname: b\n")
    msg = bad("hardware", "show", "a.yaml", cwd=tmp_path, case="base: a -> b -> a")
    assert "a.yaml -> " in msg and "b.yaml" in msg


def test_base_relative_to_the_spec_not_the_working_directory(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    write(sub / "fast.yaml", V4.read_text().replace("name: tpu-v4", "name: fast", 1))
    write(sub / "faster.yaml", "base: fast.yaml\nname: faster\nhbm_bandwidth: 9 TB/s\n"
          "sources: {hbm_bandwidth: a what-if}\n")
    res = cli("hardware", "show", "specs/faster.yaml", "--json", cwd=tmp_path,
              case="relative base: from another directory")
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    assert js["name"] == "faster" and js["hbm_bandwidth"] == 9e12
    assert js["peak_flops"] == json.loads(cli("hardware", "show", "tpu-v4", "--json",
                                              cwd=tmp_path).stdout)["peak_flops"]


@pytest.mark.parametrize("field", ["link_bandwidth", "dcn_bandwidth"])
def test_zero_rate_refused_at_load(tmp_path, field):
    text = V4.read_text()
    assert "interconnect:" in text
    text = text.replace("interconnect:", f"interconnect:\n  {field}: 0 GB/s", 1)
    text = _drop_second(text, f"  {field}:")
    p = write(tmp_path / "chip.yaml", text)
    msg = bad("roofline", "-H", str(p), "-w", "course-attention", cwd=tmp_path,
              case=f"{field}: 0 GB/s")
    assert f"interconnect.{field}" in msg and "is zero" in msg


def _drop_second(text: str, prefix: str) -> str:
    """``text`` without the second line starting with ``prefix`` (the original value)."""
    lines, seen = [], 0
    for ln in text.splitlines():
        if ln.startswith(prefix):
            seen += 1
            if seen == 2:
                continue
        lines.append(ln)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("value,needle", [
    ("0x", "factor 0 must be a positive"), ("-2x", "factor -2 must be a positive"),
    ("0 GB/s", "is zero"),
])
def test_set_of_a_zero_or_negative_rate(tmp_path, value, needle):
    msg = bad("compare", "-H", "tpu-v4", "-w", "course-attention", "--set",
              f"tpu-v4.interconnect.link_bandwidth={value}", cwd=tmp_path,
              case=f"--set link_bandwidth={value}")
    assert needle in msg and "unknown unit" not in msg


def test_transformer_with_absurd_sizes(tmp_path):
    text = (DATA / "workloads" / "llama2-7b-decode.yaml").read_text()
    p = write(tmp_path / "absurd.yaml", text.replace("d_model: 4096", "d_model: 9007199254740992"))
    msg = bad("roofline", "-H", "h100", "-w", str(p), cwd=tmp_path, case="transformer d_model 2**53")
    assert str(p) in msg and "too large" in msg and "ValidationError" not in msg


@pytest.mark.parametrize("chips,needle", [(",,,", "no names given"), ("h100,,a100", "empty name"),
                                          ("h100,h100", "given twice")])
def test_hardware_lists(tmp_path, chips, needle):
    msg = bad("compare", "-H", chips, "-w", "course-attention", cwd=tmp_path, case=f"-H {chips!r}")
    assert needle in msg


@pytest.mark.parametrize("target", ["/proc/perfmodel-test.xlsx", "/sys/perfmodel-test.xlsx"])
def test_output_under_proc_or_sys(tmp_path, target):
    msg = bad("roofline", "-H", "tpu-v4", "-w", "course-attention", "--output", target,
              cwd=tmp_path, case=f"--output {target}")
    assert target in msg or str(Path(target).parent) in msg
    assert not Path(target).exists()


@pytest.mark.parametrize("args,out", [
    (["roofline", "-H", "tpu-v4", "-w", "course-attention", "--output", "r.xlsx"], "r.xlsx"),
    (["sweep", "-w", "course-matmul-sweep", "-H", "tpu-v4", "--vary", "m=1..2000:1",
      "--csv", "s.csv"], "s.csv"),
])
def test_full_disk(tmp_path, args, out):
    msg = bad(*args, cwd=tmp_path, file_limit=4096, case=f"full disk: {out}")
    assert out in msg and "cannot be written" in msg
    assert not (tmp_path / out).exists()


def test_json_into_dev_full(tmp_path):
    with open("/dev/full", "w") as full:
        res = cli("roofline", "-H", "tpu-v4", "-w", "course-attention", "--json", cwd=tmp_path,
                  stdout=full, case="--json > /dev/full")
    assert res.returncode == 2 and "standard output" in res.stderr and "space" in res.stderr


def test_closed_pipe(tmp_path):
    # `perfmodel ... | head -c 10`: the reader goes away; the writer exits, no traceback
    p = subprocess.Popen([sys.executable, "-m", "perfmodel.cli", "roofline", "-H", "tpu-v4", "-w",
                          "course-attention", "--json"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=TIMEOUT_S)
    _log("--json | head -c 10", p.returncode, 0.0, tmp_leftovers(tmp_path))
    # as `git log | head`: no message about the pipe the reader closed
    assert p.returncode == 0 and not err.strip(), (p.returncode, err)


def test_csv_field_over_the_limit(tmp_path):
    p = write(tmp_path / "m.csv", "kernel,params\n" + "x" * (limits.MAX_CSV_FIELD_CHARS + 1) + ",1\n")
    msg = bad("calibrate", "-m", str(p), "-o", "c.yaml", cwd=tmp_path, case="CSV field > 131,072 chars")
    assert "MAX_CSV_FIELD_CHARS" in msg and "line 2" in msg


def test_csv_with_a_byte_order_mark(tmp_path):
    # Excel's "CSV UTF-8": the header is read as written (the mark is not part of 'kernel')
    p = write(tmp_path / "m.csv", b"\xef\xbb\xbfkernel,params\n")
    msg = bad("calibrate", "-m", str(p), "-o", "c.yaml", cwd=tmp_path, case="CSV with a BOM")
    assert "missing column(s) dtype" in msg and "kernel" not in msg.split("missing column(s)")[1].split(".")[0]


def test_yaml_with_a_byte_order_mark(tmp_path):
    p = write(tmp_path / "w.yaml", b"\xef\xbb\xbf" + f"name: w\nops:\n  - {MATMUL}\n".encode())
    res = cli("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="YAML with a BOM")
    assert res.returncode == 0, res.stderr


# ---- signals and leftovers ----------------------------------------------------------------

def big_workload(tmp_path: Path, n: int) -> Path:
    ops = "".join(f"  - {{name: mm-{i}, kind: matmul, m: {64 + i}, k: 64, n: 64}}\n"
                  for i in range(n))
    return write(tmp_path / "big.yaml", f"name: big\nops:\n{ops}")


def interrupt(args: list[str], cwd: Path, sig: int, when: str = "tmp", case: str = "",
              delay_s: float = 0.0) -> subprocess.CompletedProcess:
    """Start ``perfmodel ARGS``, send ``sig`` once it is writing (a temporary file appeared)
    or after ``delay_s``; return its result (checked by ``cli``'s rules)."""
    t = time.perf_counter()
    # stdout unread would fill its pipe and block the process: discard it
    p = subprocess.Popen([sys.executable, "-m", "perfmodel.cli", *args], cwd=cwd, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and p.poll() is None:
        if when == "tmp" and tmp_leftovers(cwd, *[d for d in cwd.iterdir() if d.is_dir()]):
            break
        if when == "delay" and time.perf_counter() - t >= delay_s:
            break
        time.sleep(0.02)
    assert p.poll() is None, "finished before it could be interrupted; make the case bigger"
    p.send_signal(sig)
    _, err = p.communicate(timeout=TIMEOUT_S)
    left = tmp_leftovers(cwd, *[d for d in cwd.iterdir() if d.is_dir()])
    _log(case or f"{signal.Signals(sig).name} {' '.join(args)}", p.returncode,
         time.perf_counter() - t, left)
    assert "Traceback" not in err, err
    assert not left, left
    return subprocess.CompletedProcess(args, p.returncode, "", err)


SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


@pytest.mark.parametrize("sig,status", SIGNALS)
def test_signal_during_workbook_write(tmp_path, sig, status):
    wl = big_workload(tmp_path, 3000)
    res = interrupt(["roofline", "-H", "tpu-v4", "-w", str(wl), "--output", "big.xlsx"], tmp_path,
                    sig, case=f"{signal.Signals(sig).name} during roofline --output")
    assert res.returncode == status and "interrupted" in res.stderr
    assert not (tmp_path / "big.xlsx").exists()


@pytest.mark.parametrize("sig,status", SIGNALS)
def test_signal_during_sweep_csv(tmp_path, sig, status):
    p = one_op(tmp_path, MATMUL)
    res = interrupt(["sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1..2000000:1",
                     "--csv", "s.csv"], tmp_path, sig,
                    case=f"{signal.Signals(sig).name} during sweep --csv")
    assert res.returncode == status
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("sig,status", SIGNALS)
def test_signal_during_report(tmp_path, sig, status):
    res = interrupt(["report", "-o", "out"], tmp_path, sig,
                    case=f"{signal.Signals(sig).name} during report")
    assert res.returncode == status


@pytest.mark.parametrize("sig,status", SIGNALS)
def test_signal_during_compare(tmp_path, sig, status):
    wl = big_workload(tmp_path, 3000)
    res = interrupt(["compare", "-H", "tpu-v4,h100", "-w", str(wl), "--output", "c.xlsx"],
                    tmp_path, sig, case=f"{signal.Signals(sig).name} during compare --output")
    assert res.returncode == status


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", SIGNALS)
@pytest.mark.parametrize("args", [["check"], ["bench", "--quick", "--output", "b.csv",
                                                         "--no-progress"]])
def test_signal_during_jax_commands(tmp_path, sig, status, args):
    res = interrupt(args, tmp_path, sig, when="delay", delay_s=4.0,
                    case=f"{signal.Signals(sig).name} during {args[0]}")
    assert res.returncode == status


def test_stale_temporary_files_are_removed(tmp_path):
    # a run killed with -9 left these; the next write of the same target removes the old ones
    old = write(tmp_path / ".r.xlsx.abcd1234.tmp", b"junk")
    other = write(tmp_path / ".other.xlsx.abcd1234.tmp", b"not this target's")
    lookalike = write(tmp_path / ".r.xlsx.notours.tmp", b"not our pattern")
    past = time.time() - 3600
    for f in (old, other, lookalike):
        os.utime(f, (past, past))
    res = subprocess.run([sys.executable, "-m", "perfmodel.cli", "roofline", "-H", "tpu-v4", "-w",
                          "course-attention", "--output", "r.xlsx"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stderr
    assert not old.exists() and other.exists() and lookalike.exists()
    assert (tmp_path / "r.xlsx").exists()


def test_kill_9_then_rerun_leaves_nothing(tmp_path):
    wl = big_workload(tmp_path, 1000)
    args = [sys.executable, "-m", "perfmodel.cli", "roofline", "-H", "tpu-v4", "-w", str(wl),
            "--output", "big.xlsx"]
    p = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    while not tmp_leftovers(tmp_path) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.kill()
    p.wait()
    assert tmp_leftovers(tmp_path)  # SIGKILL cannot be cleaned up after...
    time.sleep(0.05)  # ...so its file is older than the next run, which removes it
    res = cli(*args[3:], cwd=tmp_path, case="kill -9 during roofline --output, then rerun")
    assert res.returncode == 0 and (tmp_path / "big.xlsx").exists()


# ---- wrong or silent ----------------------------------------------------------------------

@pytest.mark.parametrize("op,vary", [
    (MATMUL, "m=1..1024:0.5"),
    # an optional count (Optional[Count]) is a count too
    ("{name: at, kind: attention, batch: 1, seq: 8, heads: 8, head_dim: 64, kv_seq: 8}",
     "kv_seq=8..16:0.5"),
])
def test_fractional_vary_of_a_count(tmp_path, op, vary):
    p = one_op(tmp_path, op)
    msg = bad("sweep", "-w", str(p), "-H", "tpu-v4", "--vary", vary, cwd=tmp_path,
              case=f"--vary {vary}")
    assert ".5" in msg and "whole number" in msg


def test_empty_output_name(tmp_path):
    msg = bad("roofline", "-H", "tpu-v4", "-w", "course-attention", "--output", "", cwd=tmp_path,
              case="--output ''")
    assert "empty file name" in msg


def test_bench_output_must_be_csv(tmp_path):
    msg = bad("bench", "--tiny", "--output", "b.txt", cwd=tmp_path, case="bench --output b.txt")
    assert ".csv" in msg and not (tmp_path / "b.txt").exists()


def test_same_field_varied_twice(tmp_path):
    p = one_op(tmp_path, MATMUL)
    msg = bad("sweep", "-w", str(p), "-H", "tpu-v4", "--vary", "m=1,2", "--vary", "m=4,8",
              cwd=tmp_path, case="--vary m twice")
    assert "varied twice" in msg


def test_duplicate_op_names(tmp_path):
    p = write(tmp_path / "w.yaml", f"name: w\nops:\n  - {MATMUL}\n  - {MATMUL}\n")
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="duplicate op names")
    assert "ops[1] is named 'mm' like ops[0]" in msg and "line 2: ops" in msg


def test_slice_on_a_workload_without_collectives(tmp_path):
    msg = bad("roofline", "-H", "tpu-v4", "-w", "course-attention", "--slice", "4x4x4",
              cwd=tmp_path, case="--slice without collectives")
    assert "would change nothing" in msg


@pytest.mark.parametrize("name", ["a\\nb", "a\\tb", "a\\u202eb"])
def test_control_characters_in_names(tmp_path, name):
    p = one_op(tmp_path, f'{{name: "{name}", kind: matmul, m: 8, k: 8, n: 8}}')
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path,
              case=f"control character in a name ({name})")
    assert "control character" in msg and "line 3" in msg


def test_name_and_count_limits_are_named(tmp_path):
    p = one_op(tmp_path, "{name: " + "a" * (limits.MAX_NAME_CHARS + 1) + ", kind: matmul, m: 1, "
               "k: 1, n: 1}")
    assert "MAX_NAME_CHARS" in bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path,
                                   case="name of 201 characters")
    p = one_op(tmp_path, f"{{name: a, kind: matmul, m: {2**53 + 1}, k: 1, n: 1}}")
    assert "MAX_COUNT" in bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path,
                              case="m: 2**53 + 1")


def test_exponent_without_a_dot_is_explained(tmp_path):
    p = one_op(tmp_path, "{name: a, kind: matmul, m: 1e3, k: 8, n: 8}")
    msg = bad("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="m: 1e3")
    assert "reads '1e3' as text" in msg and "write 1000" in msg and "quoted" not in msg


def test_no_numpy_warnings_on_stderr(tmp_path):
    # collectives move no HBM bytes: intensity 0/0 and the like are NaN, shown as '-', silently
    res = cli("roofline", "-H", "tpu-v5e", "-w", "collectives-v5e", cwd=tmp_path,
              case="roofline of collectives (0/0 inside)")
    assert res.returncode == 0 and res.stderr == ""


def test_largest_repeat_prints_no_megaseconds(tmp_path):
    p = one_op(tmp_path, "{name: a, kind: matmul, m: 4096, k: 4096, n: 4096, repeat: 9007199254740992}")
    res = cli("roofline", "-H", "tpu-v4", "-w", str(p), cwd=tmp_path, case="repeat: 2**53")
    assert res.returncode == 0
    assert " Ms" not in res.stdout and " ks" not in res.stdout and "e" in res.stdout


@pytest.mark.parametrize("x,unit,text", [
    # 2**53 x 2*4096**3 FLOPs / 2.75e14 FLOP/s = 4.5e9 s: no prefix on seconds above 1 s
    (4.5e9, "s", "4.5e9 s"), (317e6, "s", "3.17e8 s"), (999.0, "s", "999 s"),
    (1.5e-3, "s", "1.5 ms"),
    # past the largest prefix (E, 1e18) and below the smallest (p, 1e-12)
    (2e21, "FLOP/s", "2e21 FLOP/s"), (3e-15, "s", "3e-15 s"), (1.2e19, "B", "12 EB"),
    # a bare number takes no prefix below 1 ('5 m' would read as metres)
    (0.005, "", "0.005"), (5e6, "", "5 M"),
])
def test_fmt_si_never_reads_as_a_unit(x, unit, text):
    assert fmt_si(x, unit) == text


# ---- speed: large specs finish (the timeout is the bound; figures in benchmarks/) ---------

@pytest.mark.parametrize("n", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_large_workload_finishes(tmp_path, n):
    wl = big_workload(tmp_path, n)
    res = cli("roofline", "-H", "tpu-v5e", "-w", str(wl), "--json", cwd=tmp_path,
              case=f"roofline of {n:,} ops", stdout=subprocess.DEVNULL)
    assert res.returncode == 0


# ---- fuzz: random YAML trees and argument lists -------------------------------------------
# Specs near the real thing (a workload of ops with their fields, the tpu-v4 spec with fields
# changed or dropped) with hostile values, and argument lists built on each command's own
# shape with hostile options mixed in: most runs reach validation or evaluation, not just
# click's usage errors.

VALUES = st.one_of(
    st.integers(min_value=-2**64, max_value=2**64), st.sampled_from([0, 1, 2**53, 2**53 + 1]),
    st.floats(allow_nan=True), st.booleans(), st.none(),
    st.sampled_from(["matmul", "elementwise", "attention", "collective", "transformer", "bf16",
                     "int8", "1.23 TB/s", "0 GB/s", "275 TFLOP/s", "-1 TB/s", "4x4", "16x16",
                     "99999999x99999999", "tpu-v4", "h.yaml", "a\x00b", "1e3", "nan", "\u202e", "a\nb",
                     "", "naive", "flash", "fused", "all_reduce", "train", "decode", "64 MiB"]),
    st.text(max_size=8))
# argv cannot hold NUL, nor a lone surrogate (no program can be passed one)
ARG_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                   max_size=6)
TREES = st.recursive(VALUES, lambda kids: st.one_of(
    st.lists(kids, min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=6), kids, min_size=1, max_size=3)),
    max_leaves=10)
OP_FIELDS = ["m", "k", "n", "batch", "shape", "seq", "kv_seq", "heads", "kv_heads", "head_dim",
             "dtype", "repeat", "impl", "causal", "inputs", "outputs", "flops_per_element",
             "collective", "axes", "bytes", "layers", "d_model", "d_ff", "vocab", "mlp", "mode",
             "in_place", "calibrate_as", "parallelism"]
OPS = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["a", "b", "a\tb"]), st.text(max_size=6)),
     "kind": st.sampled_from(["matmul", "elementwise", "attention", "collective", "transformer",
                              "conv"])},
    optional={f: st.one_of(VALUES, st.lists(VALUES, max_size=3)) for f in OP_FIELDS})
WORKLOADS = st.fixed_dictionaries(
    {"name": st.just("w"), "ops": st.lists(OPS, max_size=4)},
    optional={"slice": VALUES, "mesh": st.dictionaries(st.sampled_from(["data", "model"]), VALUES,
                                                       max_size=2), "slices": VALUES})
V4_DATA = yaml.safe_load(V4.read_text())
HW_FIELDS = ["peak_flops", "hbm_bandwidth", "hbm_capacity", "onchip_memory", "matmul_tile",
             "interconnect", "price_per_hour", "base", "name", "kind", "calibration"]
HARDWARE = st.dictionaries(st.sampled_from(HW_FIELDS), st.one_of(VALUES, TREES), max_size=3).map(
    lambda changes: {**V4_DATA, **changes})
SPEC = st.sampled_from(["w.yaml", "h.yaml"])
HW = st.one_of(st.sampled_from(["tpu-v4", "h100", "h.yaml", "tpu-v4,h.yaml", "h100,h100", ",,",
                                "nope"]), ARG_TEXT)
WL = st.one_of(st.sampled_from(["w.yaml", "course-attention", "collectives-v5e",
                                "llama2-7b-decode", "h.yaml"]), ARG_TEXT)
VARY = st.one_of(st.sampled_from(["m=1..64:log2", "m=1..1024:0.5", "seq=1,2,3", "impl=naive,flash",
                                  "m=1..1e9:1", "batch=1..4:1", "d_model=64,128", "m", "=",
                                  "m=1..10:0"]), ARG_TEXT)
SET = st.one_of(st.sampled_from(["tpu-v4.hbm_bandwidth=2x", "tpu-v4.hbm_bandwidth=0x",
                                 "tpu-v4.interconnect.link_bandwidth=-2x", "h100.matmul_tile=0",
                                 "tpu-v4.peak_flops.int8=1 PFLOP/s", "x"]), ARG_TEXT)
EXTRA = st.lists(st.sampled_from(["--json", "--totals", "--slice", "4x4", "--max-rows", "5",
                                  "--output", "o.xlsx", "--csv", "o.csv", "", "-x", "--"]), max_size=3)


@st.composite
def arguments(draw):
    cmd = draw(st.sampled_from(["roofline", "compare", "sweep", "hardware", "schema"]))
    if cmd == "roofline":
        args = [cmd, "-H", draw(HW), "-w", draw(WL)]
    elif cmd == "compare":
        args = [cmd, "-H", draw(HW), "-w", draw(WL)]
        args += [x for s in draw(st.lists(SET, max_size=2)) for x in ("--set", s)]
    elif cmd == "sweep":
        args = [cmd, "-H", draw(HW), "-w", draw(WL)]
        args += [x for v in draw(st.lists(VARY, min_size=1, max_size=3)) for x in ("--vary", v)]
    elif cmd == "hardware":
        args = [cmd] + draw(st.sampled_from([[], ["show", "h.yaml"], ["show", "h.yaml", "--json"],
                                             ["show", "tpu-v4"], ["show"]]))
    else:
        args = [cmd, draw(st.sampled_from(["hardware", "workload", "model"]))]
    return args + draw(EXTRA)


def _fuzz(tmp_path: Path, workload, hardware, args: list[str]) -> None:
    write(tmp_path / "w.yaml", yaml.safe_dump(workload, allow_unicode=True))
    write(tmp_path / "h.yaml", yaml.safe_dump(hardware, allow_unicode=True))
    res = cli(*args, cwd=tmp_path, case="fuzz", timeout=60)
    assert res.returncode in (0, 1, 2), (res.returncode, res.stderr[-2000:])
    for f in tmp_path.iterdir():  # nothing half-written: an output is complete or absent
        if f.suffix == ".xlsx":
            assert f.read_bytes()[:2] == b"PK"
        f.unlink() if f.suffix in (".xlsx", ".csv", ".png") else None


def _fuzz_test(max_examples: int):
    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(workload=st.one_of(WORKLOADS, TREES), hardware=HARDWARE, args=arguments())
    def test(tmp_path, workload, hardware, args):
        _fuzz(tmp_path, workload, hardware, args)
    return test


# a handful of runs by default (each one starts the CLI, ~0.4 s); many more under `-m slow`
test_fuzz_cli = _fuzz_test(6)
test_fuzz_cli_many = pytest.mark.slow(_fuzz_test(300))
