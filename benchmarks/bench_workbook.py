"""Benchmark: formula cells written per second, and the time to write a 10,000-op workbook.

Prints figures; asserts nothing. Usage: .venv/bin/python benchmarks/bench_workbook.py [N_OPS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perfmodel import catalog
from perfmodel.report.workbook import write_workbook_stats
from perfmodel.specs import Workload


def workload(n_ops: int) -> Workload:
    kinds = [
        lambda i: {"name": f"mm-{i}", "kind": "matmul", "m": 128 + i, "k": 4096, "n": 4096},
        lambda i: {"name": f"ew-{i}", "kind": "elementwise", "shape": [1024, 64 + i], "inputs": 2,
                   "outputs": 1, "flops_per_element": 1},
        lambda i: {"name": f"attn-{i}", "kind": "attention", "batch": 1, "seq": 128 + i,
                   "heads": 8, "kv_heads": 2, "head_dim": 128, "causal": True},
    ]
    return Workload.model_validate({"name": f"bench-{n_ops}",
                                    "ops": [kinds[i % 3](i) for i in range(n_ops)]})


def main() -> None:
    n_ops = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    hw = [catalog.load_hardware("tpu-v4")]
    with tempfile.TemporaryDirectory() as d:
        for n in (1_000, n_ops):
            wl = workload(n)
            times, cpu, cells = [], [], 0
            for _ in range(3 if n <= 1_000 else 2):
                t, c = time.perf_counter(), time.process_time()
                cells = write_workbook_stats(Path(d) / "b.xlsx", [wl], hw)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            med = statistics.median(times)
            size = (Path(d) / "b.xlsx").stat().st_size
            print(f"{n:>6} ops: {cells:>8} formula cells in {med:6.2f} s (runs {len(times)}, "
                  f"min {min(times):.2f} max {max(times):.2f}) -> {cells / med:,.0f} formula cells/s, "
                  f"file {size / 1e6:.1f} MB; this process's CPU {statistics.median(cpu):.2f} s (the wall "
                  f"time adds waiting for a core: load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
