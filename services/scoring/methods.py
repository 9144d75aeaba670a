"""Statistical baselines that decide whether a bucket's count is improbably high.

Pure functions over a list of per-bucket counts (oldest first, empty buckets given as 0):
EARS C1/C2/C3 and CUSUM as the R package `surveillance` computes them (`earsC`,
`algo.cusum` with `trans="standard"`), and the ESSENCE-style EWMA of CDC's `Rnssp`.
Each series function returns one `Bound` per input bucket; `upper_bound` computes the
bound of the *next* bucket from history alone, for scoring a running bucket live.
The formulas are those of shared/reference/scoring.md; each docstring names where it departs
from the R code (only where R itself returns NaN/NA, or where a default differs).

Longer than ~400 lines on purpose: every method is checked against the same R oracle
(tests/scoring/test_methods.py) and shares the series/next-bucket shape and its helpers here,
so a reader compares the formulas side by side; the count methods live in counts.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import TypeVar

from services.scoring.bound import NO_BOUND, Bound

METHODS: tuple[str, ...] = (
    "ears-c1", "ears-c2", "ears-c3", "cusum", "ewma", "poisson", "negbin", "glrpois", "glr",
)

# EARS C2/C3 leave two buckets between the reference window and the scored bucket, so a
# surge that has already begun does not inflate its own baseline.
_EARS_GUARD = 2




# --------------------------------------------------------------------------- checks


def _as_counts(counts: Sequence[float], what: str = "counts", offset: int = 0) -> list[float]:
    values = [float(c) for c in counts]
    for position, value in enumerate(values):
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{what}[{offset + position}] must be a finite number >= 0, "
                f"got {counts[position]!r}"
            )
    return values


def _tail(history: Sequence[float], size: int) -> list[float]:
    """The last `size` buckets of history, checked; EARS never looks further back."""
    start = max(0, len(history) - size)
    return _as_counts(history[start:], "history", start)


def _as_current(current: float | None) -> float | None:
    if current is None:
        return None
    value = float(current)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"current must be a finite number >= 0, got {current!r}")
    return value


def _z_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return NormalDist().inv_cdf(1.0 - alpha)


def _check_ears(baseline: int, min_sigma: float) -> int:
    """The baseline as an int, after earsC's own limits on baseline and min_sigma."""
    if int(baseline) != baseline or baseline < 3:
        raise ValueError(f"baseline must be an integer >= 3, got {baseline!r}")
    if not math.isfinite(min_sigma) or min_sigma < 0:
        raise ValueError(f"min_sigma must be a finite number >= 0, got {min_sigma!r}")
    return int(baseline)


def _mean_sd(ref: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (divides by n-1), as R's mean() and sd()."""
    if max(ref) == min(ref):
        # Exactly flat: avoid a rounding residue in the mean turning sd=0 into 1e-17,
        # which would make the min_sigma=0 edge cases depend on float noise.
        return ref[0], 0.0
    n = len(ref)
    mean = math.fsum(ref) / n
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in ref) / (n - 1))


# --------------------------------------------------------------------------- EARS


def _ears_ref(values: Sequence[float], t: int, baseline: int, guard: int) -> Sequence[float]:
    end = t - guard
    return values[end - baseline : end]


def _ears_c12_at(
    values: Sequence[float],
    t: int,
    current: float | None,
    baseline: int,
    z: float,
    min_sigma: float,
    guard: int,
) -> Bound:
    """C1 (guard 0) or C2 (guard 2) bound for bucket t, from values[:t] only."""
    if t - guard - baseline < 0:
        return NO_BOUND
    mean, sd = _mean_sd(_ears_ref(values, t, baseline, guard))
    upper = mean + z * max(sd, min_sigma)
    return Bound(expected=mean, upper=upper, alarm=current is not None and current > upper)


def _c2_statistic(values: Sequence[float], i: int, baseline: int, min_sigma: float) -> float:
    mean, sd = _mean_sd(_ears_ref(values, i, baseline, _EARS_GUARD))
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
    mean, sd = _mean_sd(_ears_ref(values, t, baseline, _EARS_GUARD))
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


def _ears_c3_at(
    values: Sequence[float],
    t: int,
    current: float | None,
    baseline: int,
    z: float,
    min_sigma: float,
) -> Bound:
    """C3 bound for bucket t."""
    return _ears_c3_bound(_ears_c3_parts(values, t, baseline, z, min_sigma), current)


def ears_c1(
    counts: Sequence[float], baseline: int = 7, alpha: float = 0.001, min_sigma: float = 0.0
) -> list[Bound]:
    """EARS C1: reference is the previous `baseline` buckets; first bound at index `baseline`."""
    baseline = _check_ears(baseline, min_sigma)
    z, values = _z_alpha(alpha), _as_counts(counts)
    return [_ears_c12_at(values, t, y, baseline, z, min_sigma, 0) for t, y in enumerate(values)]


def ears_c2(
    counts: Sequence[float], baseline: int = 7, alpha: float = 0.001, min_sigma: float = 0.0
) -> list[Bound]:
    """EARS C2: like C1 with a two-bucket guard band; first bound at index `baseline`+2."""
    baseline = _check_ears(baseline, min_sigma)
    z, values = _z_alpha(alpha), _as_counts(counts)
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
    z, values = _z_alpha(alpha), _as_counts(counts)
    return [_ears_c3_at(values, t, y, baseline, z, min_sigma) for t, y in enumerate(values)]


# --------------------------------------------------------------------------- CUSUM


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
    return _cusum_run(_as_counts(counts), k, h, m, start)[0]


# --------------------------------------------------------------------------- Student t


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), evaluated with the modified Lentz method."""
    tiny, eps = 1e-300, 1e-16
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for j in range(1, 10_000):
        # Even term d_{2j} = j(b-j)x / ((a+2j-1)(a+2j)); odd term
        # d_{2j+1} = -(a+j)(a+b+j)x / ((a+2j)(a+2j+1)).
        for numerator in (
            j * (b - j) * x / ((a + 2 * j - 1.0) * (a + 2 * j)),
            -(a + j) * (a + b + j) * x / ((a + 2 * j) * (a + 2 * j + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            delta = c * d
            result *= delta
        if abs(delta - 1.0) < eps:
            return result
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _regularized_beta(a: float, b: float, x: float, one_minus_x: float) -> float:
    """I_x(a, b); 1-x is passed separately so callers can supply it without cancellation."""
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    log_front = (
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log(one_minus_x)
    )
    front = math.exp(log_front)
    # The fraction converges fast only left of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, one_minus_x) / b


def t_sf(x: float, df: float) -> float:
    """Upper tail P(T > x) of Student's t with df degrees of freedom (R: 1 - pt(x, df))."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if math.isnan(x):
        return math.nan
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    # P(|T| > |x|) = I_{df/(df+x^2)}(df/2, 1/2).
    denominator = df + x * x
    two_sided = _regularized_beta(df / 2.0, 0.5, df / denominator, x * x / denominator)
    return 0.5 * two_sided if x > 0 else 1.0 - 0.5 * two_sided


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t (R: pt(x, df)); by symmetry it is P(T > -x)."""
    return t_sf(-x, df)


@lru_cache(maxsize=1024)
def t_isf(p: float, df: float) -> float:
    """The x with P(T > x) = p (R: qt(1 - p, df)), by bisection to full double precision."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be strictly between 0 and 1, got {p!r}")
    if p > 0.5:
        return -t_isf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_sf(mid, df) > p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- EWMA


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
    mean, sd = _mean_sd(values[i - p.guard - n : i - p.guard])
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
    return _ewma_run(_as_counts(counts), params)[0]


# --------------------------------------------------------------------------- dispatch


# Each `_*_next` reads the history once and returns the bound of the next bucket as a
# function of its running count, so a history's work is done once however often it is asked.
Next = Callable[[float | None], Bound]


def _no_bound(current: float | None) -> Bound:
    return NO_BOUND


def _ears_next(guard: int | None) -> Callable[..., Next]:
    def prepare(
        history: Sequence[float],
        baseline: int = 7,
        alpha: float = 0.001,
        min_sigma: float = 0.0,
    ) -> Next:
        baseline = _check_ears(baseline, min_sigma)
        z = _z_alpha(alpha)
        if guard is None:
            values = _tail(history, baseline + 2 + _EARS_GUARD)
            parts = _ears_c3_parts(values, len(values), baseline, z, min_sigma)
            return lambda current: _ears_c3_bound(parts, current)
        values = _tail(history, baseline + guard)
        b = _ears_c12_at(values, len(values), None, baseline, z, min_sigma, guard)
        if b is NO_BOUND:
            return _no_bound
        return lambda current: Bound(b.expected, b.upper, alarm=current is not None and current > b.upper)

    return prepare


def _cusum_next(
    history: Sequence[float],
    k: float = 1.04,
    h: float = 2.26,
    m: float | None = None,
    start: int = 7,
) -> Next:
    start = _check_cusum(k, h, m, start)
    _, s, mean = _cusum_run(_as_counts(history, "history"), k, h, m, start)
    if mean is None:
        return _no_bound
    return lambda current: _cusum_step(s, current, mean, k, h)[1]


def _ewma_next(
    history: Sequence[float],
    baseline: int = 28,
    guard: int = 2,
    w: float = 0.4,
    min_baseline: int = 11,
    red_p: float = 0.01,
    yellow_p: float = 0.05,
) -> Next:
    p = _ewma_params(baseline, guard, w, min_baseline, red_p, yellow_p)
    values = _as_counts(history, "history")
    _, z = _ewma_run(values, p)
    if z is None or len(values) < p.first:
        return _no_bound
    return lambda current: _ewma_step(values, len(values), z, current, p)[1]


_SERIES: dict[str, Callable[..., list[Bound]]] = {
    "ears-c1": ears_c1,
    "ears-c2": ears_c2,
    "ears-c3": ears_c3,
    "cusum": cusum,
    "ewma": ewma,
}
_NEXT: dict[str, Callable[..., Next]] = {
    "ears-c1": _ears_next(0),
    "ears-c2": _ears_next(_EARS_GUARD),
    "ears-c3": _ears_next(None),
    "cusum": _cusum_next,
    "ewma": _ewma_next,
}

# The count-aware methods live in their own module and register here, after Bound exists.
from services.scoring import counts as _counts  # noqa: E402

_SERIES.update(_counts.SERIES)
_NEXT.update(_counts.NEXT)


_Fn = TypeVar("_Fn", bound=Callable[..., object])


def _lookup(table: dict[str, _Fn], method: str) -> _Fn:
    try:
        return table[method]
    except KeyError:
        raise ValueError(
            f"unknown scoring method {method!r}; expected one of {', '.join(METHODS)}"
        ) from None


def score_series(method: str, counts: Sequence[float], **params: float) -> list[Bound]:
    """One Bound per bucket of `counts` (oldest first) with the named method and params."""
    return _lookup(_SERIES, method)(counts, **params)


def upper_bound(
    method: str, history: Sequence[float], current: float | None = None, **params: float
) -> Bound:
    """The bound of the bucket after `history` (oldest first), for scoring it while it runs.

    History alone decides `expected` and `upper`, except for EARS C3. Pass `current` (the
    running count) to get `alarm` (and for EWMA `p_value`/`warning`) exactly as the series
    functions give them; without it alarm is False. EARS C3 requires `current`, because
    earsC computes its upper bound from the bucket's own count. Equals
    score_series(method, history + [current])[-1].
    EARS reads (and checks) only the tail it needs: `baseline` buckets for C1, +2 for C2,
    +4 for C3. CUSUM and EWMA replay the whole history, since S and the smoothed value
    depend on all of it. To bound that cost a caller may pass a recent window for EWMA (the
    first value's weight decays as (1-w)^n); for CUSUM m comes from the first `start`
    buckets given, so pass the history from the training period on, or pass m itself.
    """
    _lookup(_NEXT, method)
    value = _as_current(current)
    return _next_of(method, tuple(history), tuple(sorted(params.items())))(value)


@lru_cache(maxsize=8192)
def _next_of(method: str, history: tuple[float, ...], params: tuple[tuple[str, float], ...]) -> Next:
    """A closed history changes once per bucket, while its running bucket is scored on every
    batch: its bound is computed once (CUSUM and EWMA replay the whole history)."""
    return _NEXT[method](history, **dict(params))
