"""What the workbook shows, evaluated before any sheet is written: per op and chip its input
cells, its formula template (cost and roofline columns as expression trees) and its numbers.

Ops of one structure (kind, structural fields, input names) share one template per chip: the
trees are built once and evaluated with numpy over the group's inputs, and each sheet renders
each column once per template and fills the rows (see ``Template``). A chip with a calibration
gets one template per op, because the fitted group an op belongs to depends on its shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...engine import hw_env, op_columns
from ...formula import evaluate, json_value, to_excel
from ...ops import REGISTRY, OpContext
from ...specs import SpecError


@dataclass
class Template:
    """One structure's cost and roofline columns on one chip (expression trees)."""

    chip: str
    exprs: dict  # column -> expression tree, in dependency order
    _text: dict = field(default_factory=dict)  # (sheet key, column) -> format string

    def text(self, key, column: str, resolve) -> str:
        """The column's formula as a format string: ``resolve(name)`` returns a cell
        address, a name, or a ``{placeholder}`` that each row fills (``str.format_map``)."""
        t = self._text.get((key, column))
        if t is None:
            t = self._text[(key, column)] = row_template(self.exprs[column], resolve)
        return t


def row_template(expr, resolve) -> str:
    """``expr`` rendered by to_excel as a format string: ``resolve(name)`` may return text with
    ``{placeholders}`` that each row fills; braces the formula itself holds stay text."""
    marks = {}

    def mark(name):
        marks[name] = resolve(name)
        return f"\0{name}\0"
    parts = to_excel(expr, mark).split("\0")
    return "".join(p.replace("{", "{{").replace("}", "}}") if k % 2 == 0 else marks[p]
                   for k, p in enumerate(parts))


@dataclass
class ChipOp:
    inputs: dict     # input cell -> number (on this chip: topology inputs may differ)
    template: Template
    values: dict     # column -> number, text or bool


@dataclass
class OpRow:
    index: int       # position in the book: Ops row 1 + index, Workload row 1 + index
    workload: str
    op: object
    by_chip: dict    # chip name -> ChipOp (absent: the op cannot run there)
    active: str

    @property
    def inputs(self) -> dict:
        return self.by_chip[self.active].inputs

    @property
    def values(self) -> dict:
        return self.by_chip[self.active].values


@dataclass
class BookData:
    workloads: list
    hardware: list
    active: object
    measured: list
    calibration: object  # (FitResult, per-row op indices into the first workload) or None
    rows: list[OpRow]
    hw_params: list[str]
    models: list  # (workload, model.Expansion) for transformer workloads
    plan: object = None  # perfmodel plan's ranked configurations (a DataFrame) or None

    @property
    def chips(self) -> list[str]:
        return [h.name for h in self.hardware]

    def rows_of(self, workload: str) -> list[OpRow]:
        return [r for r in self.rows if r.workload == workload]


def _structural(v) -> bool:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return True
    if isinstance(v, (int, float)):
        return False
    if isinstance(v, (list, tuple)):
        return not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    return True


def template_key(op, inputs: dict, hw) -> tuple:
    """Ops with equal keys have the same formulas up to their input cells. Numeric fields are
    input cells (or folded into one, as a shape's element count); the rest is structure."""
    if hw.calibration is not None:
        return ("op", id(op))
    return (op.kind, tuple(inputs), tuple(sorted((k, repr(v)) for k, v in vars(op).items()
                                                 if k != "name" and _structural(v))))


def _column(a: np.ndarray) -> list:
    """An evaluated column as Python values: floats (None where not finite), bools or text."""
    if a.dtype.kind == "f":
        return [x if x == x and abs(x) != np.inf else None for x in a.tolist()]
    if a.dtype.kind in "biuUS":
        return [float(x) if a.dtype.kind in "iu" else x for x in a.tolist()]
    return [json_value(x) for x in a]


def evaluate_book(workloads, hardware, active, measured=None, calibration=None) -> BookData:
    from ...model import expansion

    active_hw = next((h for h in hardware if h.name == active), hardware[0])
    envs = {h.name: {k: np.float64(v) for k, v in hw_env(h).items()} for h in hardware}
    templates: dict[tuple, Template] = {}
    members: dict[tuple, list] = {}  # template key -> [(row index, inputs)]
    rows: list[OpRow] = []
    for wl in workloads:
        for op in wl.ops:
            i = len(rows)
            row = OpRow(i, wl.name, op, {}, active_hw.name)
            for hw in hardware:
                try:
                    inp = REGISTRY[op.kind].inputs(op, OpContext(wl, hw))
                    key = (hw.name, template_key(op, inp, hw))
                    if key not in templates:
                        _, cost, roof = op_columns(op, hw, wl, symbolic=True, inputs=inp)
                        templates[key] = Template(hw.name, {**cost, **roof})
                except SpecError:
                    if hw is active_hw:
                        raise
                    continue  # e.g. a dtype this chip has no peak for: blank on Compare
                members.setdefault(key, []).append((i, inp))
                row.by_chip[hw.name] = ChipOp(inp, templates[key], {})
            rows.append(row)
    # numbers: each template's columns evaluated once over its ops' inputs (numpy arrays)
    for key, mem in members.items():
        t = templates[key]
        env = dict(envs[t.chip])
        n = len(mem)
        for k in mem[0][1]:
            env[k] = np.asarray([inp[k] for _, inp in mem], dtype=float)
        cols = {}
        for c, e in t.exprs.items():
            v = evaluate(e, env) if not isinstance(e, (int, float, bool, str)) else e
            env[c] = v
            cols[c] = _column(np.broadcast_to(np.asarray(v), (n,)))
        names = list(cols)
        for j, vals in enumerate(zip(*cols.values())):
            rows[mem[j][0]].by_chip[t.chip].values.update(zip(names, vals))
    extra = [k for h in hardware for k in hw_env(h) if k not in _hw_params()]
    hw_params = [p for p in _hw_params() + list(dict.fromkeys(extra))
                 if any(p in hw_env(h) for h in hardware)]
    models = [(wl, expansion(wl)) for wl in workloads if expansion(wl) is not None]
    return BookData(list(workloads), list(hardware), active_hw, list(measured or []), calibration,
                    rows, hw_params, models)


def _hw_params() -> list[str]:
    from ...engine import HW_PARAMS

    return list(HW_PARAMS)
