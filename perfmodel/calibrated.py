"""The calibrated prediction: a roofline with fitted, per-kind-of-kernel parameters.

t = overhead + combine(flops_exec / P_eff, hbm_bytes / W_eff), combine = sum or max (whichever
the fit chose), with
- P_eff = peak / (1 + d0/m + d0/k + d0/n) for matmuls: small dims run below peak (d0 = small_dim);
- W_eff = cache_bandwidth while the working set (hbm_bytes) fits cache_bytes, else bandwidth.
The fitted numbers are hardware parameters named ``cal_<kind>_<param>``, so the workbook shows
them as input cells and the formula stays live. Pure: the fitting lives in calibrate/fit.py.
"""

from __future__ import annotations

from .formula import fmax, where

PARAMS = ["peak_flops", "bandwidth", "overhead", "cache_bytes", "cache_bandwidth", "small_dim"]


def kind_key(op) -> str:
    """The group of kernels an op is calibrated with: its kind, attention also by impl."""
    return f"attention_{op.impl}" if op.kind == "attention" else op.kind


def lookup(hw, op) -> str | None:
    """The calibration group that applies to ``op`` on ``hw`` (None: not calibrated)."""
    if hw.calibration is None:
        return None
    kinds = hw.calibration.kinds
    base = kind_key(op)
    # fitted groups are per dtype (fp32 unsuffixed): bf16 is a different kernel on a CPU
    keys = (base, op.kind) if op.dtype == "fp32" else (f"{base}_{op.dtype}", f"{op.kind}_{op.dtype}")
    for key in keys:
        if key in kinds:
            return key
    return None


def env(hw) -> dict[str, float]:
    """cal_<kind>_<param> for every fitted kind, with neutral defaults for unset terms."""
    out = {}
    if hw.calibration is None:
        return out
    for key, k in hw.calibration.kinds.items():
        out[f"cal_{key}_peak_flops"] = k.peak_flops
        out[f"cal_{key}_bandwidth"] = k.bandwidth
        out[f"cal_{key}_overhead"] = k.overhead
        out[f"cal_{key}_cache_bytes"] = k.cache_bytes or 0.0  # 0: no cache term
        out[f"cal_{key}_cache_bandwidth"] = k.cache_bandwidth or k.bandwidth
        out[f"cal_{key}_small_dim"] = k.small_dim or 0.0
    return out


def t_calibrated(e, key: str, combine: str, kind: str):
    c = lambda p: e[f"cal_{key}_{p}"]  # noqa: E731
    peak = c("peak_flops")
    if kind == "matmul":
        d0 = c("small_dim")
        peak = peak / (1 + d0 / e.m + d0 / e.k + d0 / e.n)
    bw = where(e.hbm_bytes <= c("cache_bytes"), c("cache_bandwidth"), c("bandwidth"))
    tc = e.flops_exec / peak
    tm = e.hbm_bytes / bw
    return c("overhead") + (tc + tm if combine == "sum" else fmax(tc, tm))
