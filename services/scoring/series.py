"""The inputs every classic baseline method (EARS, CUSUM, EWMA) checks the same way, and the
sample statistics they share: what services/scoring/{ears,cusum,ewma}.py are built on."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

from services.scoring.bound import NO_BOUND, Bound

# The bound of the bucket after a history, as a function of that bucket's running count: each
# method reads the history once, however often the running bucket is scored.
Next = Callable[[float | None], Bound]


def as_counts(counts: Sequence[float], what: str = "counts", offset: int = 0) -> list[float]:
    values = [float(c) for c in counts]
    for position, value in enumerate(values):
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{what}[{offset + position}] must be a finite number >= 0, "
                f"got {counts[position]!r}"
            )
    return values


def tail(history: Sequence[float], size: int) -> list[float]:
    """The last `size` buckets of history, checked; EARS never looks further back."""
    start = max(0, len(history) - size)
    return as_counts(history[start:], "history", start)


def as_current(current: float | None) -> float | None:
    if current is None:
        return None
    value = float(current)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"current must be a finite number >= 0, got {current!r}")
    return value


def z_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return NormalDist().inv_cdf(1.0 - alpha)


def mean_sd(ref: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (divides by n-1), as R's mean() and sd()."""
    if max(ref) == min(ref):
        # Exactly flat: avoid a rounding residue in the mean turning sd=0 into 1e-17,
        # which would make the min_sigma=0 edge cases depend on float noise.
        return ref[0], 0.0
    n = len(ref)
    mean = math.fsum(ref) / n
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in ref) / (n - 1))



def defaults_of(series: Callable[..., Any]) -> dict[str, Any]:
    """The parameter defaults of a series function, which its next-bucket twin shares."""
    return {name: p.default for name, p in inspect.signature(series).parameters.items()
            if p.default is not inspect.Parameter.empty}


def no_bound(current: float | None) -> Bound:
    """The `Next` of a history too short for the method."""
    return NO_BOUND
