"""Two calibrations in a row: fit two measurement CSVs of the same machine and compare.

Prints, for each CSV, the held-out error table, then how far the two calibrated models'
predictions of the held-out kernels are apart and how far their fitted peak and bandwidth
parameters are apart. Asserts nothing.

Usage: .venv/bin/python benchmarks/calibration_stability.py reports/measurements-a.csv reports/measurements-b.csv
"""

from __future__ import annotations

import sys

import numpy as np

from perfmodel import catalog
from perfmodel.calibrate import fit as F
from perfmodel.calibrate.bench import read_measurements


def main(a: str, b: str) -> None:
    base = catalog.load_hardware("cpu-local")
    ra, rb = (F.fit(read_measurements(p), base, p) for p in (a, b))
    for p, r in ((a, ra), (b, rb)):
        print(f"== {p}\n{F.report_text(r)}\n")
    key = lambda r: (r.kernel, r.params, r.dtype)  # noqa: E731
    pb = {key(r): r for r in rb.rows}
    diffs = []
    for r in ra.rows:
        o = pb.get(key(r))
        if r.heldout and o is not None and np.isfinite(r.predicted_s) and np.isfinite(o.predicted_s):
            diffs.append((abs(r.predicted_s - o.predicted_s) / min(r.predicted_s, o.predicted_s), r))
    for label, sel in (("held-out kernels predicted by both", diffs),
                       ("of them >= 1 ms and stable (the acceptance set)",
                        [(x, r) for x, r in diffs if r.measured_s >= F.LONG_S and not r.unstable])):
        d = np.array([x for x, _ in sel])
        print(f"{label}: {len(d)}; prediction A vs B: median {100 * np.median(d):.1f}%, "
              f"p90 {100 * np.percentile(d, 90):.1f}%, worst {100 * d.max():.0f}%; within 15%: "
              f"{(d <= 0.15).sum()} of {len(d)}")
    for x, r in sorted(diffs, key=lambda t: -t[0])[:5]:
        print(f"  {100 * x:5.0f}%  {r.group:16s} {r.kernel} {r.params}")
    print("\nfitted parameters, A vs B (relative difference)")
    for g in sorted(set(ra.groups) & set(rb.groups)):
        pa, pb_ = ra.groups[g].params, rb.groups[g].params
        cells = []
        for k in ("peak_flops", "bandwidth"):
            rel = abs(pa[k] - pb_[k]) / min(pa[k], pb_[k])
            cells.append(f"{k} {pa[k]:.3g} vs {pb_[k]:.3g} ({100 * rel:.0f}%)")
        print(f"  {g:16s} {ra.groups[g].combine}/{rb.groups[g].combine}  " + "; ".join(cells))


if __name__ == "__main__":
    main(*sys.argv[1:3])
