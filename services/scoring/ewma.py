"""The ESSENCE-style EWMA of CDC's `Rnssp` (`ewma_loop`, `alert_ewma`): an exponentially
smoothed count against the mean of a longer baseline, as a t statistic with red and yellow
p-value levels. Formulas: shared/reference/scoring.md; checked against R in
tests/scoring/test_methods.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from services.scoring.bound import NO_BOUND, Bound
from services.scoring.series import Next, as_counts, defaults_of, mean_sd, no_bound
from services.scoring.student_t import t_isf, t_sf


@dataclass(frozen=True, slots=True)
class _EwmaParams:
    baseline: int
    guard: int
    w: float
    min_baseline: int
    red_p: float
    yellow_p: float

    @property
    def first(self) -> int:
        return self.min_baseline + self.guard


def _ewma_params(
    baseline: int, guard: int, w: float, min_baseline: int, red_p: float, yellow_p: float
) -> _EwmaParams:
    if int(min_baseline) != min_baseline or min_baseline < 3:
        raise ValueError(f"min_baseline must be an integer >= 3, got {min_baseline!r}")
    if int(baseline) != baseline or baseline < min_baseline:
        raise ValueError(
            f"baseline must be an integer >= min_baseline ({min_baseline}), got {baseline!r}"
        )
    if int(guard) != guard or guard < 0:
        raise ValueError(f"guard must be an integer >= 0, got {guard!r}")
    if not 0.0 < w <= 1.0:
        raise ValueError(f"w must be in (0, 1], got {w!r}")
    if not 0.0 < red_p <= yellow_p < 1.0:
        raise ValueError(f"need 0 < red_p <= yellow_p < 1, got {red_p!r}, {yellow_p!r}")
    return _EwmaParams(int(baseline), int(guard), float(w), int(min_baseline), red_p, yellow_p)


@lru_cache(maxsize=1024)
def _ewma_sigma_terms(n: int, p: _EwmaParams) -> tuple[float, float, float, float]:
    """(smoothing correction, minimum sigma, additive constant, red t threshold) for n."""
    w, g, df = p.w, p.guard, n - 1
    # Variance of (smoothed value - baseline mean) relative to the raw variance, for a
    # baseline of n buckets ending g+1 buckets before the scored one.
    correction = math.sqrt(
        w / (2.0 - w) + 1.0 / n - 2.0 * (1.0 - w) ** (g + 1) * ((1.0 - (1.0 - w) ** n) / n)
    )
    ucl_warning = round(t_isf(p.yellow_p, df), 5)
    min_sigma = (w / ucl_warning) * (1.0 + 0.5 * (1.0 - w) ** 2)
    constant = (0.1289 - (0.2414 - 0.1826 * (1.0 - w) ** 4) * math.log(10 * 0.05)) * (
        w / ucl_warning
    )
    return correction, min_sigma, constant, t_isf(p.red_p, df)


def _ewma_step(
    values: Sequence[float], i: int, z_prev: float, current: float | None, p: _EwmaParams
) -> tuple[float, Bound]:
    """Score bucket i (i >= p.first) given the smoothed value of bucket i-1."""
    n = min(i - p.guard, p.baseline)
    mean, sd = mean_sd(values[i - p.guard - n : i - p.guard])
    correction, min_sigma, constant, t_red = _ewma_sigma_terms(n, p)
    sigma = max(min_sigma, sd * correction + constant)
    # The count at which the smoothed statistic reaches the red t threshold.
    upper = (mean + t_red * sigma - (1.0 - p.w) * z_prev) / p.w
    if current is None:
        return z_prev, Bound(expected=mean, upper=upper, alarm=False)
    z = p.w * current + (1.0 - p.w) * z_prev
    statistic = (z - mean) / sigma
    ucl_alert = round(t_red, 5)
    if abs(statistic) > ucl_alert:
        # ESSENCE caps an outlying smoothed value so one spike does not mask the next days.
        z = mean + math.copysign(ucl_alert, statistic) * sigma
    p_value = t_sf(statistic, n - 1)
    return z, Bound(
        expected=mean,
        upper=upper,
        alarm=p_value < p.red_p,
        p_value=p_value,
        warning=p_value < p.yellow_p,
    )


def _ewma_run(values: Sequence[float], p: _EwmaParams) -> tuple[list[Bound], float | None]:
    """Bounds for every bucket and the smoothed value of the last one (None if empty)."""
    bounds: list[Bound] = []
    z: float | None = None
    for i, y in enumerate(values):
        if z is None:
            z, bound = y, NO_BOUND
        elif i < p.first:
            z, bound = p.w * y + (1.0 - p.w) * z, NO_BOUND
        else:
            z, bound = _ewma_step(values, i, z, y, p)
        bounds.append(bound)
    return bounds, z


def ewma(
    counts: Sequence[float],
    baseline: int = 28,
    guard: int = 2,
    w: float = 0.4,
    min_baseline: int = 11,
    red_p: float = 0.01,
    yellow_p: float = 0.05,
) -> list[Bound]:
    """ESSENCE EWMA, one smoother, following Rnssp's ewma_loop (alert_ewma).

    Smoothed Z_0 = y_0, Z_i = w*y_i + (1-w)*Z_{i-1}. Bucket i >= min_baseline+guard is
    scored against the n = min(i-guard, baseline) buckets ending guard+1 before it:
      expected = mean, sd = sample sd (n-1), df = n-1,
      sigma = max(min_sigma, sd*c + constant) with
        c = sqrt(w/(2-w) + 1/n - 2(1-w)^(g+1) (1-(1-w)^n)/n)   (variance of Z - mean),
        min_sigma = (w/ucl_y)(1 + 0.5(1-w)^2),
        constant = (0.1289 - (0.2414 - 0.1826(1-w)^4) ln(0.5)) (w/ucl_y),
        ucl_y = qt(1-yellow_p, df) and ucl_r = qt(1-red_p, df), both rounded to 5 decimals;
      statistic = (Z_i - mean)/sigma, p_value = 1 - pt(statistic, df);
      alarm (red) when p < red_p, warning when p < yellow_p (red included);
      if |statistic| > ucl_r, Z_i is reset to mean +/- ucl_r*sigma before smoothing on.
    `upper` is the count that would put p exactly at red_p (with the unrounded quantile):
    alarm iff count > upper, up to float rounding. It can be negative after a long surge.

    Differences from Rnssp: one smoother (Rnssp also runs w2=0.9 and keeps the smaller p);
    the count-data minimum sigma and min_baseline=11 of the earlier Rnssp/ESSENCE code (the
    current Rnssp uses 7 and a floor aimed at percentages); no rescaling of series below 1.
    """
    params = _ewma_params(baseline, guard, w, min_baseline, red_p, yellow_p)
    return _ewma_run(as_counts(counts), params)[0]


def _ewma_next(history: Sequence[float], **params: float) -> Next:
    """The bound of the bucket after `history`, with `ewma`'s parameters and defaults."""
    p = _ewma_params(**(_DEFAULTS | params))
    values = as_counts(history, "history")
    _, z = _ewma_run(values, p)
    if z is None or len(values) < p.first:
        return no_bound
    return lambda current: _ewma_step(values, len(values), z, current, p)[1]


_DEFAULTS = defaults_of(ewma)
SERIES: dict[str, Callable[..., list[Bound]]] = {"ewma": ewma}
NEXT: dict[str, Callable[..., Next]] = {"ewma": _ewma_next}
