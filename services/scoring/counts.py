"""Count-aware methods for sparse, clustered report counts: exact upper bounds and a GLR detector.

EARS assumes near-normal counts over a week; reports per kabupaten/kota and category are a
handful a month, and they come in clusters. These methods model the counts as counts:

- `poisson`: the Bayesian predictive upper bound of surveillance's `algo.bayes` (a Poisson rate
  with Jeffreys' prior, so the next bucket is negative binomial: size S+1/2, prob n/(n+1)),
  from a longer reference of `baseline` buckets ending `guard` buckets before the scored one.
- `negbin`: the same predictive mean with its variance widened by the overdispersion
  phi = variance/mean of the reference, floored at 1 (never narrower than Poisson).
- `glrpois`: surveillance's `algo.glrpois` (GLR for a rise in a Poisson mean, window `window`,
  reset after each alarm) with mu0 of each bucket its own reference mean (S+1/2)/n.
- `glr`: the same statistic divided by the scored bucket's phi (quasi-Poisson), so clustered
  counts do not page by their clustering alone. Sees a spike and a surge that builds over days.

Pure functions with the interface of services/scoring/methods.py: one `Bound` per bucket,
`p_value` the chance of a count (or window sum) at least this large without a real event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from services.scoring.bound import NO_BOUND, Bound

# R's qnbinom accepts a cumulative probability within this fuzz of the target.
_FUZZ = 1.0 - 64 * 2.220446049250313e-16


def _check(baseline: int, guard: int) -> tuple[int, int]:
    if int(baseline) != baseline or baseline < 3:
        raise ValueError(f"baseline must be an integer >= 3, got {baseline!r}")
    if int(guard) != guard or guard < 0:
        raise ValueError(f"guard must be an integer >= 0, got {guard!r}")
    return int(baseline), int(guard)


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


def _values(counts: Sequence[float]) -> list[float]:
    values = [float(c) for c in counts]
    for i, v in enumerate(values):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"counts[{i}] must be a finite number >= 0, got {counts[i]!r}")
    return values


# --------------------------------------------------------------------------- distributions


def _nb_pmf0(size: float, mu: float) -> tuple[float, float]:
    """P(X=0) and the ratio mu/(size+mu) of NB(size, mean mu); size=inf is Poisson."""
    if math.isinf(size):
        return math.exp(-mu), math.inf
    q = mu / (size + mu)
    return math.exp(size * math.log1p(-q)), q


@lru_cache(maxsize=65536)
def nb_quantile(p: float, size: float, mu: float) -> int:
    """The smallest k with P(X <= k) >= p for X ~ NB(size, mean mu) (R: qnbinom(p, size,
    mu=mu)); size = inf gives the Poisson quantile (R: qpois)."""
    if mu <= 0.0:
        return 0
    if mu > 1e4:  # the pmf underflows; a normal approximation is close there
        var = mu if math.isinf(size) else mu + mu * mu / size
        return max(0, math.ceil(mu + _z(p) * math.sqrt(var) - 0.5))
    pk, q = _nb_pmf0(size, mu)
    cdf, k, target = pk, 0, p * _FUZZ
    while cdf < target:
        pk *= mu / (k + 1) if math.isinf(size) else (k + size) / (k + 1) * q
        k += 1
        cdf += pk
        if pk == 0.0 and k > mu:
            break
    return k


def nb_sf(x: float, size: float, mu: float) -> float:
    """P(X >= x) for X ~ NB(size, mean mu) and real x (the count's integer ceiling)."""
    k = math.ceil(x)
    if k <= 0:
        return 1.0
    if mu <= 0.0:
        return 0.0
    if mu > 1e4:
        var = mu if math.isinf(size) else mu + mu * mu / size
        return 0.5 * math.erfc((k - 0.5 - mu) / math.sqrt(2 * var))
    pk, q = _nb_pmf0(size, mu)
    cdf = pk
    for j in range(k - 1):
        pk *= mu / (j + 1) if math.isinf(size) else (j + size) / (j + 1) * q
        cdf += pk
    return max(0.0, 1.0 - cdf)


def _z(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


# --------------------------------------------------------------------------- the reference


def _reference(values: Sequence[float], t: int, baseline: int, guard: int) -> Sequence[float] | None:
    end = t - guard
    if end - baseline < 0:
        return None
    return values[end - baseline:end]


def _phi(total: float, squares: float, n: int) -> float:
    """Overdispersion of a reference from its sum and sum of squares: sample variance over
    mean, at least 1."""
    if total <= 0.0:
        return 1.0
    mean = total / n
    var = max(0.0, squares - total * mean) / (n - 1)
    return max(1.0, var / mean)


def predictive(ref: Sequence[float], dispersed: bool) -> tuple[float, float, float]:
    """(expected, size, mean) of the next bucket: the reference mean, and the NB predictive
    of algo.bayes (size S+1/2, mean (S+1/2)/n), widened by phi when `dispersed`."""
    n, total = len(ref), math.fsum(ref)
    mu = (total + 0.5) / n
    size = total + 0.5
    if dispersed:
        phi = _phi(total, math.fsum(x * x for x in ref), n)
        if phi > 1.0:
            # Predictive variance phi * mu * (1 + 1/n); NB variance mu + mu^2/size.
            size = mu / (phi * (1.0 + 1.0 / n) - 1.0)
    return total / n, size, mu


def _bound_at(values: Sequence[float], t: int, current: float | None, baseline: int, guard: int,
              alpha: float, dispersed: bool) -> Bound:
    ref = _reference(values, t, baseline, guard)
    if ref is None:
        return NO_BOUND
    expected, size, mu = _cached_predictive(tuple(ref), dispersed)
    upper = float(nb_quantile(1.0 - alpha, size, mu))
    if current is None:
        return Bound(expected, upper, False)
    return Bound(expected, upper, current > upper, p_value=nb_sf(current, size, mu))


@lru_cache(maxsize=4096)
def _cached_predictive(ref: tuple[float, ...], dispersed: bool) -> tuple[float, float, float]:
    return predictive(ref, dispersed)


def poisson_bound(counts: Sequence[float], baseline: int = 28, guard: int = 2,
                  alpha: float = 0.001) -> list[Bound]:
    """Exact predictive upper bound per bucket (algo.bayes with a guard band); alarm when the
    count exceeds it. First bound at index baseline+guard."""
    baseline, guard = _check(baseline, guard)
    alpha, values = _check_alpha(alpha), _values(counts)
    return [_bound_at(values, t, y, baseline, guard, alpha, False) for t, y in enumerate(values)]


def negbin_bound(counts: Sequence[float], baseline: int = 28, guard: int = 2,
                 alpha: float = 0.001) -> list[Bound]:
    """As `poisson_bound`, with the predictive widened by the reference's overdispersion."""
    baseline, guard = _check(baseline, guard)
    alpha, values = _check_alpha(alpha), _values(counts)
    return [_bound_at(values, t, y, baseline, guard, alpha, True) for t, y in enumerate(values)]


# --------------------------------------------------------------------------- GLR


def _lr(total: float, mu0: float) -> float:
    """Poisson log likelihood ratio of the best rise in the mean over a window: observed
    `total` against expected `mu0`; 0 when nothing rose."""
    if total <= mu0:
        return 0.0
    return total * math.log(total / mu0) - (total - mu0)


@lru_cache(maxsize=65536)  # sparse counts repeat the same window sums and references endlessly
def _needed(total: float, mu0: float, level: float) -> float:
    """The window total at which _lr reaches `level` (> 0): Newton from above, as the
    function is convex and increasing past mu0."""
    x = max(mu0 * math.e, mu0 + level, 1e-9)
    for _ in range(100):
        f = x * math.log(x / mu0) - (x - mu0) - level
        step = f / math.log(x / mu0)
        x -= step
        if abs(step) < 1e-12 * max(1.0, x):
            break
    return x


def _check_glr(window: int, threshold: float) -> int:
    if int(window) != window or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    return int(window)


class _Glr:
    """The GLR replayed over a series: each bucket's mu0 from its own reference, the
    statistic over the last `window` buckets since the last alarm."""

    __slots__ = ("values", "baseline", "guard", "window", "threshold", "dispersed", "mu0", "start", "stat",
                 "sums", "squares")

    def __init__(self, values: list[float], baseline: int, guard: int, window: int, threshold: float,
                 dispersed: bool):
        self.values, self.baseline, self.guard = values, baseline, guard
        self.window, self.threshold, self.dispersed = window, threshold, dispersed
        self.mu0: list[float | None] = []
        self.start = 0   # first bucket the statistic may look at (after the last alarm)
        self.stat = 0.0  # the statistic of the last bucket scored, before the division by phi
        # Prefix sums of the counts and their squares: each bucket's reference in O(1), with
        # no copy of it kept (a replay per cell and day, for thousands of cells).
        self.sums, self.squares = [0.0], [0.0]
        for v in values:
            self.sums.append(self.sums[-1] + v)
            self.squares.append(self.squares[-1] + v * v)

    def _ref(self, t: int) -> tuple[float, float] | None:
        """Sum and sum of squares of bucket t's reference, None without enough history."""
        end = t - self.guard
        if end - self.baseline < 0:
            return None
        start = end - self.baseline
        return self.sums[end] - self.sums[start], self.squares[end] - self.squares[start]

    def _mu0(self, t: int) -> float | None:
        ref = self._ref(t)
        return None if ref is None else (ref[0] + 0.5) / self.baseline

    def prepare(self, t: int) -> "_Running | None":
        """What bucket t's verdict needs from values[:t]: its windows and the alarm level."""
        while len(self.mu0) <= t:
            self.mu0.append(self._mu0(len(self.mu0)))
        if self.mu0[t] is None:
            self.start = t + 1
            return None
        total, squares = self._ref(t)  # type: ignore[misc]
        phi = _phi(total, squares, self.baseline) if self.dispersed else 1.0
        windows, past, mu_sum = [], 0.0, 0.0
        for k in range(t, max(self.start, t - self.window + 1) - 1, -1):
            mu_sum += self.mu0[k]  # type: ignore[operator]
            if k < t:
                past += self.values[k]
            windows.append((past, mu_sum))
        return _Running(total / self.baseline, phi, self.threshold * phi, windows)

    def score(self, t: int, current: float | None, with_upper: bool = True) -> Bound:
        """Bound of bucket t given values[:t] and `current` as its count; an alarm moves the
        start of later windows past t. Without `with_upper` (a replay) `upper` is left at 0."""
        running = self.prepare(t)
        if running is None:
            return NO_BOUND
        bound = running.verdict(current, running.upper() if with_upper else 0.0)
        self.stat = running.stat
        if bound.alarm:
            self.start = t + 1
        return bound


class _Running:
    """The windows of one bucket: (sum of the counts before it, sum of mu0) per window, the
    scored bucket's own count to be added."""

    __slots__ = ("expected", "phi", "level", "windows", "stat")

    def __init__(self, expected: float, phi: float, level: float, windows: list[tuple[float, float]]):
        self.expected, self.phi, self.level, self.windows = expected, phi, level, windows
        self.stat = 0.0

    def upper(self) -> float:
        """The count at which the bucket alarms: the least over its windows."""
        return max(0.0, min(_needed(past, mu, self.level) - past for past, mu in self.windows))

    def verdict(self, current: float | None, upper: float) -> Bound:
        if current is None:
            return Bound(self.expected, upper, False)
        best, best_sum, best_mu = 0.0, current, self.windows[0][1]
        for past, mu in self.windows:
            stat = _lr(past + current, mu)
            if stat > best:
                best, best_sum, best_mu = stat, past + current, mu
        self.stat = best
        size = best_mu / (self.phi - 1.0) if self.phi > 1.0 else math.inf
        return Bound(self.expected, upper, best >= self.level, p_value=nb_sf(best_sum, size, best_mu))


def _glr_series(counts: Sequence[float], baseline: int, guard: int, window: int, threshold: float,
                dispersed: bool) -> list[Bound]:
    baseline, guard = _check(baseline, guard)
    window = _check_glr(window, threshold)
    values = _values(counts)
    glr = _Glr(values, baseline, guard, window, float(threshold), dispersed)
    return [glr.score(t, y) for t, y in enumerate(values)]


def glrpois_statistics(counts: Sequence[float], baseline: int = 28, guard: int = 2, window: int = 7,
                       threshold: float = 7.0) -> list[float]:
    """The GLR statistic of every bucket (algo.glrpois with ret "value"), 0 without a bound."""
    baseline, guard = _check(baseline, guard)
    window = _check_glr(window, threshold)
    values = _values(counts)
    glr_ = _Glr(values, baseline, guard, window, float(threshold), False)
    stats = []
    for t, y in enumerate(values):
        glr_.stat = 0.0
        glr_.score(t, y)
        stats.append(glr_.stat)
    return stats


def glrpois(counts: Sequence[float], baseline: int = 28, guard: int = 2, window: int = 7,
            threshold: float = 7.0) -> list[Bound]:
    """surveillance::algo.glrpois (change "intercept", dir "inc", Mtilde 1, M = window,
    c.ARL = threshold), mu0 of bucket t = (sum of its reference + 1/2)/baseline. Alarm when
    the statistic reaches the threshold; the statistic restarts after each alarm. `upper` is
    the count of the bucket at which it would alarm, given the buckets before it."""
    return _glr_series(counts, baseline, guard, window, threshold, False)


def glr(counts: Sequence[float], baseline: int = 28, guard: int = 2, window: int = 7,
        threshold: float = 7.0) -> list[Bound]:
    """`glrpois` with the statistic of bucket t divided by the overdispersion phi of its
    reference (quasi-Poisson): clustered counts need a larger rise to alarm."""
    return _glr_series(counts, baseline, guard, window, threshold, True)


def _bound_next(dispersed: bool):
    def prepare(history: Sequence[float], baseline: int = 28, guard: int = 2, alpha: float = 0.001):
        baseline, guard = _check(baseline, guard)
        alpha = _check_alpha(alpha)
        values = _values(history[max(0, len(history) - baseline - guard):])
        t = len(values)
        if _reference(values, t, baseline, guard) is None:
            return lambda current: NO_BOUND
        return lambda current: _bound_at(values, t, current, baseline, guard, alpha, dispersed)

    return prepare


def _glr_next(dispersed: bool):
    def prepare(history: Sequence[float], baseline: int = 28, guard: int = 2, window: int = 7,
                threshold: float = 7.0):
        baseline, guard = _check(baseline, guard)
        window = _check_glr(window, threshold)
        values = _values(history)
        glr_ = _Glr(values, baseline, guard, window, float(threshold), dispersed)
        for t, y in enumerate(values):
            glr_.score(t, y, with_upper=False)  # only the resets matter for the closed buckets
        running = glr_.prepare(len(values))
        if running is None:
            return lambda current: NO_BOUND
        upper = running.upper()
        # The windows and the alarm line are fixed for the bucket; each batch adds its count.
        return lambda current: running.verdict(current, upper)

    return prepare


SERIES = {"poisson": poisson_bound, "negbin": negbin_bound, "glrpois": glrpois, "glr": glr}
NEXT = {"poisson": _bound_next(False), "negbin": _bound_next(True),
        "glrpois": _glr_next(False), "glr": _glr_next(True)}
