"""Benchmark: 1,000,000 configurations of a 50-op workload, totals per configuration, in chunks.

Prints wall time, configurations/s, op evaluations/s and peak RSS; asserts nothing.
Usage: .venv/bin/python benchmarks/bench_sweep.py [N_CONFIGS]
"""

from __future__ import annotations

import resource
import sys
import time

from perfmodel import catalog
from perfmodel.specs import Workload
from perfmodel.sweeps import sweep_totals_chunked


def workload_50() -> Workload:
    ops = []
    for i in range(50):
        k = i % 3
        if k == 0:
            ops.append({"name": f"mm{i}", "kind": "matmul", "m": 1024, "k": 4096, "n": 4096 + 128 * i,
                        "batch": 1})
        elif k == 1:
            ops.append({"name": f"at{i}", "kind": "attention", "batch": 1, "seq": 2048, "heads": 16,
                        "kv_heads": 4, "head_dim": 128, "causal": True})
        else:
            ops.append({"name": f"ew{i}", "kind": "elementwise", "shape": [4096, 4096], "inputs": 2,
                        "outputs": 1, "flops_per_element": 1})
    return Workload.model_validate({"name": "bench-50", "ops": ops})


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    side = int(round(n ** 0.5))
    # batch (matmul, attention) x seq (attention): side x side configurations
    vary = [f"batch=1..{side}:1", f"seq=128..{128 + side - 1}:1"]
    wl = workload_50()
    hw = [catalog.load_hardware("tpu-v5e")]
    t = time.perf_counter()
    tot = sweep_totals_chunked(wl, hw, vary, chunk=100_000)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    cfg = len(tot)
    print(f"{cfg:,} configurations x {len(wl.ops)} ops on 1 chip: {dt:.1f} s wall "
          f"({cfg / dt:,.0f} configurations/s, {cfg * len(wl.ops) / dt:,.0f} op evaluations/s), "
          f"peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
