"""A transformer step evaluated over arrays of batch sizes: one expansion per structure.

``engine.to_json`` expands a transformer op into its ledger, validates every op and evaluates
them one by one: milliseconds per configuration. A search over thousands of configurations
changes only numbers between many of them: the sequences per step (``batch``), the pipeline
``microbatches`` and ``grad_accum``. Everything else (the mesh and the strategies on it, remat,
attention, mode, the chip) fixes the *structure*: which ledger rows exist and which collective
groups they run over. So the op is expanded once per structure with a Plan whose batch fields
are numpy arrays (``transformer.expand_op`` and ``memory_parts`` accept them), each ledger row
is validated once at a representative configuration, its array-valued fields (rows of the
projections, attention sequences, elementwise sizes, collective bytes, repeats) replace the
representative's input cells, and ``engine.op_columns`` evaluates the same formulas as a single
evaluation, on arrays. The step figures follow ``summary.step_summary`` term by term (the same
groups, the same overlap and pipeline rules), so each configuration agrees with ``to_json`` of
the equivalent workload (tests/test_plan.py checks it to 1e-12).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..engine import op_columns, price_columns
from ..ops import REGISTRY, OpContext
from ..specs import OP_SPECS, Hardware, TransformerOp, Workload
from .summary import group_time, matmul_peak, palm_flops, pipeline_stretch
from .transformer import expand_op, group_of, make_plan, memory_parts

ARRAY_FIELDS = ("batch", "m", "k", "n", "seq", "kv_seq")  # op fields that are input cells as is


def array_plan(spec: TransformerOp, mesh, batch, microbatches, grad_accum):
    """The sharding plan of ``spec`` with its batch fields as arrays (one entry per
    configuration). ``batch`` is sequences per step of the whole job; every entry must divide
    into the batch shards x microbatches x grad_accum (the caller filters)."""
    base = make_plan(spec, mesh)
    b = batch // base.batch_shards
    micro = b // (microbatches * grad_accum)
    return dataclasses.replace(base, batch=b, microbatches=microbatches, grad_accum=grad_accum,
                               micro_batch=micro, tokens=micro * base.q_seq)


def _inputs(kind: str, cell: dict, d: dict) -> dict:
    """The representative row's input cells with this structure's array-valued fields."""
    p = dict(cell)
    rep = d.get("repeat")
    if isinstance(rep, np.ndarray):
        p["repeat"] = rep.astype(float)
    for f in ARRAY_FIELDS:
        v = d.get(f)
        if isinstance(v, np.ndarray):
            p[f] = v.astype(float)
    if kind == "elementwise" and any(isinstance(x, np.ndarray) for x in d["shape"]):
        p["elements"] = math.prod(d["shape"]).astype(float)
    if kind == "collective" and isinstance(d.get("bytes"), np.ndarray):
        p["v_bytes"] = d["bytes"]
    return p


class Structure:
    """One structure of a transformer workload, ready to evaluate over batch arrays.

    ``wl`` is a validated workload at a representative configuration (its transformer op
    unexpanded: slice, mesh, the op with its parallelism, remat, ...); the representative's
    ledger rows are validated and their input cells built once here."""

    def __init__(self, hw: Hardware, wl: Workload):
        self.hw, self.wl = hw, wl
        (self.spec,) = [op for op in wl.ops if isinstance(op, TransformerOp)]
        self.plan = make_plan(self.spec, wl.mesh)
        ctx = OpContext(wl, hw)
        self.rows = []
        for d, _role in expand_op(self.spec, self.plan):
            op = OP_SPECS[d["kind"]].model_validate(d)
            self.rows.append((op, REGISTRY[op.kind].inputs(op, ctx), group_of(d["name"])))
        self.peak = matmul_peak(hw, self.spec)

    def evaluate(self, batch, microbatches, grad_accum, rows: list | None = None) -> dict:
        """Step figures per configuration (numpy arrays), as summary.step_summary defines them.
        ``rows``: a list that receives (op name, cost and roofline columns) per ledger row."""
        batch = np.asarray(batch, dtype=np.int64)
        n = batch.shape[0]
        micro = np.broadcast_to(np.asarray(microbatches, dtype=np.int64), (n,))
        accum = np.broadcast_to(np.asarray(grad_accum, dtype=np.int64), (n,))
        spec, hw = self.spec, self.hw
        plan = array_plan(spec, self.wl.mesh, batch, micro, accum)
        items = expand_op(spec, plan)
        if [d["name"] for d, _ in items] != [op.name for op, _, _ in self.rows]:
            raise AssertionError("the array expansion's ledger differs from the structure's")
        zero = np.zeros(n)
        groups: dict[str, dict] = {}
        calibrated = False
        executed = zero.copy()
        for (d, _role), (op, cell, gname) in zip(items, self.rows):
            _, cost, roof = op_columns(op, hw, self.wl, inputs=_inputs(op.kind, cell, d))
            if rows is not None:
                rows.append((op.name, {**cost, **roof}))
            g = groups.setdefault(gname, {"busy": zero, "comm": zero, "upper": zero,
                                          "cal_busy": zero, "cal_comm": zero,
                                          "compute": zero, "memory": zero})
            t = roof["t_lower"]
            cal = roof.get("t_calibrated")
            calibrated |= cal is not None
            cal = t if cal is None else cal
            side = "comm" if op.kind == "collective" else "busy"
            g[side] = g[side] + t
            g["cal_" + side] = g["cal_" + side] + cal
            g["upper"] = g["upper"] + roof["t_upper"]
            if side == "busy":
                is_c = np.asarray(roof["bound"]) == "compute"
                g["compute"] = g["compute"] + np.where(is_c, t, 0.0)
                g["memory"] = g["memory"] + np.where(is_c, 0.0, t)
            executed = executed + cost["flops"]
        stretch = pipeline_stretch(plan)
        t_lower = t_upper = t_cal = zero
        seen = np.zeros(n, dtype=np.int64)  # bit 1 comm, 2 compute, 4 memory: groups' bounds
        for name, g in groups.items():
            seen |= np.where(g["comm"] > g["busy"], 1,
                             np.where(g["compute"] >= g["memory"], 2, 4))
            f = 1.0 if name == "optimizer" else stretch
            t_lower = t_lower + f * group_time(g["busy"], g["comm"])
            t_upper = t_upper + f * g["upper"]
            t_cal = t_cal + f * group_time(g["cal_busy"], g["cal_comm"])
        out = {"t_lower": t_lower, "t_upper": t_upper, "bounds": _bound_names(seen)}
        basis = "t_lower" if spec.overlap else "t_upper"
        if calibrated:
            out["t_calibrated"] = t_cal
            basis = "t_calibrated"
        t_step = out[basis]
        tokens = batch * (1 if spec.mode == "decode" else spec.seq)
        parts = memory_parts(spec, plan)
        mem = sum(np.broadcast_to(v, (n,)) for v in parts.values())
        with np.errstate(all="ignore"):
            out.update(t_step=t_step, tokens_per_step=tokens.astype(float),
                       tokens_per_s=tokens / t_step,
                       mfu=palm_flops(spec, batch) / (plan.chips * t_step * self.peak),
                       hfu=executed / (t_step * self.peak),
                       memory_bytes_per_chip=mem, flops=executed, chips=plan.chips)
        out.update(price_columns(hw.price_per_hour, out))
        out["t_step_basis"] = basis
        return out


def _bound_names(bits: np.ndarray) -> np.ndarray:
    """'comm/compute/memory'-style labels (sorted, as the sweep's totals write them)."""
    names = {b: "/".join(sorted(k for k, bit in (("comm", 1), ("compute", 2), ("memory", 4))
                                if b & bit)) for b in range(1, 8)}
    return np.array([names[b] for b in range(8) if b] , dtype=object)[bits - 1] if bits.size \
        else np.array([], dtype=object)


def decode_matmul_margin(hw: Hardware, spec: TransformerOp, mesh, per_chip: np.ndarray):
    """FLOPs / peak - t_memory of a decode step's layer matmuls with ``per_chip`` sequences
    per chip per microbatch (an array): >= 0 where they are compute-bound (the useful FLOPs,
    as summary.decode_compute_bound_batch defines it)."""
    base = make_plan(spec, mesh)
    step = base.batch_shards * base.microbatches
    rep = spec.model_copy(update={"batch": step})
    plan = array_plan(rep, mesh, per_chip * step, base.microbatches, 1)
    peak = matmul_peak(hw, spec)
    flops = t_mem = 0.0
    scalar = expand_op(rep, make_plan(rep, mesh))
    for (d, _), (d1, _) in zip(expand_op(rep, plan), scalar):
        if d["kind"] != "matmul" or not d["name"].startswith("layer/"):
            continue
        op = OP_SPECS["matmul"].model_validate(d1)
        cell = REGISTRY["matmul"].inputs(op, None)
        _, cost, roof = op_columns(op, hw, None, inputs=_inputs("matmul", cell, d))
        flops = flops + cost["flops"]
        t_mem = t_mem + roof["t_memory"]
    return flops / peak - t_mem
