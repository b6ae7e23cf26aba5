"""Benchmark: vectorised roofline evaluations per second, and `perfmodel --help` wall time.

Prints figures; asserts nothing. Targets (issue 2): at least 1e6 evaluations/s on one core over
a sweep of 1,000,000 matmul shapes, and `perfmodel --help` under 1 s.

Usage: .venv/bin/python benchmarks/bench_eval.py [N_SHAPES] [RUNS]
"""

from __future__ import annotations

import os

# one core: keep any BLAS/OpenMP pools to one thread (elementwise numpy is single-threaded anyway)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchutil import pin_one_core, timed  # noqa: E402
from perfmodel import catalog, engine  # noqa: E402
from perfmodel.specs import AttentionOp, MatmulOp  # noqa: E402


def spread(xs: list[float]) -> str:
    med = statistics.median(xs)
    return (f"median {med * 1e3:.1f} ms, min {min(xs) * 1e3:.1f} ms, max {max(xs) * 1e3:.1f} ms "
            f"(spread {(max(xs) - min(xs)) / med:.1%} of median, {len(xs)} runs)")


def bench_matmul(hw, n: int, runs: int) -> None:
    rng = np.random.default_rng(0)
    m, k, nn = (rng.integers(1, 16385, n).astype(np.float64) for _ in range(3))
    op = MatmulOp(name="sweep", kind="matmul", m=1, k=1, n=1)  # only its kind and dtype are used
    inputs = {"elem_bytes": 2.0, "batch": 1.0, "m": m, "k": k, "n": nn}

    def run():
        return engine.op_columns(op, hw, inputs=inputs)

    times = timed(run, runs)
    med = statistics.median(times)
    print(f"matmul sweep, {n:,} shapes (m, k, n uniform in 1..16384, bf16) on {hw.name}:")
    print(f"  {spread(times)}")
    print(f"  {n / med:,.0f} roofline evaluations/s (median; best {n / min(times):,.0f}/s); "
          f"target >= 1,000,000/s")
    # the vectorised path agrees with the scalar one (same formulas), spot-checked
    _, cost, roof = run()
    cols = {**cost, **roof}
    worst = 0.0
    for i in rng.integers(0, n, 20):
        one = MatmulOp(name="x", kind="matmul", m=int(m[i]), k=int(k[i]), n=int(nn[i]))
        ref = engine.evaluate_op(one, hw)
        for c in ("flops", "flops_exec", "hbm_bytes", "t_lower", "t_upper", "mfu"):
            worst = max(worst, abs(cols[c][i] - ref[c]) / abs(ref[c]))
        if cols["bound"][i] != ref["bound"]:
            worst = float("inf")
    print(f"  vectorised vs scalar on 20 random shapes: max relative difference {worst:.1e}")


def bench_attention(hw, n: int, runs: int) -> None:
    rng = np.random.default_rng(1)
    seq = rng.integers(1, 32769, n).astype(np.float64)
    op = AttentionOp(name="sweep", kind="attention", batch=1, seq=1, heads=1, head_dim=128,
                     causal=True, impl="flash")
    inputs = {"elem_bytes": 2.0, "batch": 1.0, "seq": seq, "kv_seq": seq, "heads": 32.0,
              "kv_heads": 8.0, "head_dim": 128.0, "causal": 1.0}
    times = timed(lambda: engine.op_columns(op, hw, inputs=inputs), runs)
    print(f"flash causal GQA attention sweep, {n:,} sequence lengths on {hw.name}: "
          f"{n / statistics.median(times):,.0f} evaluations/s ({spread(times)})")


def bench_help(runs: int = 5) -> None:
    exe = Path(sys.executable).parent / "perfmodel"
    cmd = [str(exe)] if exe.exists() else [shutil.which("perfmodel") or "perfmodel"]
    subprocess.run(cmd + ["--help"], capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd + ["--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    base = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        base.append(time.perf_counter() - t)
    print(f"`{' '.join(cmd)} --help` wall time: {spread(times)}; target < 1000 ms")
    print(f"  (bare `python -c pass` for comparison: median {statistics.median(base) * 1e3:.1f} ms)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, {pin_one_core()}")
    hw = catalog.load_hardware("tpu-v4")
    bench_matmul(hw, n, runs)
    bench_attention(hw, n, runs)
    bench_help()


if __name__ == "__main__":
    main()
