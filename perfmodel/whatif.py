"""Hypothetical hardware: ``--set chip.field=value`` overrides and ``base:`` YAML specs.

A variant is always built by validating a full spec dict again (never ``model_copy``), so a
what-if chip is checked exactly like a shipped one. ``2x`` multiplies the base value; any other
value is read as the field would be read from YAML ("64 MiB", "3 TB/s", "1.5 us").
"""

from __future__ import annotations

import copy
import difflib
import re

from pydantic import ValidationError

from .specs import DTYPE_BYTES, PEAK_KEYS, Hardware, SpecError

_MULT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*x\s*$")


def _paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("sources", "alternatives"):
            out += _paths(v, p + ".")
        elif k not in ("sources", "alternatives", "name", "description"):
            out.append(p)
    return out


def _settable(hw: Hardware) -> list[str]:
    """Every field path a --set may name (unset optional fields included)."""
    full = hw.model_dump()
    for f, info in type(hw).model_fields.items():
        full.setdefault(f, None)
    ic = full.get("interconnect") or {}
    for f in type(hw.interconnect).model_fields:
        ic.setdefault(f, None)
    full["interconnect"] = ic
    full["peak_flops"] = {d: full["peak_flops"].get(d) for d in PEAK_KEYS}  # may add a dtype
    for f in ("vector_flops", "transcendental_flops"):
        full[f] = {d: (full.get(f) or {}).get(d) for d in DTYPE_BYTES}
    if full.get("matmul_tile") is None:
        full["matmul_tile"] = {d: None for d in ("m", "k", "n")}
    return _paths(full)


def _scale(current, factor: float):
    """Multiply a python-mode dump value: a number, or a "<number> <unit>" string."""
    if isinstance(current, bool) or current is None:
        raise ValueError("has no value to multiply")
    if isinstance(current, (int, float)):
        out = current * factor
        return int(out) if isinstance(current, int) and float(out).is_integer() else out
    num, _, unit = str(current).partition(" ")
    return f"{float(num) * factor!r} {unit}".strip()


def apply_override(hw: Hardware, path: str, value: str, label: str | None = None) -> Hardware:
    """A new, validated Hardware with ``path`` (dotted) set to ``value``; named ``label``."""
    arg = f"--set {hw.name}.{path}={value}"
    valid = _settable(hw)
    if path not in valid:
        close = difflib.get_close_matches(path, valid, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SpecError(f"{arg}: {hw.name} has no field {path!r}; {hint}settable fields: "
                        f"{', '.join(valid)}.")
    data = copy.deepcopy(hw.model_dump(exclude_none=True))
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    m = _MULT.match(str(value))
    if m and not 0 < float(m.group(1)) < float("inf"):
        raise SpecError(f"{arg}: the factor {m.group(1)} must be a positive, finite number "
                        f"(e.g. 2x or 0.5x).")
    try:
        node[keys[-1]] = _scale(node.get(keys[-1]), float(m.group(1))) if m else _yaml_scalar(value)
    except ValueError as e:
        raise SpecError(f"{arg}: cannot multiply {path}: it {e}; give a value instead.") from None
    data["name"] = label or f"{hw.name}[{path}={value}]"
    top = keys[0]
    srcs = data.setdefault("sources", {})
    base_src = srcs.get(top)
    srcs[top] = f"what-if override {path}={value} on {hw.name}" + (f" (base: {base_src})" if base_src else "")
    try:
        return Hardware.model_validate(data)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg'].removeprefix('Value error, ')}"
                         for x in e.errors()[:3])
        raise SpecError(f"{arg}: the resulting spec is invalid: {msgs}.") from None


def _yaml_scalar(value: str):
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def parse_set(arg: str) -> tuple[str, str, str]:
    """'tpu-v6e.hbm_bandwidth=2x' -> ('tpu-v6e', 'hbm_bandwidth', '2x')."""
    lhs, eq, rhs = arg.partition("=")
    if not eq or not rhs.strip():
        raise SpecError(f"--set {arg!r}: expected CHIP.FIELD=VALUE, e.g. tpu-v6e.hbm_bandwidth=2x "
                        f"or h100.onchip_memory=64MiB.")
    # chip names contain dots rarely; field paths follow the first '.' after a known chip
    chip, dot, path = lhs.partition(".")
    if not dot or not path:
        raise SpecError(f"--set {arg!r}: expected CHIP.FIELD=VALUE (no field after {lhs!r}).")
    return chip.strip(), path.strip(), rhs.strip()


def with_overrides(hardware: list[Hardware], sets: list[str]) -> list[Hardware]:
    """Add one variant per --set next to its base chip (the base must be in the list)."""
    out = list(hardware)
    for s in sets:
        chip, path, value = parse_set(s)
        base = next((h for h in out if h.name == chip), None)
        if base is None:
            raise SpecError(f"--set {s!r}: chip {chip!r} is not among --hardware "
                            f"({', '.join(h.name for h in hardware)}); add it there first.")
        variant = apply_override(base, path, value)
        out.insert(out.index(base) + 1, variant)
    return out


def merge_base(data: dict, base: Hardware) -> dict:
    """A YAML spec with ``base: NAME`` = the base's fields deep-merged with its own."""
    merged = base.model_dump(exclude_none=True)

    def deep(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict) and k != "alternatives":
                deep(dst[k], v)
            else:
                dst[k] = v
    over = {k: v for k, v in data.items() if k != "base"}
    deep(merged, over)
    return merged
