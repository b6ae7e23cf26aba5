"""Benchmark: load + evaluate a large generated workload (10,000 and 100,000 ops) the way the
CLI does (read the YAML file, validate, evaluate every op on one chip).

Prints figures; asserts nothing. Targets (issue 12): under 2 s for 10,000 ops and under 15 s for
100,000 ops on the project's 2-core machine. The YAML's parse, the spec validation and the
evaluation are timed separately so a regression shows where it is.

Before issue 12 (the YAML parsed twice by the pure-Python loader, one formula pass per op),
on the same machine under the same load: 10,000 ops 10.5 s (11.0 s through catalog), 100,000
ops 88 s (91 s). After: 0.5 s (1.2 s) and 6.6 s (5.8 s).

Usage: .venv/bin/python benchmarks/bench_hostile_load.py [N_OPS ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from perfmodel import catalog, engine, specs

KINDS = (
    "{{name: mm-{i}, kind: matmul, m: {a}, k: {b}, n: {c}}}",
    "{{name: ew-{i}, kind: elementwise, shape: [{a}, {b}], inputs: 2, outputs: 1}}",
    "{{name: at-{i}, kind: attention, batch: 1, seq: {a}, heads: 8, head_dim: 64}}",
)


def workload_text(n: int) -> str:
    """A workload of ``n`` distinct ops: matmuls, elementwise ops and attentions in turn."""
    lines = [f"name: big-{n}", "ops:"]
    for i in range(n):
        a, b, c = 128 + i % 4096, 256 + i % 1024, 64 + i % 2048
        lines.append("  - " + KINDS[i % 3].format(i=i, a=a, b=b, c=c))
    return "\n".join(lines) + "\n"


def run(n: int, hw) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"big-{n}.yaml"
        path.write_text(workload_text(n))
        size = path.stat().st_size
        t0 = time.perf_counter()
        data, node = specs.read_yaml(path)
        t1 = time.perf_counter()
        wl = specs.load_model(path, specs.Workload, data, node)
        t2 = time.perf_counter()
        rows = engine.evaluate_rows(hw, wl)
        t3 = time.perf_counter()
        # and the public path (catalog: resolve, read, validate, expand) end to end
        catalog._load.cache_clear()
        t4 = time.perf_counter()
        wl2 = catalog.load_workload(path)
        engine.evaluate_rows(hw, wl2)
        t5 = time.perf_counter()
    assert len(rows) == n
    print(f"{n:>7,} ops ({size / 1e6:.1f} MB YAML) on {hw.name}: read YAML {t1 - t0:.2f} s, "
          f"validate {t2 - t1:.2f} s, evaluate {t3 - t2:.2f} s; load+evaluate "
          f"{t3 - t0:.2f} s (catalog.load_workload + evaluate_rows: {t5 - t4:.2f} s)")


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    hw = catalog.load_hardware("tpu-v5e")
    print(f"YAML loader: {'libyaml (C)' if getattr(specs, 'YAML_C', False) else 'pure Python'}")
    for n in sizes:
        run(n, hw)


if __name__ == "__main__":
    main(sys.argv[1:])
