"""Human units at the edge: parse "1.23 TB/s", "275 TFLOP/s", "32 GiB", "360 Gb/s", "1 us".

Everything inside perfmodel is SI: bytes, seconds, FLOP/s, bytes/s. A small explicit table of
accepted units (pint reads "b" as barn and knows no FLOP). Bits only with an explicit lower-case
"b" (Gb/s); B is bytes. Decimal prefixes are powers of 1000, binary (KiB, MiB...) of 1024.
"""

from __future__ import annotations

import math
import re

_DECIMAL = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}

# quantity kind -> what a user may write, for error messages
KINDS = {
    "bytes": 'bytes, e.g. "32 GiB", "160 MB", "228 kB" (or a bare number of bytes)',
    "bandwidth": 'bytes per second, e.g. "1.23 TB/s", "45 GB/s", "360 Gb/s" (bits)',
    "flop_rate": 'FLOP per second, e.g. "275 TFLOP/s", "1.97e14 FLOP/s"',
    "time": 'a time, e.g. "1 us", "0.5 us", "2 ms"',
}

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RE = re.compile(rf"^\s*(?P<num>{_NUM})\s*(?P<unit>[^\s\d].*?)?\s*$")


class UnitError(ValueError):
    """A quantity that could not be read; the message says what would be valid."""


def _prefix(p: str) -> float | None:
    if p in _BINARY:
        return _BINARY[p]
    if p in _DECIMAL:
        return _DECIMAL[p]
    return None


def _classify(unit: str) -> tuple[str, float] | None:
    """Return (kind, factor to SI) for a unit string, or None if unknown."""
    u = unit.replace(" ", "")
    if u in _TIME:
        return "time", _TIME[u]
    per_s = u.endswith("/s") or u.endswith("ps") and u[:-2].endswith(("B", "b"))
    base = u[:-2] if per_s else u
    for suffix, kind, scale in (("FLOPS", "flop_rate", 1.0), ("FLOP", "flop", 1.0),
                                ("OPS", "flop_rate", 1.0), ("OP", "flop", 1.0),
                                ("B", "bytes", 1.0), ("b", "bits", 0.125)):
        if base.endswith(suffix):
            p = _prefix(base[: -len(suffix)])
            if p is None:
                return None
            if suffix in ("FLOPS", "OPS"):
                return ("flop_rate", p) if not per_s else None
            if kind == "flop":
                return ("flop_rate", p) if per_s else ("flop", p)
            if per_s:
                return "bandwidth", p * scale
            return ("bytes", p * scale)
    return None


def parse(value: object, kind: str, *, bare_ok: bool = False) -> float:
    """Parse a quantity of the given kind ('bytes', 'bandwidth', 'flop_rate', 'time') to SI.

    A bare number is accepted only when ``bare_ok`` (it is then taken as already SI).
    """
    want = KINDS[kind]
    if isinstance(value, bool):
        raise UnitError(f"expected {want}, got a boolean {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise UnitError(f"{value!r} (NaN or infinity) is not a quantity: write {want}")
        if not bare_ok:
            raise UnitError(f"a bare number {value!r} is ambiguous here: write {want}")
        x = float(value)
    elif isinstance(value, str):
        m = _RE.match(value)
        if not m:
            raise UnitError(f"cannot read {value!r} as a quantity: write {want}")
        num, unit = float(m["num"]), (m["unit"] or "").strip()
        if not unit:
            if not bare_ok:
                raise UnitError(f"{value!r} has no unit, which is ambiguous here: write {want}")
            x = num
        else:
            cls = _classify(unit)
            if cls is None:
                raise UnitError(f"unknown unit {unit!r} in {value!r}: write {want}")
            got, factor = cls
            if got == "bits":
                got = "bytes"
            if got != kind:
                hint = {
                    ("bandwidth", "bytes"): " (a bandwidth needs '/s')",
                    ("bytes", "bandwidth"): " (a capacity has no '/s')",
                    ("bandwidth", "flop_rate"): " (that is a FLOP rate, not bytes per second)",
                    ("flop_rate", "bandwidth"): " (that is a bandwidth, not a FLOP rate)",
                }.get((kind, got), "")
                what = {"bytes": "a size in bytes", "bandwidth": "a bandwidth", "time": "a time",
                        "flop_rate": "a FLOP rate", "flop": "a FLOP count"}.get(got, got)
                raise UnitError(f"{value!r} is {what}, expected {want}{hint}")
            x = num * factor
    else:
        raise UnitError(f"expected {want}, got {type(value).__name__} {value!r}")
    if not math.isfinite(x) or x < 0:
        raise UnitError(f"{value!r} must be a finite, non-negative quantity: write {want}")
    return x


_PREFIXES = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T",
             15: "P", 18: "E"}


def fmt_si(x: float | None, unit: str = "", digits: int = 3) -> str:
    """Engineering notation for people: 1.23e12, 'B/s' -> '1.23 TB/s'.

    Past the largest prefix (E) or below the smallest (p) the number is written in scientific
    notation instead. Seconds take no prefix above 1 ("317 Ms" would read as milliseconds) and
    a bare number none below 1 ("5 m" would read as metres): those are scientific too.
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return f"0 {unit}".strip()
    exp = int(math.floor(math.log10(abs(x)) / 3) * 3)
    lo, hi = min(_PREFIXES), max(_PREFIXES)
    if unit == "s":
        hi = 0
    elif unit == "":
        lo = 0
    if not lo <= exp <= hi:
        text = f"{x:.{digits}g}"
        if "e" not in text:  # small enough to read plainly (e.g. 317 s)
            return f"{text} {unit}".strip()
        mant, _, e = text.partition("e")
        return f"{mant}e{int(e)} {unit}".strip()
    return f"{x / 10**exp:.{digits}g} {_PREFIXES[exp]}{unit}".strip()


_KIND_OF_UNIT = {"FLOP/s": "flop_rate", "B/s": "bandwidth", "s": "time", "B": "bytes"}


def fmt_exact(x: float, unit: str) -> str:
    """``x`` with ``unit`` as a person writes it and ``parse`` reads back to the same float:
    '197 TFLOP/s', '810 GB/s', '1 us', '16 GiB' (a whole number of GiB or MiB stays binary, as
    memory is sold); the fewest digits that round-trip."""
    kind = _KIND_OF_UNIT[unit]
    if kind == "bytes":
        for p in ("Gi", "Mi"):
            if x >= _BINARY[p] and x % _BINARY[p] == 0:
                return f"{x / _BINARY[p]:g} {p}B"
    if x == 0 or not math.isfinite(x):
        return f"{x!r} {unit}"
    exp = max(min(int(math.floor(math.log10(abs(x)) / 3) * 3), 18), -9 if kind == "time" else 0)
    if kind == "time":
        exp = min(exp, 0)
        pre = {0: "s", -3: "ms", -6: "us", -9: "ns"}[exp]
        text = lambda m: f"{m} {pre}"  # noqa: E731
    else:
        text = lambda m: f"{m} {_PREFIXES[exp]}{unit}"  # noqa: E731
    for digits in range(3, 7):  # past 6 digits the plain float reads better
        s = text(f"{x / 10**exp:.{digits}g}")
        if parse(s, kind, bare_ok=True) == x:
            return s
    return f"{x!r} {unit}"


def fmt_capacity(x: float) -> str:
    """A memory size as it is sold and as it compares with byte counts: '80 GiB = 85.9 GB' when
    a whole number of GiB (or MiB), else '96 GB'."""
    for p in ("Gi", "Mi"):
        if x >= _BINARY[p] and x % _BINARY[p] == 0:
            return f"{x / _BINARY[p]:g} {p}B = {fmt_si(x, 'B')}"
    return fmt_si(x, "B")
