"""Our collective model against jax.experimental.roofline, and real runs on 8 host devices.

Everything jax runs in a subprocess (xla_collectives.in_subprocess) because the 8 host devices
need XLA_FLAGS=--xla_force_host_platform_device_count=8 before jax is first imported.

Derivations (per device, 1 MiB = b per device, n devices over the collective's k mesh axes):

- jax's ring rule (all_gather, psum_scatter; psum = 2 of them) splits the shard over the k
  axes, then for the axes in decreasing size adds shard x (n_a - 1) and grows the shard by n_a:
  (b/k)(n_1 - 1) + (b n_1/k)(n_2 - 1) + ... = b (n - 1) / k (telescoping). For all_gather
  V = n b, so ici_bytes = V (n-1)/n / k = comm_bytes / k; psum_scatter V = b, shard b/n:
  V (n-1)/n / k; psum twice that. One axis: equal to our comm_bytes.
- ppermute (shift by one): jax counts V times the most shifts sharing one undirected link. On
  one axis each link carries one shift: V = our comm_bytes. On 2x4 over both axes the shifts
  (0,3)->(1,0) and (1,3)->(0,0) cross the x link (0,3)-(1,3) in opposite directions: jax
  counts 2 V; a full-duplex link carries them at once, so ours stays V.
- all_to_all: jax ici_bytes = size / 2 / bisection with size = V and bisection =
  min_len^(k-1) x (2 if min_len > 2): V/4 on one wrapped ring. Ours: each device sends
  V (n-1)/n^2 (comm_bytes), and the time is V/4 over the 2 links of the ring's cut =
  V / (4 W_bidi): on one wrapped axis ici_bytes = t_bandwidth x W_bidi (2 x link_bandwidth).
- hops: jax's ring latency is n_longest x k per pass; ours floor(n/2) per wrapped axis and
  n - 1 per unwrapped one (an axis of 2 never wraps), per pass. all_to_all: jax sums n_a/2,
  ours the diameter, the same for even lengths.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

pytest.importorskip("jax")
pytest.importorskip("absl")

from perfmodel.calibrate import xla_collectives as xc  # noqa: E402

MiB = 2**20
MESH = {"8": {"x": 8}, "2x4": {"x": 2, "y": 4}}


@pytest.fixture(scope="module")
def rows():
    return xc.in_subprocess("cross_check")


def _row(rows, coll, mesh, axes):
    (r,) = [r for r in rows if (r["collective"], r["mesh"], r["axes"]) == (coll, mesh, axes)]
    return r


def test_reference_numbers_for_8_devices_1_mib(rows):
    # jax.experimental.roofline's per-device bytes, by the ring formulas: all_gather 7/8 x 8 MiB, psum 2 x 7/8 MiB, psum_scatter
    # 7/8 MiB, ppermute 1 MiB, all_to_all 2 MiB
    want = {"all_gather": 7 * MiB, "psum": 2 * 7 * MiB // 8, "psum_scatter": 7 * MiB // 8,
            "ppermute": MiB, "all_to_all": 2 * MiB, "matmul_psum": 2 * 7 * MiB // 8}
    for coll, b in want.items():
        assert _row(rows, coll, "8", "x")["jax_ici_bytes"] == b, coll


def test_every_case_is_covered(rows):
    cases = {(r["collective"], r["mesh"], r["axes"]) for r in rows}
    assert len(cases) == len(rows) == 6 * 3  # 6 programs x (8:x, 2x4:y, 2x4:x+y)


@pytest.mark.parametrize("coll", ["all_gather", "psum", "psum_scatter", "matmul_psum"])
def test_ring_collectives_jax_is_ours_over_the_number_of_axes(rows, coll):
    for r in [r for r in rows if r["collective"] == coll]:
        k = len(r["axes"].split("+"))
        assert Fraction(r["jax_ici_bytes"]) == Fraction(r["comm_bytes"]) / k, r
        # and each is the closed form: passes x V (n-1)/n (/k for jax)
        passes = 2 if coll in ("psum", "matmul_psum") else 1
        assert r["comm_bytes"] == pytest.approx(passes * r["V"] * (r["n"] - 1) / r["n"])


def test_ppermute_counts_undirected_link_sharing(rows):
    for r in [r for r in rows if r["collective"] == "ppermute"]:
        assert r["comm_bytes"] == r["V"] == MiB
        contention = 2 if (r["mesh"], r["axes"]) == ("2x4", "x+y") else 1
        assert r["jax_ici_bytes"] == contention * r["comm_bytes"], r


def test_all_to_all_bisection(rows):
    for r in [r for r in rows if r["collective"] == "all_to_all"]:
        lens = [MESH[r["mesh"]][a] for a in r["axes"].split("+")]
        k, lo = len(lens), min(lens)
        bis = lo ** (k - 1) * (2 if lo > 2 else 1)
        assert r["jax_ici_bytes"] == r["V"] / 2 / bis
        n = r["n"]
        assert r["comm_bytes"] == pytest.approx(r["V"] * (n - 1) / n**2)
        # ratio n^2 / (4 (n-1)) on one wrapped ring: 16/7 for 8, 4/3 for 4
        if k == 1:
            assert Fraction(r["ratio"]) == Fraction(n * n, 4 * (n - 1))
            # jax's bytes over W_bidi is our time: ici_bytes = t_bandwidth x 2 link_bandwidth
            assert r["jax_ici_bytes"] == pytest.approx(r["t_bandwidth"] * 2 * r["link_bandwidth"])


def test_hops(rows):
    for r in rows:
        lens = [MESH[r["mesh"]][a] for a in r["axes"].split("+")]
        k = len(lens)
        passes = 2 if r["collective"] in ("psum", "matmul_psum") else 1
        ours_ring = passes * sum(n // 2 if n > 2 else n - 1 for n in lens)
        if r["collective"] in ("all_gather", "psum", "psum_scatter", "matmul_psum"):
            assert r["jax_ici_latency"] == passes * max(lens) * k
            assert r["hops"] == ours_ring
        elif r["collective"] == "all_to_all":
            assert r["jax_ici_latency"] == r["hops"] == sum(n // 2 for n in lens)
    # the wrapped ring of 8: jax 8 steps one way round, ours 4 both ways
    r = _row(rows, "all_gather", "8", "x")
    assert (r["jax_ici_latency"], r["hops"]) == (8, 4)


def test_row_parallel_matmul_flops(rows):
    # x [256, 128 n] @ w [128 n, 1024], K sharded: 2 x 256 x 128 x 1024 FLOPs per device
    for r in [r for r in rows if r["collective"] == "matmul_psum"]:
        assert r["jax_flops"] == r["our_matmul_flops"] == 2 * 256 * 128 * 1024


def test_collectives_run_on_host_devices():
    # smoke: every program runs on the 8 host devices and comes back with a time and our
    # prediction for the same V (the full size sweep is the slow test below)
    out = xc.in_subprocess("time_collectives", sizes=[1 << 16], budget="tiny")
    assert {r["collective"] for r in out} == set(xc.COLLECTIVES)
    for r in out:
        assert r["measured_s"] > 0 and r["predicted_s"] > 0 and r["reps"] >= 3
        assert math.isfinite(r["predicted_s"])


@pytest.mark.slow
def test_timed_sweep_bytes_grow():
    out = xc.in_subprocess("time_collectives", sizes=[1 << 16, 1 << 20, 1 << 23], budget="quick")
    for coll in xc.COLLECTIVES:
        rs = sorted([r for r in out if r["collective"] == coll], key=lambda r: r["bytes"])
        # more bytes never predicted faster, and the biggest size measures slower than the
        # smallest (host copies are far from linear, so nothing tighter is claimed)
        assert all(a["predicted_s"] <= b["predicted_s"] for a, b in zip(rs, rs[1:]))
        assert rs[-1]["measured_s"] > rs[0]["measured_s"]
