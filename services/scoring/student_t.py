"""Student's t distribution (R's `pt` and `qt`), for EWMA's p-values and thresholds: the
regularised incomplete beta function by its continued fraction, without SciPy."""

from __future__ import annotations

import math
from functools import lru_cache


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
