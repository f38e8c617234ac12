"""Number formatting shared by every table, conclusion and check text: one spelling per kind of number."""
from __future__ import annotations

import math


def pct(x) -> float | None:
    """A fraction as percent, 2 decimals, for table cells; None (or NaN) stays None (an empty cell)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100 * x, 2)


def pct_text(x: float) -> str:
    """A fraction as '12.3%' for running text."""
    return f"{100 * x:.1f}%"


def ci_pct(ci) -> str | None:
    """A (lo, hi) interval of fractions as '[12.3, 45.6]' (percent); None stays None."""
    return None if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
