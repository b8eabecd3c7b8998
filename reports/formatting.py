"""Human formatting of numbers with units (no torch, no pandas)."""

from __future__ import annotations

import math

_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_COUNT_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
_BINARY_UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, no exponent for everyday magnitudes."""
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    mag = math.floor(math.log10(abs(x)))
    if mag >= 6 or mag < -4:
        return f"{x:.{digits - 1}e}"
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}"


def _scaled(x: float, table, unit_suffix: str, digits: int = 3) -> str:
    for factor, prefix in table:
        if abs(x) >= factor:
            return f"{sig(x / factor, digits)} {prefix}{unit_suffix}"
    return f"{sig(x, digits)} {unit_suffix}".rstrip()


def fmt_value(x: float | None, unit: str, digits: int = 3) -> str:
    """Format a number with its unit: bytes in binary units, seconds as ms below 1 s, J as kJ/MJ, ..."""
    if x is None:
        return "n/a"
    x = float(x)
    unit = (unit or "").strip()
    if unit in ("B", "bytes", "byte"):
        for factor, name in _BINARY_UNITS:
            if abs(x) >= factor:
                return f"{sig(x / factor, digits)} {name}"
        return f"{sig(x, digits)} B"
    if unit in ("count", "params", ""):
        if unit == "" and abs(x) < 1e4:
            return sig(x, max(digits, 4))
        return _scaled(x, _COUNT_SUFFIXES, "", digits)
    if unit in ("FLOP", "FLOPs", "flop"):
        return _scaled(x, _SI_PREFIXES, "FLOP", digits)
    if unit == "s":
        if abs(x) < 1:
            return f"{sig(x * 1e3, digits)} ms"
        return f"{sig(x, digits)} s"
    if unit == "J":
        if abs(x) >= 1e6:
            return f"{sig(x / 1e6, digits)} MJ"
        if abs(x) >= 1e3:
            return f"{sig(x / 1e3, digits)} kJ"
        return f"{sig(x, digits)} J"
    if unit == "fraction":
        return f"{sig(x * 100, digits)} %"
    return f"{sig(x, digits)} {unit}"


def fmt_count(n: float) -> str:
    """An integer count with thousands separators."""
    return f"{int(round(n)):,}"


def j_to_kwh(j: float) -> float:
    return j / 3.6e6


def fmt_energy_kwh(j: float) -> str:
    kwh = j_to_kwh(j)
    if abs(kwh) < 0.01:
        return f"{sig(kwh * 1000)} Wh"
    return f"{sig(kwh)} kWh"
