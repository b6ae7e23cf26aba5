"""The roofline spreadsheet of a user's JAX function (``perfmodel.analyze``, ``perfmodel analyze``).

The lowering and the reading of XLA's program live in ``calibrate/analyze.py`` (the only jax
importer); here the ops it found become an ordinary ``Workload`` priced by the engine, so the
table, JSON, workbook and ``--workload-out`` YAML are the same numbers ``perfmodel roofline``
gives for that YAML. Unpriced custom calls stay rows (kind ``unpriced``) outside the workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import engine, results
from .errors import SpecError
from .specs import Hardware, Workload

GSPMD_NOTE = ("note: the program is sharded by jit shardings (GSPMD) and could not be "
              "compiled here: its lowered form is the whole job's (global shapes; the "
              "partitioner adds collectives only when compiling), so these rows are whole-job "
              "figures, not one chip's")
PARTITIONED_NOTE = ("note: the program is sharded by jit shardings (GSPMD): rows are one "
                    "device's, read after XLA's SPMD partitioner (per-device shapes and its "
                    "collectives, before fusion); XLA's 'lowered' count is the whole job's")
TOLERANCE = 0.01  # as perfmodel check: FLOPs within 1% of XLA's, or a named relation

# why a total may differ from XLA's compiled count by more than 1% (each a computed term)
RELATIONS = {
    "collective-reduction": "perfmodel counts a reduce_scatter / all_reduce's reduction as "
                            "(n-1)/n x V/elem_bytes per device (ops/collectives.py), XLA one "
                            "flop per output element",
    "convolution-padding": "a convolution priced as its matmul counts the window positions "
                           "over padding; XLA counts only those touching the input",
    "loop-trip-count": "a counted loop's body (jax scan, fori_loop) is priced once per trip "
                       "(the rows' repeat); XLA's cost analysis counts a loop body once",
    "gspmd-whole-job": "a program sharded by jit shardings is lowered as the whole job's "
                       "program, which the rows count; XLA's compiled count is one device's "
                       "after the SPMD partitioner split it",
    "compile-artefacts": "the compiled count differs from the lowered one by the backend's own "
                         "rewrites (bf16 emulated through converts on CPU, constant folding, "
                         "fusion recomputation; perfmodel check names them per kernel); the "
                         "total matches the lowered program's count",
}


@dataclass
class Analysis:
    """One analysed function on one chip: ``rows`` (a DataFrame), ``totals``, ``to_json()``,
    ``to_workload()``."""

    hardware: Hardware
    workload: Workload | None
    records: list[dict]
    totals: dict
    xla: dict
    function: str
    measured: dict | None = None
    unpriced: list[dict] = field(default_factory=list)

    @property
    def rows(self):
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")}
                             for r in self.records])

    def to_workload(self) -> Workload:
        if self.workload is None:
            raise SpecError(f"{self.function}: every op is unpriced; there is no workload to "
                            f"write (map the custom calls to op specs with --annotations)")
        return self.workload

    def to_json(self) -> dict:
        """``schema_version``, ``ops`` (every row, unpriced ones too), ``total`` (the engine's
        total of the priced ops, as ``perfmodel roofline`` of the workload gives it, plus
        ``unpriced``, ``transcendentals`` and, measured, ``t_measured``), ``xla``."""
        out = {"schema_version": engine.SCHEMA_VERSION, "hardware": self.hardware.name,
               "workload": self.workload.name if self.workload is not None else None,
               "function": self.function, "ops": [_clean(r) for r in self.records],
               "total": _clean(self.totals), "xla": _clean(self.xla)}
        if self.measured is not None:
            out["measured"] = _clean({k: v for k, v in self.measured.items() if k != "rows"})
        return out

    def workload_yaml(self) -> str:
        import yaml

        wl = self.to_workload()
        data = {"name": wl.name}
        if wl.description:
            data["description"] = wl.description
        for k in ("slice", "slices", "mesh"):
            v = getattr(wl, k)
            if v is not None and not (k == "slices" and v == 1):
                data[k] = v
        data["ops"] = self._ops
        return yaml.safe_dump(data, sort_keys=False, width=100)

    def table(self) -> str:
        from .report.tables import roofline_table

        priced = [r for r in self.records if r["kind"] != "unpriced"]
        cols = self.totals
        text = roofline_table(f"{self.function} on {self.hardware.name}", priced, cols)
        lines = [text]
        if self.unpriced:
            lines.append(f"unpriced ({len(self.unpriced)}, not in the totals): "
                         + "; ".join(f"{r['name']} ({r['hlo']})" for r in self.unpriced))
        x = self.xla
        if x.get("xla_flops_compiled") is not None or x.get("xla_flops_lowered") is not None:
            lines.append(_xla_line(self.totals, x))
        if x.get("gspmd"):
            lines.append(PARTITIONED_NOTE if x.get("partitioned") else GSPMD_NOTE)
        if "t_calibrated" in self.totals:
            lines.append(f"t_calibrated (calibrated groups of {self.hardware.name}): "
                         f"{_s(self.totals['t_calibrated'])}")
        if self.measured is not None:
            m = self.measured
            lines.append(f"measured here ({x.get('backend')}): {_s(m['t_measured'])} per call "
                         f"(median of {m['timing']['reps']}); t_lower "
                         f"{_pct(self.totals.get('err_lower'))}, t_calibrated "
                         f"{_pct(self.totals.get('err_calibrated'))}")
            if self.hardware.calibration is None:
                lines.append(f"note: {self.hardware.name} is not calibrated: compare measured "
                             f"times with a calibrated spec of this machine (perfmodel "
                             f"calibrate) for t_calibrated")
            rows = [r for r in self.records if r.get("t_measured") is not None]
            if rows:
                lines.append("per row (profile; a fused kernel counts to its root's row):")
                w = max(len(r["name"]) for r in rows)
                for r in rows:
                    lines.append(f"  {r['name']:{w}s}  measured {_s(r['t_measured']):>10s}  "
                                 f"t_lower {_s(r.get('t_lower')):>10s}  t_calibrated "
                                 f"{_s(r.get('t_calibrated')):>10s}")
        notes = sorted({r["note"] for r in self.records if r.get("note")})
        if notes:
            lines.append("notes: " + " | ".join(notes))
        return "\n".join(lines)

    _ops: list = field(default_factory=list, repr=False)


def _s(x) -> str:
    from .units import fmt_si

    return "-" if x is None else fmt_si(x, "s")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _xla_line(tot: dict, x: dict) -> str:
    parts = [f"FLOPs vs XLA cost_analysis: ours {tot.get('flops', 0):.6g}"]
    if x.get("xla_flops_lowered") is not None:
        parts.append(f"lowered {x['xla_flops_lowered']:.6g}")
    if x.get("xla_flops_compiled") is not None:
        parts.append(f"compiled {x['xla_flops_compiled']:.6g}")
    parts.append(f"-> {x.get('status')}" + (f" ({x['relation']})" if x.get("relation") else ""))
    return ", ".join(parts)


def _clean(v):
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if not k.startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, set):
        return sorted(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return engine._clean(v)


def _rel(a, b):
    return None if a is None or not b else a / b - 1.0


def xla_agreement(total_flops: float, rows: list[dict], xla: dict) -> dict:
    """Whether the total agrees with XLA's compiled count (1%), else which relations explain
    the difference, each a term computed from the rows: our collective convention (the
    engine's minus XLA's count on the collective rows), loop bodies counted per trip (a row's
    flops x (1 - 1/repeat)), and the lowered program's count (compile artefacts)."""
    comp, low = xla.get("xla_flops_compiled"), xla.get("xla_flops_lowered")
    coll = sum((r.get("flops") or 0.0) - (r.get("xla_flops") or 0.0) * (r.get("repeat") or 1)
               for r in rows if r["kind"] == "collective")
    conv = sum((r.get("flops") or 0.0) - (r.get("xla_flops") or 0.0) * (r.get("repeat") or 1)
               for r in rows if r.get("hlo") == "convolution")
    loop = sum((r.get("flops") or 0.0) * (1 - 1 / r["repeat"]) for r in rows
               if r["kind"] != "unpriced" and (r.get("repeat") or 1) > 1)
    out = {"flops_ratio_compiled": None if not comp else total_flops / comp,
           "flops_ratio_lowered": None if not low else total_flops / low,
           "status": "MISMATCH" if comp is not None or low is not None else "no XLA count",
           "relation": ""}

    def close(a, b):
        return b is not None and (abs(a - b) <= TOLERANCE * abs(b) if b else abs(a) <= 0.5)

    named = [(n, v) for n, v in (("collective-reduction", coll), ("convolution-padding", conv),
                                 ("loop-trip-count", loop)) if v]
    terms = [("", 0.0)]
    for mask in range(1, 1 << len(named)):  # every combination of the terms present
        use = [named[i] for i in range(len(named)) if mask >> i & 1]
        terms.append((", ".join(n for n, _ in use), sum(v for _, v in use)))
    lowered_rel = ("gspmd-whole-job" if xla.get("gspmd") and not xla.get("partitioned")
                   else "compile-artefacts")
    for target, value in (("", comp), (lowered_rel, low)):
        for name, adj in terms:
            if close(total_flops - adj, value):
                rel = ", ".join(x for x in (name, target) if x)
                out.update(status="ok" if not rel else "explained", relation=rel)
                if rel:
                    out["relation_reason"] = "; ".join(RELATIONS[r.strip()]
                                                       for r in rel.split(","))
                return out
    return out


def build(hw: Hardware, res: dict, *, slice_: str | None = None, name: str | None = None,
          measured: dict | None = None) -> Analysis:
    """The Analysis of calibrate.analyze.analyze_program's result on ``hw``."""
    rows = res["rows"]
    fn = res["function"]
    priced = [r for r in rows if r.op is not None]
    unpriced = [r for r in rows if r.op is None]
    wl = None
    ops = [r.op for r in priced]
    if ops:
        data = {"name": name or f"analyze-{fn}", "ops": ops}
        notes = [f"{r.name}: unpriced {r.hlo}" for r in unpriced]
        desc = (f"perfmodel analyze of {fn} (jax {res['jax_version']}, lowered for "
                f"{res['backend']})")
        data["description"] = desc + ("; " + "; ".join(notes) if notes else "")
        has_coll = any(o["kind"] == "collective" for o in ops)
        if res.get("mesh") and (has_coll or slice_):
            data["mesh"] = res["mesh"]
            data["slice"] = slice_ or default_slice(res["mesh"])
        wl = _validate(data)
    records = []
    engine_rows = {r["name"]: r for r in engine.evaluate_rows(hw, wl)} if wl else {}
    for r in rows:
        if r.op is not None:
            rec = dict(engine_rows[r.name])
        else:
            rec = {"name": r.name, "kind": "unpriced", "dtype": None, "repeat": 1}
        rec.update(hlo=r.hlo, scope=r.scope, xla_flops=r.xla_flops,
                   transcendentals=r.transcendentals, note=r.note)
        rec["_op_names"] = r.op_names
        records.append(rec)
    total = results.to_json(hw, wl, [engine_rows[r.name] for r in priced])["total"] if wl else {}
    total["unpriced"] = len(unpriced)
    total["transcendentals"] = sum(r.transcendentals for r in rows)
    xla = {k: res.get(k) for k in ("xla_flops_lowered", "xla_transcendentals_lowered",
                                   "xla_flops_compiled", "backend", "jax_version", "gspmd",
                                   "partitioned")}
    if res.get("compile_error"):
        xla["compile_error"] = res["compile_error"]
    xla["counted_flops"] = sum(r.xla_flops for r in rows)
    xla.update(xla_agreement(total.get("flops", 0.0), records, xla))
    a = Analysis(hw, wl, records, total, xla, fn, unpriced=[
        {"name": r.name, "hlo": r.hlo, "note": r.note} for r in unpriced])
    a._ops = ops
    if measured is not None:
        attach_measurement(a, measured)
    return a


def attach_measurement(a: Analysis, m: dict) -> None:
    a.measured = m
    for r in a.records:
        if r["kind"] != "unpriced" and m.get("rows") is not None:
            r["t_measured"] = m["rows"].get(r["name"], 0.0)
    t = m["t_measured"]
    a.totals["t_measured"] = t
    a.totals["err_lower"] = _rel(a.totals.get("t_lower"), t)
    a.totals["err_calibrated"] = _rel(a.totals.get("t_calibrated"), t)


def default_slice(mesh: dict) -> str:
    """The chips as the mesh lays them out: its sizes joined by 'x' ('8' for one axis)."""
    return "x".join(str(v) for v in mesh.values())


def _validate(data: dict) -> Workload:
    from pydantic import ValidationError

    from .model import expand_workload

    try:
        return expand_workload(Workload.model_validate(data))
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc'][:3])}: "
                         f"{err['msg'].removeprefix('Value error, ')}"
                         for err in e.errors()[:3])
        raise SpecError(f"the analysed program does not make a valid workload: {msgs}. For a "
                        f"collective, give --mesh with the program's axes and a --slice of "
                        f"the chip that holds them (e.g. --slice 2x4 on a TPU).") from None


def analyze(fn, *example_args, hardware, mesh=None, slice=None, annotations=None,
            measure: bool = False, name: str | None = None, mode: str = "quick") -> Analysis:
    """``fn(*example_args)`` (arrays, jax.ShapeDtypeStruct or pytrees of them) jitted, lowered
    (not run, unless ``measure``) and priced on ``hardware`` (a name, a path or a Hardware).
    ``mesh``: a jax Mesh or {axis: size} naming the axes of the program's collectives;
    ``annotations``: {custom-call target: op spec} (a dict or a YAML path)."""
    from .calibrate import analyze as A
    from .catalog import load_hardware

    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    ann = load_annotations(annotations)
    res = A.analyze_program(fn, example_args, mesh=mesh, annotations=ann)
    a = build(hw, res, slice_=slice, name=name)
    if measure:
        attach_measurement(a, A.measure(fn, example_args, a.records, mode=mode))
    return a


def load_annotations(src) -> dict | None:
    """{custom-call target: op spec without its name}, from a dict or a YAML file, each spec
    validated as a workload op."""
    from .specs import OP_SPECS, read_yaml

    if src is None:
        return None
    path = None
    if not isinstance(src, dict):
        path = Path(src)
        src, _ = read_yaml(path)
    where = f"{path}" if path else "annotations"
    out = {}
    for target, spec in src.items():
        if not isinstance(spec, dict) or spec.get("kind") not in OP_SPECS or \
                spec.get("kind") == "transformer":
            raise SpecError(f"{where}: {target!r} must map to an op spec with kind one of "
                            f"matmul, elementwise, attention, collective (e.g. {target}: "
                            f"{{kind: matmul, m: 1024, k: 1024, n: 1024, dtype: bf16}}), got "
                            f"{spec!r}")
        try:
            from pydantic import TypeAdapter, ValidationError

            from .specs import Op

            TypeAdapter(Op).validate_python({"name": str(target), **spec})
        except ValidationError as e:
            err = e.errors()[0]
            field_ = ".".join(str(x) for x in err["loc"][1:]) or "(the spec)"
            need = [n for n, f in OP_SPECS[spec["kind"]].model_fields.items()
                    if f.is_required() and n not in ("name", "kind")]
            raise SpecError(f"{where}: {target}.{field_}: "
                            f"{err['msg'].removeprefix('Value error, ')}"
                            f"{'' if err['type'] == 'missing' else ' (got ' + repr(err.get('input')) + ')'}; "
                            f"a {spec['kind']} op needs {', '.join(need) or 'no other field'}, "
                            f"as in a workload YAML") from None
        out[str(target)] = {k: v for k, v in spec.items() if k != "name"}
    return out
