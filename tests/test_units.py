"""Human units at the edge (perfmodel.units): accepted forms to SI, and the errors."""

import math

import pytest

from perfmodel import units
from perfmodel.units import UnitError, fmt_si, parse


@pytest.mark.parametrize("text, kind, si", [
    ("1.23 TB/s", "bandwidth", 1.23e12),            # T = 1e12, B = byte
    ("1.23TB/s", "bandwidth", 1.23e12),             # the space is optional
    ("45 GBps", "bandwidth", 45e9),                 # "ps" = "/s"
    ("360 Gb/s", "bandwidth", 45e9),                # bits: 360e9 / 8 = 45e9 bytes/s
    ("275 TFLOP/s", "flop_rate", 2.75e14),
    ("197 TFLOPS", "flop_rate", 1.97e14),           # FLOPS already means per second
    ("1.97e14 FLOP/s", "flop_rate", 1.97e14),
    ("1 TOP/s", "flop_rate", 1e12),                 # integer ops, same scale
    ("32 GiB", "bytes", 32 * 2**30),                # binary: 32 * 1073741824 = 34359738368
    ("160 MB", "bytes", 160e6),                     # decimal: 160 * 1e6
    ("228 kB", "bytes", 228e3),
    ("8 Gb", "bytes", 1e9),                         # 8e9 bits = 1e9 bytes
    ("1 us", "time", 1e-6),
    ("0.5 µs", "time", 5e-7),
    ("2 ms", "time", 2e-3),
])
def test_accepted_forms(text, kind, si):
    assert parse(text, kind) == pytest.approx(si, rel=1e-15)


def test_bare_numbers_only_where_allowed():
    assert parse(4096, "bytes", bare_ok=True) == 4096.0
    assert parse("4096", "bytes", bare_ok=True) == 4096.0
    with pytest.raises(UnitError, match="bare number 1230000000000 is ambiguous"):
        parse(1230000000000, "bandwidth")
    with pytest.raises(UnitError, match="has no unit, which is ambiguous"):
        parse("1.23e12", "bandwidth")


@pytest.mark.parametrize("value, kind, match", [
    ("1.23 TB", "bandwidth", r"is a size in bytes, expected bytes per second.*needs '/s'"),
    ("1.23 TFLOP/s", "bandwidth", "that is a FLOP rate, not bytes per second"),
    ("275 TB/s", "flop_rate", "that is a bandwidth, not a FLOP rate"),
    ("32 GB/s", "bytes", "a capacity has no '/s'"),
    ("1 TFLOP", "flop_rate", "is a FLOP count, expected FLOP per second"),
    ("1 s", "bandwidth", "is a time"),
    ("4 GiB/s", "time", "is a bandwidth, expected a time"),
    ("1 TFLOPS/s", "flop_rate", "unknown unit 'TFLOPS/s'"),   # per second twice
    ("3 XB", "bytes", "unknown unit 'XB'"),
    ("fast", "bandwidth", "cannot read 'fast' as a quantity"),
    ("", "bytes", "cannot read '' as a quantity"),
    ("-1 TB/s", "bandwidth", "finite, non-negative"),
    (True, "bandwidth", "got a boolean"),
    (None, "time", "got NoneType"),
    ([1], "bytes", "got list"),
    (float("nan"), "bytes", "NaN or infinity"),
    (float("inf"), "bytes", "NaN or infinity"),
])
def test_errors_say_what_is_valid(value, kind, match):
    with pytest.raises(UnitError, match=match) as info:
        parse(value, kind, bare_ok=True)
    # every message ends with the accepted forms for that kind of quantity
    assert units.KINDS[kind] in str(info.value)


@pytest.mark.parametrize("x, unit, text", [
    (1.23e12, "B/s", "1.23 TB/s"),
    (2.75e14, "FLOP/s", "275 TFLOP/s"),
    (1e-6, "s", "1 µs"),
    (0, "B", "0 B"),
    (None, "B", "-"),
    (math.inf, "B", "-"),
    (math.nan, "B", "-"),
])
def test_fmt_si(x, unit, text):
    assert fmt_si(x, unit) == text


def test_capacities_read_as_sold_and_as_compared():
    from perfmodel.units import fmt_capacity, fmt_exact

    # 80 GiB = 80 x 2^30 = 85,899,345,920 B; a decimal 96 GB stays decimal
    assert fmt_capacity(80 * 2**30) == "80 GiB = 85.9 GB"
    assert fmt_capacity(96e9) == "96 GB"
    # fmt_exact reads back to the same float (hardware show's promise)
    from perfmodel.units import parse
    for x, unit, kind in ((197e12, "FLOP/s", "flop_rate"), (8.1e11, "B/s", "bandwidth"),
                          (1e-6, "s", "time"), (16 * 2**30, "B", "bytes"), (2.5e-7, "s", "time")):
        assert parse(fmt_exact(x, unit), kind, bare_ok=True) == x
