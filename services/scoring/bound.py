"""One bucket's verdict, shared by every scoring method (services/scoring/methods.py, counts.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bound:
    """One bucket's verdict: expected count, the alarm threshold, and whether it fired.

    `expected` and `upper` are None where the method has too little history. `p_value`
    and `warning` (p below the yellow level, red included) are set by EWMA; for the
    count-aware methods `p_value` is the chance of a count this large without a real event.
    """

    expected: float | None
    upper: float | None
    alarm: bool
    p_value: float | None = None
    warning: bool = False


NO_BOUND = Bound(expected=None, upper=None, alarm=False)
