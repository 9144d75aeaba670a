"""Poisson CUSUM as the R package `surveillance` computes it (`algo.cusum`, trans="standard"):
a running sum of standardised excesses over the training mean, alarming when it reaches h.
Formulas: shared/reference/scoring.md; checked against R in tests/scoring/test_methods.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from services.scoring.bound import NO_BOUND, Bound
from services.scoring.series import Next, as_counts, defaults_of, no_bound


def _check_cusum(k: float, h: float, m: float | None, start: int) -> int:
    """The start as an int, after checking that the parameters make sense together."""
    if int(start) != start or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    if m is None and start < 1:
        raise ValueError("cusum needs start >= 1 to estimate m from the buckets before it")
    if m is not None and (not math.isfinite(m) or m < 0):
        raise ValueError(f"m must be a finite number >= 0, got {m!r}")
    if not (math.isfinite(k) and math.isfinite(h)) or h < 0:
        raise ValueError(f"k must be finite and h finite and >= 0, got k={k!r}, h={h!r}")
    return int(start)


def _cusum_upper(m: float, s_prev: float, k: float, h: float) -> float:
    raw = math.sqrt(m) * (h + k - s_prev) + m
    # algo.cusum replaces NaN and negative bounds by 0; `not raw > 0` catches NaN and -inf.
    return 0.0 if not raw > 0 else float(math.ceil(raw))


def _cusum_z(y: float, m: float) -> float:
    if m == 0.0:
        # R computes (y-0)/0: Inf for any event, NaN for none. Keep Inf; call a zero 0.
        return 0.0 if y == 0.0 else math.inf
    return (y - m) / math.sqrt(m)


def _cusum_step(
    s_prev: float, y: float | None, m: float, k: float, h: float
) -> tuple[float, Bound]:
    upper = _cusum_upper(m, s_prev, k, h)
    if y is None:
        return s_prev, Bound(expected=m, upper=upper, alarm=False)
    s = max(0.0, s_prev + (_cusum_z(y, m) - k))
    return s, Bound(expected=m, upper=upper, alarm=s >= h)


def _cusum_run(
    values: Sequence[float], k: float, h: float, m: float | None, start: int
) -> tuple[list[Bound], float, float | None]:
    """Bounds for every bucket, the last CUSUM sum, and m (None if monitoring never began)."""
    if len(values) < start:
        return [NO_BOUND] * len(values), 0.0, None
    mean = m if m is not None else math.fsum(values[:start]) / start
    bounds, s = [NO_BOUND] * start, 0.0
    for y in values[start:]:
        s, bound = _cusum_step(s, y, mean, k, h)
        bounds.append(bound)
    return bounds, s, mean


def cusum(
    counts: Sequence[float],
    k: float = 1.04,
    h: float = 2.26,
    m: float | None = None,
    start: int = 7,
) -> list[Bound]:
    """Poisson CUSUM as surveillance::algo.cusum (trans="standard", defaults k=1.04, h=2.26).

    The first `start` buckets are the training period and get no bound; monitoring runs
    from index `start` (R's range = (start+1):n) to the end with no reset. m, the expected
    count, is the mean of the training buckets unless given. z_t = (y_t-m)/sqrt(m),
    S_t = max(0, S_{t-1} + z_t - k) with S before monitoring = 0, alarm when S_t >= h,
    upper U_t = ceil(sqrt(m)*(h+k-S_{t-1}) + m), floored at 0. For counts this means the
    alarm fires when y_t >= U_t (not >, unlike EARS).

    m = 0 (a silent training period): any positive count has z = +inf, so S and the alarm
    stay on for the rest of the series, and U_t = 0; R returns NaN there.
    """
    start = _check_cusum(k, h, m, start)
    return _cusum_run(as_counts(counts), k, h, m, start)[0]


def _cusum_next(history: Sequence[float], **params: float) -> Next:
    """The bound of the bucket after `history`, with `cusum`'s parameters and defaults."""
    return _next_after(history, **(_DEFAULTS | params))


def _next_after(history: Sequence[float], k: float, h: float, m: float | None, start: int) -> Next:
    start = _check_cusum(k, h, m, start)
    _, s, mean = _cusum_run(as_counts(history, "history"), k, h, m, start)
    if mean is None:
        return no_bound
    return lambda current: _cusum_step(s, current, mean, k, h)[1]


_DEFAULTS = defaults_of(cusum)
SERIES: dict[str, Callable[..., list[Bound]]] = {"cusum": cusum}
NEXT: dict[str, Callable[..., Next]] = {"cusum": _cusum_next}
