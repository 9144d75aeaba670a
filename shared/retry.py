"""The one backoff rule for every retry loop in Pantau: exponential, capped, optionally jittered."""

from __future__ import annotations


def backoff_s(failures: int, initial_s: float, max_s: float, rand: float | None = None) -> float:
    """Seconds to wait after `failures` failures in a row (1 = the first): `initial_s` doubled
    per further failure, never above `max_s`. With `rand` in [0, 1) the wait is that fraction
    of it ("full jitter"), so many clients that failed together do not retry together."""
    cap = min(max_s, initial_s * 2 ** min(max(failures, 1) - 1, 60))
    return cap if rand is None else rand * cap


__all__ = ["backoff_s"]
