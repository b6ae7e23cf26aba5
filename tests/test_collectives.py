"""Collectives on TPU tori and GPU nodes: hand-derived numbers (derivations in comments).

Units: V bytes; link_bandwidth one-way per link (v5e, v4: 4.5e10 B/s); hop_latency 1 us (TPU),
2 us (GPU, an assumption). W_bidi = 2 x 4.5e10 = 9e10 on a wrapped axis, W_uni = 4.5e10
otherwise. H100 NVLink per GPU each way 18 x 25 GB/s = 4.5e11; NIC 400 Gb/s = 5e10 B/s.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from perfmodel import catalog, engine, results, topology
from perfmodel.cli import main
from perfmodel.formula import evaluate
from perfmodel.model import with_slice
from perfmodel.specs import CollectiveOp, SpecError, Workload

GiB = 2**30
MiB = 2**20
L_V5E = 4.5e10
NVLINK_H100 = 18 * 25e9  # 4.5e11
NIC = 400e9 / 8  # 5e10


def hw(name):
    return catalog.load_hardware(name)


def run(chip, slice_, mesh, collective, axes, V, slices=1, **kw):
    """Evaluate one collective; returns the JSON row."""
    wl = Workload(name="t", slice=slice_, mesh=mesh, slices=slices, ops=[
        dict(name="c", kind="collective", collective=collective, axes=axes, bytes=V, **kw)])
    return engine.evaluate_op(wl.ops[0], hw(chip), wl)


# ---- topology -----------------------------------------------------------------------------

def test_wraparound_rules():
    # v4/v5p: wraparound only for whole 4x4x4 cubes (every axis a multiple of 4)
    assert topology.wraps([4, 4, 4], "whole_cubes_4") == [True] * 3
    assert topology.wraps([4, 4, 8], "whole_cubes_4") == [True] * 3
    assert topology.wraps([2, 2, 4], "whole_cubes_4") == [False] * 3
    # v5e/v6e: only an axis of full length 16
    assert topology.wraps([8, 16], "full_axis_16") == [False, True]
    assert topology.wraps([16, 16], "full_axis_16") == [True, True]
    assert topology.wraps([4, 4], "full_axis_16") == [False, False]


def test_hop_counts():
    # 4x4 without wraparound: (0,0) -> (3,3) is 3 + 3 = 6 hops (How to Scale Your Model, TPU chapter)
    assert topology.p2p_hops((0, 0), (3, 3), [4, 4], [False, False]) == 6
    # 16x16 with wraparound: (0,0) -> (15,15) is 1 + 1 = 2 (go the short way round)
    assert topology.p2p_hops((0, 0), (15, 15), [16, 16], [True, True]) == 2
    # ring pass: floor(n/2) with wraparound (both directions), n-1 without
    assert topology.ring_hops(16, True) == 8
    assert topology.ring_hops(8, False) == 7
    # the slice 8x16 on v5e: axis 8 no wrap (7 hops), axis 16 wraps (8 hops)
    axes = topology.physical_axes(hw("tpu-v5e"), "8x16")
    assert [(a.length, a.wraps, a.ring_hops, a.links) for a in axes] == [
        (8, False, 7, 1.0), (16, True, 8, 2.0)]


def test_ppermute_hops_follow_the_torus():
    # cyclic shift by one: on a wrapped 16 ring every step is 1 hop; on an unwrapped 8 line the
    # last device's message goes all the way back: 7 hops
    assert run("tpu-v5e", "8x16", {"d": 8, "m": 16}, "ppermute", ["m"], MiB)["hops"] == 1
    assert run("tpu-v5e", "8x16", {"d": 8, "m": 16}, "ppermute", ["d"], MiB)["hops"] == 7


def test_mesh_axis_spanning_consecutive_physical_axes():
    # mesh {fsdp: 8} on v4 2x2x2 spans all three axes (2*2*2 = 8); none wrap (not whole cubes)
    g = topology.group(hw("tpu-v4"), "2x2x2", {"fsdp": 8}, ["fsdp"])
    assert g.n_devices == 8 and g.lengths == [2, 2, 2] and g.wraparound == [False] * 3
    assert g.ring_links == 3  # one link (W_uni) per unwrapped axis, all three used
    assert g.ring_hops == 3   # 1 + 1 + 1


def test_gpu_and_dcn_levels():
    g = topology.group(hw("h100"), "2x8", {"node": 2, "gpu": 8}, ["node", "gpu"])
    assert (g.n_devices, g.n_link, g.n_scale_out, g.n_dcn) == (16, 8, 2, 1)
    assert g.ring_links == 18  # all NVLink links of the GPU
    assert g.wraparound == [None, None]  # switched / NIC axes: no wraparound notion
    g = topology.group(hw("tpu-v5p"), "4x4x4", {"replica": 2, "data": 64}, ["replica"], slices=2)
    assert (g.n_devices, g.n_link, g.n_dcn) == (2, 1, 2)


# ---- hand-derived collective times --------------------------------------------------------

def test_v5e_full_axis_vs_unwrapped_axis_all_gather_about_2x():
    V = GiB
    # 16x16, gather over a full (wrapped) 16 axis: V (n-1)/n / W_bidi = 2^30 * 15/16 / 9e10
    full = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_gather", ["m"], V)
    assert full["t_bandwidth"] == pytest.approx(V * 15 / 16 / (2 * L_V5E))  # 11.18 ms
    assert full["wraparound"] == [True] and full["hops"] == 8
    # 8x16, gather over the 8 axis (no wraparound): V (n-1)/n / W_uni = 2^30 * 7/8 / 4.5e10
    eight = run("tpu-v5e", "8x16", {"d": 8, "m": 16}, "all_gather", ["d"], V)
    assert eight["t_bandwidth"] == pytest.approx(V * 7 / 8 / L_V5E)  # 20.88 ms
    assert eight["wraparound"] == [False] and eight["hops"] == 7
    # ratio (7/8) / (15/16 / 2) = 1.867: "no wraparound roughly doubles collective time"
    assert eight["t_comm"] / full["t_comm"] == pytest.approx(28 / 15)
    for r in (full, eight):
        assert r["t_comm"] == r["t_bandwidth"] and r["bound"] == "comm"


def test_v4_2x2x4_no_wraparound_vs_4x4x4():
    V = 256 * MiB
    # gather over the length-4 axis. 4x4x4 is a whole cube: wraps, W_bidi = 9e10, 2 hops;
    # 2x2x4 is not: W_uni = 4.5e10, 3 hops. Same (n-1)/n = 3/4, so exactly 2x.
    cube = run("tpu-v4", "4x4x4", {"a": 4, "b": 4, "c": 4}, "all_gather", ["c"], V)
    small = run("tpu-v4", "2x2x4", {"a": 2, "b": 2, "c": 4}, "all_gather", ["c"], V)
    assert cube["t_bandwidth"] == pytest.approx(V * 3 / 4 / 9e10)
    assert small["t_bandwidth"] == pytest.approx(V * 3 / 4 / 4.5e10)
    assert small["t_comm"] / cube["t_comm"] == pytest.approx(2)
    assert (cube["hops"], small["hops"]) == (2, 3)
    assert (cube["wraparound"], small["wraparound"]) == ([True], [False])


def test_small_message_is_latency_bound():
    # 64 KiB gathered over the wrapped 16 axis of v5e: bandwidth 65536*15/16/9e10 = 0.68 us,
    # latency 8 hops x 1 us = 8 us: t_comm = max(...) = the latency term
    r = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_gather", ["m"], 64 * 1024)
    assert r["t_bandwidth"] == pytest.approx(65536 * 15 / 16 / 9e10)
    assert r["t_latency"] == pytest.approx(8e-6)
    assert r["t_comm"] == pytest.approx(8e-6)
    # per-hop chunk V/n = 4 KiB is far below W_uni x 1 us = 45 kB (the book's latency-bound threshold)
    assert 65536 / 16 < L_V5E * 1e-6
    # a big message is bandwidth-bound instead
    big = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_gather", ["m"], GiB)
    assert big["t_comm"] == big["t_bandwidth"] > big["t_latency"]


def test_two_axis_gather_adds_the_axes_bandwidth():
    # v5e 16x16 gathered over both axes at once: n = 256, both axes wrap: 2 x W_bidi = 4 links
    # t = V (255/256) / (4 x 4.5e10); hops 8 + 8 = 16
    V = GiB
    r = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_gather", ["d", "m"], V)
    assert r["t_bandwidth"] == pytest.approx(V * 255 / 256 / (4 * L_V5E))
    assert r["hops"] == 16 and r["wraparound"] == [True, True]
    assert r["comm_bytes"] == pytest.approx(V * 255 / 256)
    # faster than over one axis (15/16 / 2 links) by (15/16 / 2) / (255/256 / 4) = 1.88
    one = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_gather", ["m"], V)
    assert one["t_bandwidth"] / r["t_bandwidth"] == pytest.approx((15 / 32) / (255 / 1024))


@pytest.mark.parametrize("chip, slice_, mesh, axes", [
    ("tpu-v5e", "8x16", {"d": 8, "m": 16}, ["m"]),
    ("tpu-v5e", "8x16", {"d": 8, "m": 16}, ["d", "m"]),
    ("h100", "2x8", {"node": 2, "gpu": 8}, ["node", "gpu"]),
])
def test_all_reduce_is_twice_all_gather(chip, slice_, mesh, axes):
    # all_reduce = reduce_scatter + all_gather, both V (n-1)/n: twice the bytes, time, hops
    ag = run(chip, slice_, mesh, "all_gather", axes, GiB)
    rs = run(chip, slice_, mesh, "reduce_scatter", axes, GiB)
    ar = run(chip, slice_, mesh, "all_reduce", axes, GiB)
    for k in ("comm_bytes", "t_bandwidth", "t_latency", "t_comm", "hops"):
        assert ar[k] == pytest.approx(2 * ag[k]) and rs[k] == pytest.approx(ag[k]), k
    # nccl: algbw_AR = V / t_AR = algbw_AG / 2, busbw factors 2(n-1)/n vs (n-1)/n: equal busbw
    assert ar["algbw"] == pytest.approx(ag["algbw"] / 2)
    assert ar["busbw"] == pytest.approx(ag["busbw"])
    # reduction FLOPs: each device adds (n-1) shards of V/n/2 bf16 elements
    n = math.prod(mesh[a] for a in axes)
    assert rs["flops"] == pytest.approx(GiB / 2 * (n - 1) / n) and ar["flops"] == rs["flops"]
    assert ag["flops"] == 0


def test_all_to_all_formulas():
    V = 256 * MiB
    # TPU wrapped 16 ring: V/4 crosses the bisection each way over its 2 links:
    # t = V / (4 W_bidi) = V / (4 x 9e10) (How to Scale Your Model, sharding chapter); each device sends V/n (n-1)/n
    r = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "all_to_all", ["m"], V)
    assert r["t_bandwidth"] == pytest.approx(V / (4 * 9e10))
    assert r["comm_bytes"] == pytest.approx(V * 15 / 256)
    # unwrapped 8 line: V/4 each way over 1 link: V / (4 W_uni)
    r = run("tpu-v5e", "8x16", {"d": 8, "m": 16}, "all_to_all", ["d"], V)
    assert r["t_bandwidth"] == pytest.approx(V / (4 * L_V5E))
    # H100 node of 8: V (n-1)/(n^2 W) = V 7/64 / 4.5e11 (injection-bound on the switch)
    r = run("h100", "8", {"gpu": 8}, "all_to_all", ["gpu"], V)
    assert r["t_bandwidth"] == pytest.approx(V * 7 / 64 / NVLINK_H100)
    assert r["comm_bytes"] == pytest.approx(V * 7 / 64)
    # nccl-tests: S = per-rank buffer V/n, busbw = algbw (n-1)/n
    assert r["algbw"] == pytest.approx(V / 8 / r["t_comm"])
    assert r["busbw"] == pytest.approx(r["algbw"] * 7 / 8)


def test_h100_node_all_gather():
    # 8 x H100, one NVLink node: T = V (n-1) / (n x 4.5e11); 7 ring steps x 2 us latency
    V = GiB
    r = run("h100", "8", {"gpu": 8}, "all_gather", ["gpu"], V)
    assert r["t_bandwidth"] == pytest.approx(V * 7 / (8 * 4.5e11))
    assert r["hops"] == 7 and r["t_latency"] == pytest.approx(14e-6)
    assert r["busbw"] == pytest.approx(4.5e11)  # busbw of a bandwidth-bound ring = link rate


def test_h100_two_nodes_across_the_nics():
    V = GiB
    mesh = {"node": 2, "gpu": 8}
    # over the node axis only: each GPU gathers with its peer rail over its own NIC:
    # V (2-1)/2 / 5e10
    r = run("h100", "2x8", mesh, "all_gather", ["node"], V)
    assert r["t_bandwidth"] == pytest.approx(V / 2 / NIC)
    assert r["wraparound"] == [None] and r["physical_axes"] == ["scale_out:2"]
    # over all 16: NVLink phase V 7/8 / 4.5e11, and the NIC phase on the V/8 shards:
    # V/8 x 1/2 / 5e10 (= the node's V/2 over 8 NICs x 5e10 = 4e11 B/s); the levels pipeline,
    # so the slower phase sets the time (book, GPU chapter)
    r = run("h100", "2x8", mesh, "all_gather", ["node", "gpu"], V)
    assert r["t_link"] == pytest.approx(V * 7 / 8 / NVLINK_H100)
    assert r["t_scale_out"] == pytest.approx(V / 16 / NIC)
    assert r["t_bandwidth"] == pytest.approx(max(V * 7 / 8 / NVLINK_H100, V / 16 / NIC))
    assert r["t_levels"] == {"link": r["t_link"], "scale_out": r["t_scale_out"], "dcn": 0.0}
    assert r["comm_bytes"] == pytest.approx(V * 15 / 16)
    assert r["hops"] == 7 + 1  # 7 NVLink ring steps + 1 step between the 2 nodes


def test_dcn_between_slices():
    # v5p: 2 slices of 4x4x4 joined by DCN (6.25e9 B/s per chip); gather over the slice axis:
    # V (2-1)/2 / 6.25e9
    V = 64 * MiB
    r = run("tpu-v5p", "4x4x4", {"replica": 2, "data": 64}, "all_gather", ["replica"], V,
            slices=2)
    assert r["t_bandwidth"] == pytest.approx(V / 2 / 6.25e9)
    # the outermost mesh axis may span DCN and ICI: {data: 8 = 2 slices x 4} on 4x4x4
    r = run("tpu-v5p", "4x4x4", {"data": 8, "m": 16}, "all_gather", ["data"], V, slices=2)
    # ICI phase over the wrapped 4 axis and DCN on the V/4 shards, pipelined: the max
    assert r["t_bandwidth"] == pytest.approx(max(V * 3 / 4 / (2 * 9e10), V / 4 / 2 / 6.25e9))


def test_book_gpu_all_gather_over_32_nodes_takes_the_slower_level():
    # How to Scale Your Model, GPU chapter: a 1 GB all-gather over 32 nodes x 8 H100 is
    # V (n-1)/n / W_scale-out with W = 8 NICs x 400 Gb/s = 4e11 B/s per node:
    # 1e9 x 31/32 / 4e11 = 2.42 ms (NVLink phase 1e9 x 7/8 / 4.5e11 = 1.94 ms hides under it)
    r = run("h100", "32x8", {"node": 32, "gpu": 8}, "all_gather", ["node", "gpu"], 1e9)
    assert r["t_bandwidth"] == pytest.approx(1e9 * 31 / 32 / 4e11, rel=1e-12)
    assert r["t_comm"] == pytest.approx(2.42e-3, rel=0.05)
    assert r["t_link"] == pytest.approx(1e9 * 7 / 8 / 4.5e11, rel=1e-12)


@pytest.mark.parametrize("collective, factor", [
    ("all_reduce", 2 * 7 / 8), ("all_gather", 7 / 8), ("reduce_scatter", 7 / 8),
    ("all_to_all", 7 / 8), ("broadcast", 1), ("ppermute", 1)])
def test_nccl_busbw_factors(collective, factor):
    # nccl-tests PERFORMANCE.md: busbw = algbw x factor, algbw = S / t (S = V; V/n for a2a)
    V = 64 * MiB
    r = run("h100", "8", {"gpu": 8}, collective, ["gpu"], V)
    S = V / 8 if collective == "all_to_all" else V
    assert r["algbw"] == pytest.approx(S / r["t_comm"])
    assert r["busbw"] == pytest.approx(r["algbw"] * factor)


def test_ppermute_and_broadcast():
    V = 16 * MiB
    # ppermute: every device sends V one hop over one link direction: V / 4.5e10 on v5e
    r = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "ppermute", ["m"], V)
    assert r["t_bandwidth"] == pytest.approx(V / L_V5E) and r["comm_bytes"] == V
    # on H100 over all NVLink links: V / 4.5e11; across nodes the NIC: V / 5e10
    assert run("h100", "8", {"g": 8}, "ppermute", ["g"], V)["t_bandwidth"] == pytest.approx(
        V / NVLINK_H100)
    assert run("h100", "2x8", {"n": 2, "g": 8}, "ppermute", ["n", "g"], V)[
        "t_bandwidth"] == pytest.approx(V / NIC)
    # broadcast: pipelined ring from the root, V / W: wrapped 16 axis V / 9e10
    r = run("tpu-v5e", "16x16", {"d": 16, "m": 16}, "broadcast", ["m"], V)
    assert r["t_bandwidth"] == pytest.approx(V / 9e10)


def test_shape_and_dtype_give_v():
    # shape [4096, 16384] fp32 = 4 x 2^26 bytes = 256 MiB
    op = CollectiveOp(name="g", kind="collective", collective="all_reduce", axes=["m"],
                      shape=[4096, 16384], dtype="fp32")
    assert op.v_bytes == 256 * MiB
    op = CollectiveOp(name="g", kind="collective", collective="psum", axes="m", bytes="1 GiB")
    assert op.collective == "all_reduce" and op.axes == ["m"] and op.v_bytes == GiB


# ---- outputs ------------------------------------------------------------------------------

JSON_KEYS = {"comm_bytes", "hops", "wraparound", "t_latency", "t_bandwidth", "t_comm", "algbw",
             "busbw"}


@pytest.mark.parametrize("chip, wl", [("tpu-v5e", "collectives-v5e"), ("h100", "collectives-h100"),
                                      ("tpu-v4", "collectives-v5e"), ("b200", "collectives-h100")])
def test_builtin_workloads_json(chip, wl):
    js = results.to_json(hw(chip), catalog.load_workload(wl))
    json.dumps(js, allow_nan=False)  # no NaN/inf leaks (they become null)
    for row in js["ops"]:
        assert JSON_KEYS <= set(row), row["name"]
        assert row["bound"] == "comm"
        assert len(row["wraparound"]) == len(row["axis_lengths"]) >= 1
        for k in ("comm_bytes", "t_comm", "t_lower", "algbw", "busbw", "intensity", "mbu"):
            assert row[k] is not None and row[k] >= 0, (row["name"], k)
        assert row["t_lower"] == pytest.approx(max(row["t_compute"], row["t_memory"], row["t_comm"]))


def test_formulas_are_live_over_link_bandwidth_and_hop_latency():
    # the symbolic cost, evaluated with a changed link_bandwidth / hop_latency, recomputes
    wl = catalog.load_workload("collectives-v5e")
    h = hw("tpu-v5e")
    op = next(o for o in wl.ops if o.name == "ag-model")
    inp, cost, _ = engine.op_columns(op, h, wl, symbolic=True)

    def value(env, upto):
        env = dict(env)
        for k, e in cost.items():
            env[k] = evaluate(e, env) if not isinstance(e, (int, float)) else e
            if k == upto:
                return env[k]

    env = {**inp, **engine.hw_env(h)}
    base = value(env, "t_bandwidth")
    assert value({**env, "link_bandwidth": 9e10}, "t_bandwidth") == pytest.approx(base / 2)
    assert value({**env, "hop_latency": 1e-2}, "t_comm") == pytest.approx(8 * 1e-2)  # 8 hops
    # t_comm refers to the t_latency and t_bandwidth cells, not copies of their formulas
    assert {r.name for r in [cost["t_comm"].args[0], cost["t_comm"].args[1]]} == {
        "t_latency", "t_bandwidth"}


def test_hw_env_keys_uniform_across_chips():
    rates = ("peak", "vector", "transcendental")  # per-dtype rates differ by chip
    keys = {frozenset(engine.hw_env(h)) - {k for k in engine.hw_env(h) if k.startswith(rates)}
            for h in catalog.all_hardware()}
    assert len(keys) == 1
    assert {"link_bandwidth", "hop_latency", "scale_out_bandwidth", "dcn_bandwidth"} <= set(
        next(iter(keys)))
    assert engine.hw_env(hw("tpu-v5e"))["scale_out_bandwidth"] == 0


def test_cli_slice_override():
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v4", "-w", "collectives-v5e",
                                    "--slice", "2x4x16", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["ops"]}
    # on v4 2x4x16 nothing wraps (2 is not a multiple of 4); 'data' (8) spans the 2 and 4 axes
    assert rows["ag-data"]["wraparound"] == [False, False]
    assert rows["ag-data"]["t_bandwidth"] == pytest.approx(GiB * 7 / 8 / (2 * 4.5e10))
    res = CliRunner().invoke(main, ["roofline", "-H", "tpu-v5e", "-w", "collectives-v5e",
                                    "--slice", "4x4"])
    assert res.exit_code == 2
    assert "--slice '4x4'" in res.output and "128 devices" in res.output


# ---- bad input ----------------------------------------------------------------------------

def _load(tmp_path, text):
    p = tmp_path / "wl.yaml"
    p.write_text(text)
    return catalog.load_workload(p)


OK_OP = "  - {name: ag, kind: collective, collective: all_gather, axes: [model], bytes: 1 MiB}\n"


def test_bad_mesh_sizes_do_not_match_slice(tmp_path):
    with pytest.raises(SpecError) as e:
        _load(tmp_path, "name: w\nslice: 8x16\nmesh: {data: 8, model: 8}\nops:\n" + OK_OP)
    msg = str(e.value)
    assert "wl.yaml line 3" in msg and "mesh" in msg and "64 devices" in msg and "128" in msg
    # right total, wrong order: data (16) cannot take the 8 axis
    with pytest.raises(SpecError, match=r"mesh axis 'data' has size 16.*in order"):
        _load(tmp_path, "name: w\nslice: 8x16\nmesh: {data: 16, model: 8}\nops:\n" + OK_OP)


def test_bad_unknown_axis(tmp_path):
    with pytest.raises(SpecError) as e:
        _load(tmp_path, "name: w\nslice: 8x16\nmesh: {data: 8, model: 16}\nops:\n"
              "  - {name: ag, kind: collective, collective: all_gather, axes: [modle], bytes: 1 MiB}\n")
    msg = str(e.value)
    assert "unknown mesh axis 'modle'" in msg and "did you mean 'model'" in msg
    assert "ops[0]" in msg


def test_bad_collective_over_no_axes(tmp_path):
    with pytest.raises(SpecError) as e:
        _load(tmp_path, "name: w\nslice: 8x16\nmesh: {data: 8, model: 16}\nops:\n"
              "  - {name: ag, kind: collective, collective: all_gather, axes: [], bytes: 1 MiB}\n")
    assert "ops[0].axes" in str(e.value) and "is empty" in str(e.value)


@pytest.mark.parametrize("bad", ["8y16", "4x", "x4", "4x0", "4x4x4x4", "four"])
def test_bad_slice_does_not_parse(tmp_path, bad):
    with pytest.raises(SpecError) as e:
        _load(tmp_path, f"name: w\nslice: '{bad}'\nmesh: {{model: 16}}\nops:\n" + OK_OP)
    assert "wl.yaml line 2" in str(e.value) and "slice" in str(e.value)


def test_bad_size_and_collective_fields(tmp_path):
    with pytest.raises(SpecError, match="exactly one of 'bytes'"):
        _load(tmp_path, "name: w\nslice: 16\nmesh: {model: 16}\nops:\n"
              "  - {name: ag, kind: collective, collective: all_gather, axes: [model]}\n")
    with pytest.raises(SpecError, match="exactly one of 'bytes'.*not both"):
        _load(tmp_path, "name: w\nslice: 16\nmesh: {model: 16}\nops:\n"
              "  - {name: ag, kind: collective, collective: all_gather, axes: [model], "
              "bytes: 1 MiB, shape: [4]}\n")
    with pytest.raises(SpecError, match="all_gather"):
        _load(tmp_path, "name: w\nslice: 16\nmesh: {model: 16}\nops:\n"
              "  - {name: ag, kind: collective, collective: gather, axes: [model], bytes: 1 MiB}\n")
    with pytest.raises(SpecError, match="no top-level 'mesh'"):
        _load(tmp_path, "name: w\nslice: 16\nops:\n" + OK_OP)


@pytest.mark.parametrize("chip, slice_, mesh, slices, words", [
    ("tpu-v5e", "4x4x4", {"m": 64}, 1, ["3 axes", "2D torus"]),
    ("h100", "16", {"m": 16}, 1, ["8 GPUs per NVLink domain", "'2x8'"]),
    ("h100", "2x8", {"s": 2, "m": 16}, 2, ["dcn_bandwidth"]),
    ("cpu-local", "8", {"m": 8}, 1, ["no chip-to-chip interconnect"]),
])
def test_bad_slice_for_the_hardware(chip, slice_, mesh, slices, words):
    wl = Workload(name="w", slice=slice_, mesh=mesh, slices=slices, ops=[
        dict(name="c", kind="collective", collective="all_gather", axes=[next(iter(mesh))],
             bytes=MiB)])
    with pytest.raises(SpecError) as e:
        engine.evaluate_rows(hw(chip), wl)
    msg = str(e.value)
    assert repr(chip) in msg and "workload 'w'" in msg
    for w in words:
        assert w in msg


def test_no_slice_is_a_clear_error():
    wl = Workload(name="w", mesh={"m": 16}, ops=[
        dict(name="c", kind="collective", collective="all_gather", axes=["m"], bytes=MiB)])
    with pytest.raises(SpecError, match="no 'slice'.*--slice"):
        engine.evaluate_rows(hw("tpu-v5e"), wl)
    assert with_slice(wl, "16").slice == "16"
