"""The one number format and the one duration format of what a run shows (report, verdict, summaries)."""

from __future__ import annotations

import math


def fmt(value, digits: int = 4) -> str:
    """The report's one number format: thousands separated, about `digits` significant digits, never an
    exponent (45,242 / 72.76 / 0.3098 / 0.00005); whole numbers as they are; anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e15:  # past float's exact digits (and a diverged run's 1e300): 4 figures and the power of ten
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')} × 10^{int(exponent)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """Seconds in the units a person reads: 12 ms, 4.2 s, 38 s, 2 min 36 s, 1 h 5 min."""
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
