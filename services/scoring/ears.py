"""EARS C1, C2 and C3 as the R package `surveillance` computes them (`earsC`): a bucket's count
against the mean and standard deviation of the buckets just before it (C2 and C3 leaving a
guard band). Formulas: shared/reference/scoring.md; checked against R in
tests/scoring/test_methods.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from services.scoring.bound import NO_BOUND, Bound
from services.scoring.series import Next, as_counts, mean_sd, no_bound, tail, z_alpha

# EARS C2/C3 leave two buckets between the reference window and the scored bucket, so a
# surge that has already begun does not inflate its own baseline.
_EARS_GUARD = 2


def _check_ears(baseline: int, min_sigma: float) -> int:
    """The baseline as an int, after earsC's own limits on baseline and min_sigma."""
    if int(baseline) != baseline or baseline < 3:
        raise ValueError(f"baseline must be an integer >= 3, got {baseline!r}")
    if not math.isfinite(min_sigma) or min_sigma < 0:
        raise ValueError(f"min_sigma must be a finite number >= 0, got {min_sigma!r}")
    return int(baseline)


def _ears_ref(values: Sequence[float], t: int, baseline: int, guard: int) -> Sequence[float]:
    end = t - guard
    return values[end - baseline : end]


def _ears_c12_at(values: Sequence[float], t: int, current: float | None, baseline: int, z: float, min_sigma: float,
                 guard: int) -> Bound:
    """C1 (guard 0) or C2 (guard 2) bound for bucket t, from values[:t] only."""
    if t - guard - baseline < 0:
        return NO_BOUND
    mean, sd = mean_sd(_ears_ref(values, t, baseline, guard))
    upper = mean + z * max(sd, min_sigma)
    return Bound(expected=mean, upper=upper, alarm=current is not None and current > upper)


def _c2_statistic(values: Sequence[float], i: int, baseline: int, min_sigma: float) -> float:
    mean, sd = mean_sd(_ears_ref(values, i, baseline, _EARS_GUARD))
    sigma = max(sd, min_sigma)
    diff = values[i] - mean
    if sigma == 0.0:
        # R divides by zero here (Inf, or NaN for 0/0). Keep the infinities, which say
        # "a rise over a perfectly flat reference", and call no change no signal.
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / sigma


def _ears_c3_parts(
    values: Sequence[float], t: int, baseline: int, z: float, min_sigma: float
) -> tuple[float, float] | None:
    """What the C3 bound of bucket t adds to its count, and the C2 reference mean; None
    without enough history. Uses the C2 statistics of buckets t-2 and t-1."""
    if t - 2 - _EARS_GUARD - baseline < 0:
        return None
    lag2 = max(0.0, _c2_statistic(values, t - 2, baseline, min_sigma) - 1.0)
    lag1 = max(0.0, _c2_statistic(values, t - 1, baseline, min_sigma) - 1.0)
    mean, sd = mean_sd(_ears_ref(values, t, baseline, _EARS_GUARD))
    sigma = max(sd, min_sigma)
    # With no spread at all the bound is the count itself (what R returns for any finite
    # lag); this also avoids 0 * (z - inf), which R turns into NaN.
    spread = 0.0 if sigma == 0.0 else sigma * (z - (lag2 + lag1))
    return spread, mean


def _ears_c3_bound(parts: tuple[float, float] | None, current: float | None) -> Bound:
    if parts is None:
        return NO_BOUND
    if current is None:
        raise ValueError(
            "ears-c3 needs the current count: surveillance::earsC computes its upper bound "
            "as y_t + sigma*(z - lags), so pass current="
        )
    spread, mean = parts
    upper = max(0.0, current + spread)
    return Bound(expected=mean, upper=upper, alarm=current > upper)


def _ears_c3_at(values: Sequence[float], t: int, current: float | None, baseline: int, z: float,
                min_sigma: float) -> Bound:
    """C3 bound for bucket t."""
    return _ears_c3_bound(_ears_c3_parts(values, t, baseline, z, min_sigma), current)


def ears_c1(
    counts: Sequence[float], baseline: int = 7, alpha: float = 0.001, min_sigma: float = 0.0
) -> list[Bound]:
    """EARS C1: reference is the previous `baseline` buckets; first bound at index `baseline`."""
    baseline = _check_ears(baseline, min_sigma)
    z, values = z_alpha(alpha), as_counts(counts)
    return [_ears_c12_at(values, t, y, baseline, z, min_sigma, 0) for t, y in enumerate(values)]


def ears_c2(
    counts: Sequence[float], baseline: int = 7, alpha: float = 0.001, min_sigma: float = 0.0
) -> list[Bound]:
    """EARS C2: like C1 with a two-bucket guard band; first bound at index `baseline`+2."""
    baseline = _check_ears(baseline, min_sigma)
    z, values = z_alpha(alpha), as_counts(counts)
    return [
        _ears_c12_at(values, t, y, baseline, z, min_sigma, _EARS_GUARD)
        for t, y in enumerate(values)
    ]


def ears_c3(
    counts: Sequence[float], baseline: int = 7, alpha: float = 0.001, min_sigma: float = 0.0
) -> list[Bound]:
    """EARS C3 exactly as surveillance::earsC computes it; first bound at index `baseline`+4.

    U_t = max(0, y_t + s_t*(z - [max(0, C2_{t-2}-1) + max(0, C2_{t-1}-1)])) with
    s_t = max(sd(C2 reference of t), min_sigma); alarm when y_t > U_t. Because U_t moves
    with y_t, the alarm really says "the previous two C2 statistics add up past z and
    y_t > 0". `expected` is the mean of the C2 reference of t.

    Where R would divide by zero (min_sigma = 0 and a flat reference): a C2 statistic is
    +inf above the flat mean, -inf below it and 0 on it (R: Inf, -Inf, NaN); if s_t itself
    is 0 the bound is y_t, no alarm. So with an infinite lag and s_t > 0, U_t = 0 as in R;
    only where R yields NaN/NA (a 0/0 statistic, or s_t = 0 with an infinite lag) do we
    give a number instead.

    Note: alpha defaults to 0.001 here (shared/reference/scoring.md); earsC picks 0.025
    for C3 when `alpha` is left out of its control list, so pass alpha=0.025 to compare.
    """
    baseline = _check_ears(baseline, min_sigma)
    z, values = z_alpha(alpha), as_counts(counts)
    return [_ears_c3_at(values, t, y, baseline, z, min_sigma) for t, y in enumerate(values)]


def _ears_next(guard: int | None) -> Callable[..., Next]:
    def prepare(
        history: Sequence[float],
        baseline: int = 7,
        alpha: float = 0.001,
        min_sigma: float = 0.0,
    ) -> Next:
        baseline = _check_ears(baseline, min_sigma)
        z = z_alpha(alpha)
        if guard is None:
            values = tail(history, baseline + 2 + _EARS_GUARD)
            parts = _ears_c3_parts(values, len(values), baseline, z, min_sigma)
            return lambda current: _ears_c3_bound(parts, current)
        values = tail(history, baseline + guard)
        b = _ears_c12_at(values, len(values), None, baseline, z, min_sigma, guard)
        if b is NO_BOUND:
            return no_bound
        return lambda current: Bound(b.expected, b.upper, alarm=current is not None and current > b.upper)

    return prepare


SERIES: dict[str, Callable[..., list[Bound]]] = {"ears-c1": ears_c1, "ears-c2": ears_c2, "ears-c3": ears_c3}
NEXT: dict[str, Callable[..., Next]] = {
    "ears-c1": _ears_next(0),
    "ears-c2": _ears_next(_EARS_GUARD),
    "ears-c3": _ears_next(None),
}
