"""Collectives against JAX: jax.experimental.roofline's interconnect bytes, and real runs on host
devices.

Both need 8 host devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax
is first imported. ``host_devices()`` sets it when jax is not imported yet and otherwise checks;
``in_subprocess(name, **kw)`` runs one of this module's functions in a fresh interpreter with
the flag set and returns its JSON result (what tests and the workbook use).

``cross_check()``: for all_gather, psum, psum_scatter, ppermute, all_to_all and a row-parallel
matmul + psum on meshes (8,) and (2, 4), jax.experimental.roofline's per-device ``ici_bytes``
(and ``ici_latency`` hops) next to our ``comm_bytes`` (bytes each device sends), ``hops`` and
``t_bandwidth``. The twin hardware is the v5e spec with wraparound on every axis longer than 2
(``wraparound: always``), because jax's rules assume a wrapped torus (its all_to_all doubles the
bisection "because of wraparound"; its ppermute takes the short way round). Relations (derived
in tests/test_collectives_jax.py, pinned there):

- ring collectives (all_gather, psum_scatter, psum = 2 passes): jax splits the data evenly over
  the k mesh axes of the collective and reports what one axis carries:
  ``ici_bytes = comm_bytes / k``; for one axis they are equal (V (n-1)/n, 2 V (n-1)/n).
- ppermute: both count the V bytes a device sends; jax multiplies by the most shifts sharing
  one link (1 for a ring shift).
- all_to_all: jax reports the bytes crossing the bisection per link pair, size/2/bisection
  (V/4 on a wrapped ring), ours ``comm_bytes`` is what each device sends, V (n-1)/n^2;
  on one wrapped axis ``ici_bytes = t_bandwidth x W_bidi`` (the book's V / (4 W_bidi)).
- hops: jax's ring latency is n_longest x k (one step per device, one direction); ours is
  floor(n/2) per wrapped axis (both directions) and n-1 per unwrapped axis.

``time_collectives()``: the same collectives run for real on the 8 host devices across a few
sizes; rows (collective, bytes, measured_s, predicted_s). Host-device collectives are memory
copies on 2 shared cores, far from linear in bytes: a check that the programs run and the bytes
agree, not an accuracy claim. ``predicted_s`` uses ``host_hardware()``: cpu-local with a nominal
switched "interconnect" (see there).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

N_DEVICES = 8
XLA_FLAG = f"--xla_force_host_platform_device_count={N_DEVICES}"
PER_DEVICE_BYTES = 1 << 20  # 1 MiB per device
MESHES = {"8": ((8,), ("x",)), "2x4": ((2, 4), ("x", "y"))}
COLLECTIVES = ["all_gather", "psum", "psum_scatter", "ppermute", "all_to_all", "matmul_psum"]
OURS = {"all_gather": "all_gather", "psum": "all_reduce", "psum_scatter": "reduce_scatter",
        "ppermute": "ppermute", "all_to_all": "all_to_all", "matmul_psum": "all_reduce"}


def host_devices(n: int = N_DEVICES):
    """Make sure jax sees ``n`` host devices; returns the jax module."""
    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    import jax

    if jax.device_count() < n:
        raise RuntimeError(
            f"jax sees {jax.device_count()} device(s), need {n}: set XLA_FLAGS={XLA_FLAG} before "
            f"jax is first imported (or use xla_collectives.in_subprocess)")
    return jax


def in_subprocess(name: str, timeout: float = 600, module: str = "xla_collectives",
                  stream_stderr: bool = False, **kwargs):
    """Run ``name(**kwargs)`` of ``perfmodel.calibrate.<module>`` in a fresh interpreter with 8
    host devices (the device count must be set before jax starts); returns its JSON result.
    ``stream_stderr``: its stderr (progress lines) goes straight to ours."""
    code = textwrap.dedent(f"""
        import json, sys
        from perfmodel.calibrate import {module} as m
        out = m.{name}(**json.loads(sys.argv[1]))
        sys.stdout.write("\\n@@JSON@@" + json.dumps(out))
    """)
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAG).strip(),
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], env=env,
                         stdout=subprocess.PIPE, stderr=None if stream_stderr else subprocess.PIPE,
                         text=True, timeout=timeout)
    if res.returncode != 0 or "@@JSON@@" not in res.stdout:
        tail = "(its output is above)" if stream_stderr else res.stderr[-3000:]
        raise RuntimeError(f"{name} failed in a subprocess (exit {res.returncode}):\n{tail}")
    return json.loads(res.stdout.split("@@JSON@@", 1)[1])


# ---- the JAX programs ----------------------------------------------------------------------

def _program(jax, collective: str, mesh, axes: tuple[str, ...], per_device: int):
    """(shard_map-able fn, in_spec, out_spec, global input shapes, check_vma, V bytes)."""
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    n = math.prod(mesh.shape[a] for a in axes)
    elems = per_device // 4  # float32
    ax = axes if len(axes) > 1 else axes[0]
    lead = n * elems
    if collective == "all_gather":
        return (lambda x: jax.lax.all_gather(x, ax, tiled=True), P(ax), P(None), [(lead,)],
                False, n * per_device)
    if collective == "psum":
        return (lambda x: jax.lax.psum(x, ax), P(ax), P(None), [(lead,)], True, per_device)
    if collective == "psum_scatter":
        # each device holds its unreduced per_device bytes and keeps 1/n of the sum
        return (lambda x: jax.lax.psum_scatter(x, ax, tiled=True),
                P(ax), P(ax), [(lead,)], False, per_device)
    if collective == "ppermute":
        perm = [(i, (i + 1) % n) for i in range(n)]
        return (lambda x: jax.lax.ppermute(x, ax, perm), P(ax), P(ax), [(lead,)], False,
                per_device)
    if collective == "all_to_all":
        return (lambda x: jax.lax.all_to_all(x, ax, 0, 0, tiled=True), P(ax), P(ax), [(lead,)],
                False, n * per_device)
    if collective == "matmul_psum":
        # row-parallel matmul: x [M, K] and w [K, N] sharded on K; partial [M, N] products
        # psum'd. The psum's V = M N 4 bytes = per_device (M = 256, N = per_device / 1 KiB).
        M, Nn = 256, per_device // (4 * 256)
        K = 128 * n
        return (lambda x, w: jax.lax.psum(jnp.dot(x, w), ax), (P(None, ax), P(ax, None)),
                P(None, None), [(M, K), (K, Nn)], True, per_device)
    raise ValueError(f"unknown collective {collective!r}")


def _twin(shape):
    """Our side: v5e with wraparound on every axis (jax's assumption), slice = mesh shape."""
    from .. import catalog
    from ..specs import Hardware

    v5e = catalog.load_hardware("tpu-v5e")
    d = v5e.model_dump()
    d["name"] = "tpu-wrapped-twin"
    d["interconnect"] = {**d["interconnect"], "wraparound": "always"}
    return Hardware.model_validate(d)


def _ours(collective, shape, names, axes, V):
    from .. import engine
    from ..specs import Workload

    hw = _twin(shape)
    wl = Workload(name="xla-twin", slice="x".join(map(str, shape)),
                  mesh=dict(zip(names, shape)), ops=[dict(
                      name=collective, kind="collective", collective=OURS[collective],
                      axes=list(axes), bytes=float(V), dtype="bf16")])
    return engine.evaluate_op(wl.ops[0], hw, wl), hw


def cross_check(per_device: int = PER_DEVICE_BYTES, meshes=("8", "2x4")) -> list[dict]:
    """jax.experimental.roofline vs our model, one row per (collective, mesh, axes)."""
    jax = host_devices()
    import jax.numpy as jnp
    from jax.experimental import roofline
    from jax.sharding import NamedSharding

    rows = []
    for mkey in meshes:
        shape, names = MESHES[mkey]
        mesh = jax.make_mesh(shape, names)
        groups = [names] if len(names) == 1 else [(names[-1],), names]
        for axes in groups:
            for coll in COLLECTIVES:
                fn, ispec, ospec, shapes, vma, V = _program(jax, coll, mesh, axes, per_device)
                ispecs = ispec if isinstance(ispec, tuple) else (ispec,)
                args = [jax.ShapeDtypeStruct(s, jnp.float32, sharding=NamedSharding(mesh, sp))
                        for s, sp in zip(shapes, ispecs)]
                g = jax.shard_map(fn, mesh=mesh, in_specs=ispecs, out_specs=ospec,
                                  check_vma=vma)
                _, res = roofline.roofline(g, mesh=mesh)(*args)
                ici = {k: int(v) for k, v in res.ici_bytes.items()}
                lat = {k: int(v) for k, v in res.ici_latency.items()}
                ours, hw = _ours(coll, shape, names, axes, V)
                jb = max(ici.values()) if ici else 0
                row = {
                    "collective": coll, "ours": OURS[coll], "mesh": mkey, "axes": "+".join(axes),
                    "n": math.prod(shape[names.index(a)] for a in axes), "V": V,
                    "jax_ici_bytes": jb, "jax_ici_bytes_per_axis": ici,
                    "jax_ici_latency": max(lat.values()) if lat else 0,
                    "jax_flops": float(res.flops),
                    "comm_bytes": ours["comm_bytes"], "hops": ours["hops"],
                    "t_bandwidth": ours["t_bandwidth"],
                    "link_bandwidth": hw.interconnect.link_bandwidth,
                    "wraparound": ours["wraparound"],
                    "ratio": str(Fraction(jb, 1) / Fraction(ours["comm_bytes"]).limit_denominator(
                        1 << 40)) if ours["comm_bytes"] else None,
                }
                if coll == "matmul_psum":  # the matmul half: our matmul op's FLOPs per device
                    (M, K), (_, Nn) = shapes
                    row["our_matmul_flops"] = _matmul_flops(M, K // row["n"], Nn)
                rows.append(row)
    return rows


def _matmul_flops(m, k, n) -> float:
    from .. import catalog, engine
    from ..specs import MatmulOp

    op = MatmulOp(name="mm", kind="matmul", m=m, k=k, n=n, dtype="bf16")
    return engine.evaluate_op(op, catalog.load_hardware("tpu-v5e"))["flops"]


# ---- timing on host devices ----------------------------------------------------------------

def host_hardware(link_bandwidth: str = "1.25 GB/s", hop_latency: str = "20 us"):
    """cpu-local with a nominal switched interconnect for the 8 host devices: a "link" is a
    memory copy between device buffers, and all 8 devices share the host's cores, so each gets
    about 1/8 of what those cores copy at; a "hop" is a synchronisation step (about an empty
    jitted call). The defaults suit a small CPU host (docs/measurements.md). Nominal, not
    fitted."""
    from .. import catalog
    from ..specs import Hardware

    cpu = catalog.load_hardware("cpu-local")
    d = cpu.model_dump()
    d["name"] = "cpu-local-8-host-devices"
    d["interconnect"] = {"topology": "switched", "links_per_chip": 1,
                         "link_bandwidth": link_bandwidth, "hop_latency": hop_latency,
                         "domain_size": N_DEVICES}
    d["sources"] = {**d["sources"], "interconnect": (
        "NOMINAL for 8 XLA host devices sharing one host's cores: link_bandwidth ~ 1/8 of the "
        "host's memory-copy rate, hop_latency ~ an empty jitted call; not fitted, not an "
        "accuracy claim")}
    return Hardware.model_validate(d)


def predict(collective: str, V: float, hw=None) -> dict:
    """Our row for ``collective`` (jax name) over 8 host devices (slice '8', mesh {x: 8})."""
    from .. import engine
    from ..specs import Workload

    hw = hw or host_hardware()
    wl = Workload(name="host8", slice=str(N_DEVICES), mesh={"x": N_DEVICES}, ops=[dict(
        name=collective, kind="collective", collective=OURS[collective], axes=["x"],
        bytes=float(V), dtype="fp32")])
    return engine.evaluate_op(wl.ops[0], hw, wl)


def time_collectives(sizes=(1 << 16, 1 << 20, 1 << 23), collectives=tuple(COLLECTIVES),
                     budget: str = "quick") -> list[dict]:
    """Run each collective on the 8 host devices at each per-device size; median wall time.

    Rows: collective (jax name), ours (our collective), per_device_bytes, bytes (V in our
    convention), measured_s (median), min_s, cv, reps, predicted_s (our t_lower on
    ``host_hardware()``), predicted_comm_s (t_comm), comm_bytes.
    """
    jax = host_devices()
    import numpy as np
    from jax.sharding import NamedSharding

    from .kernels import Built
    from .timing import BUDGETS, time_kernel

    shape, names = MESHES["8"]
    mesh = jax.make_mesh(shape, names)
    hw = host_hardware()
    rows = []
    for coll in collectives:
        for per_device in sizes:
            fn, ispec, ospec, shapes, vma, V = _program(jax, coll, mesh, names, int(per_device))
            ispecs = ispec if isinstance(ispec, tuple) else (ispec,)
            g = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=ispecs, out_specs=ospec,
                                      check_vma=vma))
            rng = np.random.default_rng(0)
            args = tuple(jax.device_put(rng.standard_normal(s, dtype=np.float32),
                                        NamedSharding(mesh, sp))
                         for s, sp in zip(shapes, ispecs))
            t = time_kernel(Built(g, args), BUDGETS[budget])
            pred = predict(coll, V, hw)
            if coll == "matmul_psum":  # the matmul's own time adds to the psum's
                from ..specs import MatmulOp
                from .. import engine

                (M, K), (_, Nn) = shapes
                mm = engine.evaluate_op(MatmulOp(name="mm", kind="matmul", m=M, k=K // 8, n=Nn,
                                                 dtype="fp32"), hw)
                pred = {**pred, "t_lower": pred["t_lower"] + mm["t_lower"]}
            rows.append({"collective": coll, "ours": OURS[coll], "per_device_bytes": int(per_device),
                         "bytes": float(V), "measured_s": t.median_s, "min_s": t.min_s,
                         "cv": t.cv, "reps": t.reps, "predicted_s": pred["t_lower"],
                         "predicted_comm_s": pred["t_comm"], "comm_bytes": pred["comm_bytes"]})
    return rows
