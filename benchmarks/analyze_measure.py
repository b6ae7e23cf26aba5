"""Benchmark: `perfmodel analyze --measure` on a calibrated spec of this machine (issue 16).

For each function (an MLP block, jax.nn.dot_product_attention, the reference transformer's
train step from `perfmodel validate` at two sizes, a scanned stack of layers) it lowers and
prices the function on the calibrated spec, runs it here (validate's timer: median of repeated
calls, retried while other processes load the machine) and prints measured beside t_calibrated
and the spec-sheet roofline t_lower, then the median |error| of each over the functions. It
prints figures and asserts nothing.

    .venv/bin/python benchmarks/analyze_measure.py [CALIBRATED_SPEC] [quick|full]

(full: validate's longer budget, waiting up to a minute for a quiet machine before each
timing.)

(default: tests/data/cpu-local-quick.yaml, made by `perfmodel bench --quick` then `perfmodel
calibrate`; about a minute on 2 cores.)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def functions():
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(REPO))  # the programs tests/test_analyze.py checks
    from tests.jax_programs import attention, mlp, scanned_layers, train_step_program

    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    yield "mlp 512x1024x2048", mlp, (f32(512, 1024), f32(1024, 2048), f32(2048, 1024))
    yield "dot_product_attention B2 S512 H8 D64", attention, (f32(2, 512, 8, 64),) * 3
    yield "scan of 8 layers 256x512", scanned_layers, (f32(256, 512), f32(8, 512, 512))
    for name in ("tiny-train", "small-train"):
        fn, args, _ = train_step_program(name)
        yield f"train step ({name})", fn, args


def main(spec: str, mode: str = "quick") -> None:
    import perfmodel

    rows = []
    for label, fn, args in functions():
        a = perfmodel.analyze(fn, *args, hardware=spec, measure=True, mode=mode)
        t = a.totals
        rows.append((label, t["t_measured"], t.get("t_calibrated"), t["t_lower"],
                     t.get("err_calibrated"), t["err_lower"],
                     a.measured["timing"]["others"], a.xla["status"]))
    print(f"perfmodel analyze --measure on {spec}")
    print(f"{'function':40s} {'measured':>10s} {'calibrated':>10s} {'err':>7s} {'roofline':>10s}"
          f" {'err':>7s} {'busy':>5s}  FLOPs vs XLA")
    ms = lambda x: "-" if x is None else f"{x * 1e3:8.3f}ms"  # noqa: E731
    pct = lambda x: "-" if x is None else f"{100 * x:+6.1f}%"  # noqa: E731
    for label, m, c, lo, ec, el, busy, st in rows:
        print(f"{label:40s} {ms(m):>10s} {ms(c):>10s} {pct(ec):>7s} {ms(lo):>10s} "
              f"{pct(el):>7s} {100 * (busy or 0):4.0f}%  {st}")

    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    print(f"median |error| over {len(rows)} functions: calibrated "
          f"{100 * median([abs(r[4]) for r in rows if r[4] is not None]):.1f}%, spec-sheet roofline "
          f"{100 * median([abs(r[5]) for r in rows]):.1f}%  (busy: other processes' share "
          f"of the machine while timing)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(REPO / "tests/data/cpu-local-quick.yaml"),
         sys.argv[2] if len(sys.argv) > 2 else "quick")
