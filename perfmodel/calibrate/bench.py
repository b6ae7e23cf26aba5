"""Run the kernel suite and keep the timings in a CSV; read and validate such CSVs.

CSV format (one row per kernel, shape, dtype and pass; the header is exactly ``COLUMNS``):

========== =========================================================================
kernel     kernel kind, one of ``kernels.KINDS`` (matmul, softmax, attention_decode ...)
params     JSON object of the op fields (plus meta keys such as ``interpret``)
dtype      fp32 | bf16 | fp16 (perfmodel dtype names)
median_s   median wall time of one call, seconds
min_s      fastest call, seconds
p20_s      20th percentile, seconds
cv         coefficient of variation of the timed calls (std / mean); > 0.2 = unstable
reps       number of timed calls
pass       1-based pass number (passes are interleaved: every kernel once, then again)
backend    jax.default_backend(): cpu | gpu | tpu
device_kind  jax.devices()[0].device_kind
n_devices  jax.device_count()
jax_version  jax.__version__
host       socket.gethostname()
========== =========================================================================

Rows are appended and flushed one at a time, so an interrupted run keeps what it measured; a
rerun with the same output skips every (kernel, params, dtype, pass) already present. On a CPU
backend a kernel timed while other processes were busy is timed again later (``run_bench``).
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import json
import math
import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..specs import DTYPE_ALIASES, DTYPE_BYTES, SpecError
from . import kernels as K
from .timing import BUDGETS, UNSTABLE_CV, Budget, time_kernel

COLUMNS = ["kernel", "params", "dtype", "median_s", "min_s", "p20_s", "cv", "reps", "pass",
           "backend", "device_kind", "n_devices", "jax_version", "host"]
TIME_COLUMNS = ("median_s", "min_s", "p20_s")
INT_COLUMNS = ("reps", "pass", "n_devices")
DEFAULT_OUTPUT = Path("reports/measurements.csv")
# Passes dominate the noise (on a shared machine a kernel's median moves more between passes
# than within one), so full runs 5 and quick keeps 3, trimming shapes and per-kernel budget
# instead (run times: docs/measurements.md).
DEFAULT_PASSES = {"full": 5, "quick": 3, "tiny": 1}
CONTENDED = 0.2  # other processes' share of the machine above which a timing is retried
ATTEMPTS = 3     # timings of one (kernel, pass) at most, when contended
BUSY_STREAK = 3  # this many contended kernels in a row: the machine is busy, stop retrying
# Retries are capped at a quarter of the planned rows, so a busy machine costs at most ~25% more
# time (bench then writes the rows and lists them as contended).


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a bench: the rows measured so far are in ``path``."""

    def __init__(self, path: Path, rows_kept: int, rows_new: int, rows_todo: int):
        super().__init__(f"interrupted: {rows_kept} rows kept in {path}")
        self.path, self.rows_kept = path, rows_kept
        self.rows_new, self.rows_todo = rows_new, rows_todo


@dataclass
class BenchResult:
    path: Path
    mode: str
    passes: int
    rows_new: int = 0
    rows_skipped: int = 0
    rows_total: int = 0
    seconds: float = 0.0
    unstable: list = field(default_factory=list)   # (label, pass, cv) with cv > UNSTABLE_CV
    failed: list = field(default_factory=list)     # (label, pass, error text)
    contended: list = field(default_factory=list)  # (label, pass, others' share) written anyway
    retried: int = 0                               # timings repeated because contended
    environment: dict = field(default_factory=dict)


def environment() -> dict:
    """The backend columns of every row (imports jax)."""
    import jax

    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "n_devices": len(devices), "jax_version": jax.__version__,
            "host": socket.gethostname()}


def select(kernels: list, patterns: str | None) -> list:
    """Kernels whose name matches one of comma-separated glob patterns (None: all)."""
    if not patterns:
        return kernels
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    unknown = [p for p in pats if not any(fnmatch.fnmatchcase(n, p) for n in K.KINDS)]
    if unknown:
        raise SpecError(f"--kernels {', '.join(unknown)} matches no kernel kind; kinds: "
                        f"{', '.join(K.KINDS)} (glob patterns such as 'matmul*' work)")
    return [k for k in kernels if any(fnmatch.fnmatchcase(k.name, p) for p in pats)]


def plan(kernels: list, passes: int, done: set = frozenset()) -> list[tuple[int, object]]:
    """(pass, kernel) in run order: passes interleaved (the whole suite, then again), odd passes
    forward and even passes backward so slow drift of the machine spreads evenly over kernels."""
    order = []
    for p in range(1, passes + 1):
        seq = kernels if p % 2 else list(reversed(kernels))
        order += [(p, k) for k in seq if (*k.key, p) not in done]
    return order


def _fmt(x: float, digits: int = 6) -> str:
    return f"{x:.{digits}g}"


def _repair_tail(path: Path) -> bool:
    """Drop a partial last line (a write cut short); True if something was dropped."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(cut)
    return True


def _existing(path: Path, env: dict, log: Callable) -> tuple[set, int]:
    """Keys already measured in ``path`` and their count; checks the header for appending."""
    if not path.exists():
        return set(), 0
    from ..specs import read_input

    if not read_input(path, "a measurement CSV file"):  # a regular file, within the size limit
        return set(), 0
    if _repair_tail(path):
        log(f"{path}: dropped a partial last line (a write cut short)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if header is None:
        return set(), 0
    if header != COLUMNS:
        raise SpecError(f"{path}: exists but its header is not the bench header "
                        f"({','.join(COLUMNS)}), so new rows cannot be appended to it. "
                        f"Choose another --output, or move that file away.")
    try:
        df = read_measurements(path)
    except SpecError as e:
        if "no measurement rows" in str(e):
            return set(), 0
        raise SpecError(f"cannot resume: {e}") from None
    for col in ("backend", "device_kind", "host"):
        seen = sorted(set(df[col].astype(str)) - {str(env[col])})
        if seen:
            log(f"note: {path} already holds rows with {col} {', '.join(seen)}; this run adds "
                f"rows with {col} {env[col]} (use another --output to keep hosts apart)")
    done = set(zip(df["kernel"], df["params"], df["dtype"], df["pass"].astype(int)))
    return done, len(df)


def _proc_stat() -> tuple[float, float] | None:
    """(busy, total) seconds of all cores since boot from /proc/stat (Linux; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v) - idle) / hz, sum(v) / hz


class CpuMeter:
    """Share of the machine that *other* processes used during a window: the cores' busy time
    (/proc/stat) minus this process's CPU time, over wall time x cores. None where /proc/stat
    is missing or the window is too short for its 10 ms ticks."""

    MIN_WINDOW_S = 0.2

    def start(self) -> None:
        self._t0 = (_proc_stat(), time.process_time(), time.perf_counter())

    def others(self) -> float | None:
        stat0, cpu0, wall0 = self._t0
        stat1, cpu1, wall1 = _proc_stat(), time.process_time(), time.perf_counter()
        wall = wall1 - wall0
        if stat0 is None or stat1 is None or wall < self.MIN_WINDOW_S:
            return None
        busy = (stat1[0] - stat0[0]) - (cpu1 - cpu0)
        return min(1.0, max(0.0, busy / (wall * (os.cpu_count() or 1))))


def _warn_if_busy(env: dict, log: Callable, seconds: float = 0.5) -> None:
    """On a CPU backend other processes share the cores being measured: say so when they do."""
    if env["backend"] != "cpu":
        return
    meter = CpuMeter()
    meter.start()
    time.sleep(seconds)
    busy = meter.others()
    if busy is not None and busy > CONTENDED:
        log(f"note: other processes keep {busy:.0%} of the CPU busy: timings will be noisy "
            f"(high cv, passes disagreeing); for calibration bench a quiet machine")


def run_bench(output: Path | str = DEFAULT_OUTPUT, mode: str = "full", passes: int | None = None,
              kernels: str | None = None, progress: bool = True, budget: Budget | None = None,
              log: Callable | None = None, retry_contended: bool | None = None) -> BenchResult:
    """Measure the suite of ``mode`` ('full', 'quick' or 'tiny') ``passes`` times into the CSV
    ``output`` (created with its parent directory; resumed if it exists). ``kernels``:
    comma-separated glob patterns over kernel names. Raises BenchInterrupted on Ctrl-C.

    ``retry_contended`` (default: on a CPU backend, except in the tiny mode): a kernel timed
    while other processes took more than ``CONTENDED`` of the machine is put back at the end of
    the queue and timed again (at most ``ATTEMPTS`` times in all; the least contended attempt is
    written, so rows can come out of suite order), unless the machine stays busy
    (``BUSY_STREAK`` contended kernels in a row) or a quarter of the rows were retried already.
    Rows still contended are listed in ``BenchResult.contended``."""
    from tqdm import tqdm

    if log is None:
        def log(msg):
            tqdm.write(msg, file=sys.stderr)
    path = Path(output)
    if mode not in DEFAULT_PASSES:
        raise SpecError(f"unknown bench mode {mode!r}; valid: {', '.join(DEFAULT_PASSES)}")
    passes = DEFAULT_PASSES[mode] if passes is None else int(passes)
    if passes < 1:
        raise SpecError(f"--passes must be 1 or more, got {passes}")
    budget = budget or BUDGETS[mode]
    start = time.perf_counter()
    env = environment()
    suite = select(K.suite(mode, env["backend"]), kernels)
    path.parent.mkdir(parents=True, exist_ok=True)
    done, n_before = _existing(path, env, log)
    if mode != "tiny":
        _warn_if_busy(env, log)
    todo = deque(plan(suite, passes, done))
    res = BenchResult(path, mode, passes, rows_skipped=len(suite) * passes - len(todo),
                      rows_total=n_before, environment=env)
    watch = (env["backend"] == "cpu" and mode != "tiny") if retry_contended is None \
        else retry_contended
    tries: dict = {}  # (kernel key, pass) -> [(others' share, Timing)] of contended attempts
    allowance = max(ATTEMPTS, len(todo) // 4)
    retries_left, streak = allowance, 0
    meter = CpuMeter()

    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if n_before == 0 and f.tell() == 0:
            w.writerow(COLUMNS)
            f.flush()
        bar = tqdm(total=len(todo), unit="kernel", disable=not progress or not todo,
                   file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
        try:
            while todo:
                p, k = todo[0]
                bar.set_description(f"pass {p}/{passes}", refresh=False)
                bar.set_postfix_str(k.label()[:60])
                try:
                    built = k.build()
                    meter.start()
                    t = time_kernel(built, budget)
                    others = meter.others() if watch else None
                    del built
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # one broken kernel must not lose the others
                    msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    res.failed.append((k.label(), p, msg))
                    log(f"failed: {k.label()} (pass {p}): {msg}")
                    todo.popleft()
                    bar.update(1)
                    continue
                todo.popleft()
                busy = others is not None and others > CONTENDED
                streak = streak + 1 if busy else 0
                if busy:
                    attempts = tries.setdefault((k.key, p), [])
                    attempts.append((others, t))
                    # retry later, when the other work may be done; not while the machine stays
                    # busy (a streak of contended kernels) and not beyond the retry allowance
                    if len(attempts) < ATTEMPTS and streak <= BUSY_STREAK and retries_left > 0:
                        retries_left -= 1
                        todo.append((p, k))
                        continue
                    others, t = min(attempts, key=lambda a: a[0])
                    res.contended.append((k.label(), p, others))
                name, params, dtype = k.key
                w.writerow([name, params, dtype, _fmt(t.median_s), _fmt(t.min_s),
                            _fmt(t.p20_s), _fmt(t.cv, 4), t.reps, p, env["backend"],
                            env["device_kind"], env["n_devices"], env["jax_version"],
                            env["host"]])
                f.flush()
                res.rows_new += 1
                res.rows_total += 1
                if t.cv > UNSTABLE_CV:
                    res.unstable.append((k.label(), p, t.cv))
                bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            raise BenchInterrupted(path, res.rows_total, res.rows_new, len(todo)) from None
        bar.close()
    res.retried = allowance - retries_left
    res.seconds = time.perf_counter() - start
    return res


def _listing(items: list[str], limit: int) -> list[str]:
    shown = [f"  {x}" for x in items[:limit]]
    if len(items) > limit:
        shown.append(f"  ... and {len(items) - limit} more")
    return shown


def summary_text(res: BenchResult, limit: int = 12) -> str:
    """What a bench run did, with the contended, unstable and failed rows (``limit`` of each)."""
    env = res.environment
    lines = [f"wrote {res.rows_new} rows to {res.path} ({res.rows_total} in the file, "
             f"{res.rows_skipped} already measured) in {res.seconds:.0f} s: {res.mode} suite, "
             f"{res.passes} pass(es), backend {env.get('backend')} ({env.get('device_kind')}, "
             f"{env.get('n_devices')} device(s)), jax {env.get('jax_version')}"]
    if res.retried:
        lines.append(f"{res.retried} timing(s) repeated because other processes were busy")
    if res.contended:
        lines.append(f"{len(res.contended)} row(s) measured while other processes took more "
                     f"than {CONTENDED:.0%} of the CPU in every attempt (for calibration, "
                     f"rerun on a quiet machine into a new --output):")
        lines += _listing([f"{label} pass {p}: {share:.0%} busy"
                           for label, p, share in res.contended], limit)
    if res.unstable:
        lines.append(f"{len(res.unstable)} unstable row(s) (cv > {UNSTABLE_CV}; the fit can "
                     f"filter on the cv column):")
        lines += _listing([f"{label} pass {p}: cv {cv:.2f}" for label, p, cv in res.unstable],
                          limit)
    if res.failed:
        lines.append(f"{len(res.failed)} kernel run(s) failed (no row written; a rerun retries "
                     f"them):")
        lines += _listing([f"{label} pass {p}: {msg}" for label, p, msg in res.failed], limit)
    return "\n".join(lines)


# ---- reading ------------------------------------------------------------------------------

def _bad(path, line, col, problem, fix) -> SpecError:
    where = f"{path} line {line}" + (f", column '{col}'" if col else "")
    return SpecError(f"{where}: {problem}. {fix.rstrip('.')}.")


def _number(path, line, col, text, *, integer=False, positive=False):
    kind = "a whole number" if integer else "a number"
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise _bad(path, line, col, f"{text!r} is not {kind}",
                   f"Write {col} as {kind}" + (" of seconds" if col.endswith("_s") else "")
                   + " (files written by `perfmodel bench` are)") from None
    if not math.isfinite(v) or (integer and v != int(v)):
        what = "a finite number" if not math.isfinite(v) else kind
        raise _bad(path, line, col, f"{text!r} is not {what}", f"Write {col} as {kind}")
    if positive and v <= 0 or v < 0:
        need = "positive" if positive else "zero or more"
        what = "a time" if col.endswith("_s") else col
        raise _bad(path, line, col, f"{text} is {'negative' if v < 0 else 'zero'}; {what} must "
                   f"be {need}", "Remeasure the row (perfmodel bench) or delete it")
    return int(v) if integer else v


def read_measurements(path: Path | str):
    """Read and validate a measurement CSV; return a pandas DataFrame with ``COLUMNS`` (numbers
    typed, params as canonical JSON, dtype normalised). Extra columns are ignored. Any problem
    raises SpecError naming the file, the line, the column and the fix."""
    import pandas as pd

    from ..limits import MAX_CSV_FIELD_CHARS
    from ..specs import read_input

    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file. Run `perfmodel bench --output {path}` to "
                        f"measure, or give the path of an existing measurement CSV.")
    raw = read_input(path, "a measurement CSV file")
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which is not content
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: is not UTF-8 text ({e.reason} at byte {e.start}); expected "
                        f"a measurement CSV.") from None
    reader = csv.reader(text.splitlines())
    rows = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as e:
        too_long = "field larger than field limit" in str(e)
        why = (f"a field is longer than {MAX_CSV_FIELD_CHARS:,} characters (the limit "
               f"MAX_CSV_FIELD_CHARS)" if too_long else f"it does not parse as CSV ({e})")
        raise SpecError(f"{path} line {reader.line_num}: {why}; a measurement CSV holds short "
                        f"fields, as written by `perfmodel bench`: check that this is one.") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise SpecError(f"{path}: is empty; expected a header line ({','.join(COLUMNS)}) and "
                        f"one row per measurement, as written by `perfmodel bench`.")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        # a near-miss can only be a column that is not one of ours (a misspelling)
        spare = [h for h in header if h not in COLUMNS]
        close = {m: difflib.get_close_matches(m, spare, n=1) for m in missing}
        hints = "".join(f" ('{m}' looks like '{c[0]}')" for m, c in close.items() if c)
        raise SpecError(f"{path} line 1: missing column(s) {', '.join(missing)}{hints}. The "
                        f"header must name {','.join(COLUMNS)} (the order written by "
                        f"`perfmodel bench`; extra columns are ignored): rename or add the "
                        f"columns, or remeasure with `perfmodel bench`.")
    idx = {c: header.index(c) for c in COLUMNS}
    out = []
    for line, raw in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in raw):
            continue
        if len(raw) < len(header):
            raise _bad(path, line, None, f"has {len(raw)} fields but the header has "
                       f"{len(header)}", "Complete or delete the row (a partial last line "
                       "is what an interrupted copy leaves)")
        r = {c: raw[i].strip() for c, i in idx.items()}
        kernel = r["kernel"]
        if kernel not in K.KINDS:
            close = difflib.get_close_matches(kernel, list(K.KINDS), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise _bad(path, line, "kernel", f"unknown kernel {kernel!r}",
                       f"{hint}Known kernels: {', '.join(K.KINDS)}")
        try:
            params = json.loads(r["params"])
        except json.JSONDecodeError as e:
            raise _bad(path, line, "params", f"is not valid JSON ({e.msg} at character "
                       f"{e.pos}: {r['params'][:60]!r})", "Write params as a JSON object of "
                       "the op fields, e.g. {\"m\":512,\"k\":512,\"n\":512,\"batch\":1}") from None
        dtype = DTYPE_ALIASES.get(r["dtype"].lower(), r["dtype"].lower())
        if dtype not in DTYPE_BYTES:
            raise _bad(path, line, "dtype", f"unknown dtype {r['dtype']!r}",
                       f"Use one of {', '.join(DTYPE_BYTES)}")
        try:
            K.op_for(kernel, params, dtype)
        except SpecError as e:
            raise _bad(path, line, "params", str(e).rstrip("."),
                       "Fix the params JSON to the op fields of that kernel") from None
        v = {c: _number(path, line, c, r[c], positive=True) for c in TIME_COLUMNS}
        v["cv"] = _number(path, line, "cv", r["cv"])
        v.update({c: _number(path, line, c, r[c], integer=True, positive=True)
                  for c in INT_COLUMNS})
        tol = 1e-9 * v["median_s"]
        if not (v["min_s"] <= v["p20_s"] + tol and v["p20_s"] <= v["median_s"] + tol):
            raise _bad(path, line, "min_s", f"times out of order (min_s {r['min_s']}, p20_s "
                       f"{r['p20_s']}, median_s {r['median_s']}; need min <= p20 <= median)",
                       "Check that the time columns are not swapped, or remeasure the row")
        if not r["backend"]:
            raise _bad(path, line, "backend", "is empty", "Write the JAX backend (cpu, gpu or "
                       "tpu) the row was measured on")
        out.append({"kernel": kernel, "params": K.params_json(params), "dtype": dtype, **v,
                    **{c: r[c] for c in ("backend", "device_kind", "jax_version", "host")}})
    if not out:
        raise SpecError(f"{path}: has a header but no measurement rows. Run `perfmodel bench "
                        f"--output {path}` to measure (it resumes into this file).")
    df = pd.DataFrame(out)[COLUMNS]
    df.attrs["path"] = str(path)
    return df


def unstable(df, max_cv: float = UNSTABLE_CV):
    """Boolean mask of rows whose cv exceeds ``max_cv`` (flagged, not fitted blindly)."""
    return df["cv"] > max_cv
