"""perfmodel analyze: a JAX function's lowered XLA program as ledger ops, priced by the engine.

Each program's total is compared with XLA's own cost_analysis (compiled here, independently of
perfmodel) and must agree within 1% or by one of the named relations; rows are named after the
program's named scopes; the --workload-out YAML evaluates to the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import perfmodel  # noqa: E402
from perfmodel import catalog, results  # noqa: E402
from perfmodel.analysis import TOLERANCE  # noqa: E402
from perfmodel.cli import main  # noqa: E402

from . import lo  # noqa: E402
from .jax_programs import attention, mlp, scanned_layers, train_step_program  # noqa: E402

DATA = Path(__file__).parent / "data"
CALIBRATED = DATA / "cpu-local-quick.yaml"  # perfmodel bench --quick; perfmodel calibrate
REPO = Path(__file__).resolve().parents[1]


def sds(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def xla_flops(fn, *args) -> float:
    ca = jax.jit(fn).lower(*args).compile().cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca["flops"])


def agrees(a, fn, *args) -> str:
    """'ok' when the total is within 1% of XLA's compiled count, else the named relation the
    analysis gives (which must then hold)."""
    x = xla_flops(fn, *args)
    if abs(a.totals["flops"] / x - 1) <= TOLERANCE:
        assert a.xla["status"] == "ok"
        return "ok"
    assert a.xla["status"] == "explained", a.xla
    return a.xla["relation"]


# ---- programs -----------------------------------------------------------------------------

MLP_ARGS = (sds(256, 512), sds(512, 1024), sds(1024, 512))
ATTN_ARGS = (sds(2, 128, 4, 32),) * 3


# ---- the acceptance programs --------------------------------------------------------------

def test_mlp_block_rows_named_after_scopes_and_total_matches_xla():
    a = perfmodel.analyze(mlp, *MLP_ARGS, hardware="h100")
    df = a.rows
    assert list(df["name"]) == ["mlp/up", "mlp/act", "mlp/down"]
    assert list(df["kind"]) == ["matmul", "elementwise", "matmul"]
    up = df.set_index("name").loc["mlp/up"]
    # 2 M K N with M=256, K=512, N=1024
    assert up["flops"] == 2 * 256 * 512 * 1024
    # gelu (tanh form) reads h and writes it: 2 x 256 x 1024 x 4 bytes in one fused kernel
    assert df.set_index("name").loc["mlp/act", "hbm_bytes"] == 2 * 256 * 1024 * 4
    assert agrees(a, mlp, *MLP_ARGS) == "ok"
    # our per-instruction count is XLA's count of the lowered program
    assert a.xla["counted_flops"] == pytest.approx(a.xla["xla_flops_lowered"], rel=1e-6)


def test_reference_train_step_total_and_scopes():
    fn, args, d = train_step_program()
    a = perfmodel.analyze(fn, *args, hardware="cpu-local")
    names = set(a.rows["name"])
    for scope in ("layer/attn/qkv", "layer/attn/o", "layer/mlp/up", "layer/mlp/down",
                  "lm_head/proj", "layer/norm1", "optimizer/adam", "embed/lookup",
                  "layer/attn/qkv.bwd", "lm_head/proj.bwd"):
        assert scope in names, scope
    # two layers, unrolled: the second layer's rows carry suffixes
    assert "layer/attn/qkv.2" in names
    assert len(names) == len(a.rows)
    # the softmax of the attention scores (one per layer, forward) is recognised
    soft = [o["name"] for o in a._ops if o.get("calibrate_as") == "softmax"]
    # (the loss's logsumexp has the same reductions and exponential: priced as one too)
    assert len([n for n in soft if n.startswith("layer/attn")]) == d.L
    assert set(soft) - {n for n in soft if n.startswith("layer/attn")} == {"lm_head/loss"}
    # products: the forward QKV projection is [B T, D] x [D, K (G+2) H]
    qkv = a.rows.set_index("name").loc["layer/attn/qkv"]
    assert qkv["flops"] == 2 * d.B * d.T * d.D * d.K * (d.G + 2) * d.H
    assert agrees(a, fn, *args) == "ok"


def test_dot_product_attention():
    a = perfmodel.analyze(attention, *ATTN_ARGS, hardware="h100")
    df = a.rows.set_index("name")
    mm = df[df["kind"] == "matmul"]
    # QK^T and PV: each 2 x B H S T D = 2 x 2*4*128*128*32
    assert sorted(mm["flops"]) == [2 * 2 * 4 * 128 * 128 * 32] * 2
    assert all(n.startswith("attn") for n in mm.index)
    assert any(o.get("calibrate_as") == "softmax" for o in a._ops)
    assert agrees(a, attention, *ATTN_ARGS) == "ok"


SHARDED = """
import jax
from jax.sharding import PartitionSpec as P

mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))


def _body(x, w):
    with jax.named_scope("gather"):
        xg = jax.lax.all_gather(x, "x", axis=0, tiled=True)
    with jax.named_scope("mm"):
        return xg @ w


gather_matmul = jax.shard_map(_body, mesh=mesh, in_specs=(P("x"), P(None, "x")),
                              out_specs=P(None, "x"))
"""


def test_shard_map_all_gather_matmul_on_8_host_devices(tmp_path):
    # a fresh interpreter: the CLI sets the host device count before jax starts
    (tmp_path / "sharded.py").write_text(SHARDED)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([sys.executable, "-m", "perfmodel.cli", "analyze",
                          "sharded.py:gather_matmul", "--args", "f32[64,128];f32[128,256]",
                          "--mesh", "x=8", "-H", "h100", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    ops = {o["name"]: o for o in js["ops"]}
    g = ops["gather"]
    assert g["kind"] == "collective" and g["collective"] == "all_gather" and g["axes"] == ["x"]
    # per device: 8 rows of 128 gathered into 64 x 128 fp32 (V = the gathered result):
    # each device receives 7/8 of V = 7/8 x 64*128*4 bytes
    assert g["comm_bytes"] == pytest.approx(7 / 8 * 64 * 128 * 4)
    mm = ops["mm"]
    assert mm["kind"] == "matmul" and mm["flops"] == 2 * 64 * 128 * 32  # per device: N/8 = 32
    x = js["xla"]
    assert x["status"] == "ok"
    assert abs(js["total"]["flops"] / x["xla_flops_compiled"] - 1) <= TOLERANCE


GSPMD = """
import jax
from jax.sharding import NamedSharding, PartitionSpec as P

mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def _f(x, w):
    with jax.named_scope("proj"):
        return x @ w


f = jax.jit(_f, in_shardings=(NamedSharding(mesh, P("data", "model")),
                              NamedSharding(mesh, P("model", None))),
            out_shardings=NamedSharding(mesh, P("data", None)))
"""


def test_gspmd_program_is_read_after_the_partitioner(tmp_path):
    (tmp_path / "gspmd.py").write_text(GSPMD)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([sys.executable, "-m", "perfmodel.cli", "analyze", "gspmd.py:f",
                          "--args", "f32[64,128];f32[128,256]", "--mesh", "data=2,model=4",
                          "-H", "tpu-v5e", "--slice", "2x4", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    assert js["xla"]["gspmd"] is True and js["xla"]["partitioned"] is True
    mm = [o for o in js["ops"] if o["kind"] == "matmul"]
    # one device's product: rows 64/2 (data), k 128/4 (model), n 256: 2 x 32 x 32 x 256
    assert [o["flops"] for o in mm] == [2 * 32 * 32 * 256]
    coll = [o for o in js["ops"] if o["kind"] == "collective"]
    # the partial products over k are summed across the model axis
    assert [(o["collective"], o["axes"]) for o in coll] == [("all_reduce", ["model"])]
    assert js["xla"]["status"] in ("ok", "explained")
    assert abs(js["total"]["flops"] / js["xla"]["xla_flops_compiled"] - 1) <= TOLERANCE


# ---- the workload round trip --------------------------------------------------------------

def _close(a, b, rel=1e-12):
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b


def test_train_step_workload_out_agrees_with_roofline(tmp_path):
    fn, args, _ = train_step_program()
    hw = catalog.load_hardware(str(CALIBRATED))
    a = perfmodel.analyze(fn, *args, hardware=hw)
    path = tmp_path / "train.yaml"
    path.write_text(a.workload_yaml())
    js = results.to_json(hw, catalog.load_workload(str(path)))
    mine = a.to_json()
    priced = [r for r in mine["ops"] if r["kind"] != "unpriced"]
    assert [r["name"] for r in js["ops"]] == [r["name"] for r in priced]
    for theirs, ours in zip(js["ops"], priced):
        for k, v in theirs.items():
            assert _close(ours[k], v), (theirs["name"], k, ours[k], v)
    for k, v in js["total"].items():
        assert _close(mine["total"][k], v), k
    assert "t_calibrated" in js["total"]
    # and through the command line: roofline --json of the file
    out = CliRunner().invoke(main, ["roofline", "-H", str(CALIBRATED), "-w", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert _close(json.loads(out.output)["total"]["t_lower"], mine["total"]["t_lower"])


def test_cli_table_workload_out_and_workbook(tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import jax

        def mlp(x, w_up, w_down, act="gelu"):
            with jax.named_scope("mlp/up"):
                h = x @ w_up
            with jax.named_scope("mlp/act"):
                h = jax.nn.gelu(h) if act == "gelu" else jax.nn.relu(h)
            with jax.named_scope("mlp/down"):
                return h @ w_down
    """))
    yml, xlsx = tmp_path / "mlp.yaml", tmp_path / "mlp.xlsx"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = CliRunner().invoke(main, [
            "analyze", "model.py:mlp", "--args", "bf16[512,1024];bf16[1024,4096]",
            "--arg", "bf16[4096,1024]", "--static", "act='relu'", "-H", "h100",
            "--workload-out", str(yml), "-o", str(xlsx)])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert "mlp/act" in res.output and "wrote" in res.output
    wl = catalog.load_workload(str(yml))
    assert [o.name for o in wl.ops] == ["mlp/up", "mlp/act", "mlp/down"]
    assert wl.ops[0].dtype == "bf16"
    assert xlsx.stat().st_size > 0


# ---- unpriced custom calls and annotations ------------------------------------------------

def host_double(x):
    import numpy as np

    with jax.named_scope("host"):
        y = jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
    with jax.named_scope("post"):
        return y + 1


def test_custom_call_is_an_unpriced_row_or_the_annotated_op():
    a = perfmodel.analyze(host_double, sds(4096), hardware="h100")
    rows = a.rows.set_index("name")
    assert rows.loc["host", "kind"] == "unpriced"
    assert "custom-call" in rows.loc["host", "hlo"]
    assert a.totals["unpriced"] == 1
    assert [o.name for o in a.to_workload().ops] == ["post"]
    target = rows.loc["host", "hlo"].split()[-1]
    ann = {target: {"kind": "elementwise", "dtype": "fp32", "shape": [4096],
                    "flops_per_element": 1.0}}
    b = perfmodel.analyze(host_double, sds(4096), hardware="h100", annotations=ann)
    host = b.rows.set_index("name").loc["host"]
    # the annotated op: 4096 fp32 elements in and out = 2 x 4096 x 4 bytes
    assert host["kind"] == "elementwise" and host["hbm_bytes"] == 2 * 4096 * 4
    assert b.totals["unpriced"] == 0


def test_repeated_scopes_get_suffixes_and_loops_repeat():
    a = perfmodel.analyze(scanned_layers, sds(8, 16), sds(4, 16, 16), hardware="h100")
    mm = a.rows[a.rows["kind"] == "matmul"].iloc[0]
    assert mm["repeat"] == 4 and mm["flops"] == 4 * 2 * 8 * 16 * 16
    # XLA's cost analysis counts the loop body once: the difference is named
    assert agrees(a, scanned_layers, sds(8, 16), sds(4, 16, 16)) == "loop-trip-count"


def test_integer_ops_are_priced_as_fp32():
    def f(i):
        with jax.named_scope("idx"):
            return (i * 3 + 1) % 7

    a = perfmodel.analyze(f, sds(1024, dtype=jnp.int32), hardware="h100")
    r = a.rows.iloc[0]
    assert r["dtype"] == "int32"
    h100 = catalog.load_hardware("h100")
    # integer arithmetic has no rate of its own: the vector unit's fp32 rate prices it
    assert r["t_compute"] == pytest.approx(r["flops"] / h100.vector_flops["fp32"])


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (["analyze", "nope.py:f", "--args", "f32[4]", "-H", "h100"], "no such file"),
    (["analyze", "model.py:missing", "--args", "f32[4]", "-H", "h100"], "has no 'missing'"),
    (["analyze", "model.py:f", "--args", "f32[4,", "-H", "h100"], "not an array spec"),
    (["analyze", "model.py:f", "--args", "q8[4]", "-H", "h100"], "unknown dtype"),
    (["analyze", "model.py:f", "--args", "f32[4];f32[5]", "-H", "h100"], "lowering f"),
    (["analyze", "model.py:f", "--args", "f32[4]", "--mesh", "x8", "-H", "h100"], "--mesh"),
    (["analyze", "model.py", "--args", "f32[4]", "-H", "h100"], "MODULE_OR_FILE:FUNCTION"),
    (["analyze", "broken.py:f", "--args", "f32[4]", "-H", "h100"], "raised ZeroDivisionError"),
])
def test_bad_input_exits_2_with_one_paragraph(tmp_path, argv, says):
    (tmp_path / "model.py").write_text("def f(x):\n    return x * 2\n")
    (tmp_path / "broken.py").write_text("1 / 0\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = CliRunner().invoke(main, argv)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 2, res.output
    assert says in res.output
    assert "Traceback" not in res.output


# ---- measured -----------------------------------------------------------------------------

@pytest.mark.slow
def test_measure_reports_calibrated_and_roofline_errors():
    """--measure on the calibrated quick spec: every function gets t_measured and per-row
    times; the errors are figures (printed), not asserted (the machine is shared)."""
    fn, args, _ = train_step_program()
    errs = []
    for name, f, a_ in (("mlp", mlp, MLP_ARGS), ("attention", attention, ATTN_ARGS),
                        ("train_step", fn, args)):
        a = perfmodel.analyze(f, *a_, hardware=str(CALIBRATED), measure=True)
        t = a.totals
        assert t["t_measured"] > 0 and t["t_calibrated"] > 0
        assert any(r.get("t_measured") for r in a.records)
        errs.append((name, t["err_calibrated"], t["err_lower"]))
        print(f"{name}: measured {t['t_measured']:.3e} s, calibrated {t['err_calibrated']:+.1%}, "
              f"roofline {t['err_lower']:+.1%}")
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"median |error|: calibrated {med([abs(e[1]) for e in errs]):.1%}, roofline "
          f"{med([abs(e[2]) for e in errs]):.1%}")


def test_convolution_is_a_matmul_and_xla_padding_is_named():
    def conv(x, k):
        with jax.named_scope("conv"):
            return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

    args = (sds(2, 16, 16, 8), sds(3, 3, 8, 32))
    a = perfmodel.analyze(conv, *args, hardware="h100")
    r = a.rows.iloc[0]
    # matmul equivalent: m = 2*16*16 output positions, k = 3*3*8, n = 32
    assert r["kind"] == "matmul" and r["flops"] == 2 * (2 * 16 * 16) * (3 * 3 * 8) * 32
    # XLA counts only window positions inside the input: per spatial dim of 16 with a 3-wide
    # window and padding 1, 16*3 - 2 = 46 of 48 (output, window) pairs land inside
    assert r["xla_flops"] == pytest.approx(2 * 2 * 32 * 8 * 46 * 46)
    assert agrees(a, conv, *args) == "convolution-padding"


def test_matmul_precision_is_kept():
    def f(a, b):
        with jax.named_scope("proj"):
            return jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)

    a = perfmodel.analyze(f, sds(64, 32), sds(32, 16), hardware="h100")
    assert a.rows.iloc[0]["precision"] == "highest"
    assert a.to_workload().ops[0].precision == "highest"
    # an fp32 product at HIGHEST runs on an H100's CUDA cores, not its TF32 tensor cores
    h100 = catalog.load_hardware("h100")
    # (the spec's CUDA-core rate is its vector_flops.fp32, 67 TFLOP/s)
    assert a.rows.iloc[0]["t_compute"] == pytest.approx(2 * 64 * 32 * 16 / h100.vector_flops["fp32"])


@lo.needs_lo
def test_workbook_of_an_analysis_recalculates(tmp_path):
    """The analysed train step's workbook: every formula cell (fused kernels priced from
    their bytes, the calibrated column) recalculates in LibreOffice to Python's value."""
    from perfmodel.report.workbook import write_workbook

    from .test_workbook import _assert_parity

    fn, args, _ = train_step_program()
    hw = catalog.load_hardware(str(CALIBRATED))
    a = perfmodel.analyze(fn, *args, hardware=hw)
    path = write_workbook(tmp_path / "train.xlsx", [a.to_workload()], [hw], active=hw.name)
    _assert_parity(path, tmp_path, 500)


HOST = """
import jax
import numpy as np


def host_double(x):
    with jax.named_scope("host"):
        y = jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
    with jax.named_scope("post"):
        return y + 1
"""


def test_annotations_file_prices_the_custom_call(tmp_path):
    (tmp_path / "host.py").write_text(HOST)
    a = perfmodel.analyze(host_double, sds(4096), hardware="h100")
    target = a.rows.set_index("name").loc["host", "hlo"].split()[-1]
    (tmp_path / "ann.yaml").write_text(f"{target}: {{kind: matmul, m: 64, k: 64, n: 64, "
                                       f"dtype: fp32}}\n")
    (tmp_path / "bad.yaml").write_text(f"{target}: {{kind: matmul, m: 64, k: 64}}\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ok = CliRunner().invoke(main, ["analyze", "host.py:host_double", "--args", "f32[4096]",
                                       "-H", "h100", "--annotations", "ann.yaml", "--json"])
        bad = CliRunner().invoke(main, ["analyze", "host.py:host_double", "--args", "f32[4096]",
                                        "-H", "h100", "--annotations", "bad.yaml"])
    finally:
        os.chdir(cwd)
    assert ok.exit_code == 0, ok.output
    host = {o["name"]: o for o in json.loads(ok.output)["ops"]}["host"]
    assert host["kind"] == "matmul" and host["flops"] == 2 * 64 ** 3
    assert bad.exit_code == 2 and "bad.yaml" in bad.output and "n" in bad.output
    assert "Traceback" not in bad.output


FSDP = """
import json
from perfmodel.calibrate.xla_collectives import host_devices
jax = host_devices(8)
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import perfmodel
from perfmodel.calibrate import validate as V

d = V.Dims.of(V.config("tiny-train-fsdp8").op())
mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
ns = lambda s: NamedSharding(mesh, s)
params = jax.eval_shape(lambda: V.init_params(d))
opt = jax.eval_shape(lambda: V.adam_init(params))
pspec = jax.tree.map(ns, V.param_specs(params, "fsdp", 8), is_leaf=lambda x: isinstance(x, P))
ospec = {"m": pspec, "v": pspec, "t": ns(P())}
tok = jax.ShapeDtypeStruct((d.B, d.T), jnp.int32)
step = jax.jit(lambda p, o, a, b: V.train_step(d, p, o, a, b, V.Sharder(mesh, "fsdp")),
               in_shardings=(pspec, ospec, ns(P("fsdp")), ns(P("fsdp"))),
               out_shardings=(pspec, ospec, ns(P())))
a = perfmodel.analyze(step, params, opt, tok, tok, hardware="tpu-v5e", mesh=mesh, slice="2x4")
ops = a.to_json()["ops"]
print(json.dumps({"xla": a.xla, "flops": a.totals["flops"], "layers": d.L,
                  "collectives": [[o["name"], o["collective"], o["axes"]] for o in ops
                                  if o["kind"] == "collective"]}))
"""


def test_reference_fsdp_train_step_on_8_host_devices():
    """validate's FSDP train step (jit shardings, sharding constraints): read after the
    partitioner, one device's rows with the weight all-gathers of every layer."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([sys.executable, "-c", FSDP], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout.strip().splitlines()[-1])
    assert js["xla"]["partitioned"] is True
    assert abs(js["flops"] / js["xla"]["xla_flops_compiled"] - 1) <= TOLERANCE
    gathers = [c for c in js["collectives"] if c[0].startswith("layer/fsdp/all_gather")]
    # each layer gathers its 7 parameters (2 norms, wqkv, wo, w_up, w_gate, w_down)
    assert len(gathers) == 7 * js["layers"]
    assert all(c[1] == "all_gather" and c[2] == ["fsdp"] for c in gathers)
