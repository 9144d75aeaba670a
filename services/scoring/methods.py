"""Statistical baselines that decide whether a bucket's count is improbably high: the one
entry point, by method name, to every method.

Pure functions over a list of per-bucket counts (oldest first, empty buckets given as 0):
EARS C1/C2/C3 (ears.py) and CUSUM (cusum.py) as the R package `surveillance` computes them
(`earsC`, `algo.cusum` with `trans="standard"`), the ESSENCE-style EWMA of CDC's `Rnssp`
(ewma.py), and the count-aware methods (counts.py). Each family registers its series
functions (`SERIES`: one `Bound` per input bucket) and its next-bucket functions (`NEXT`);
`score_series` and `upper_bound` dispatch on the method's name. The formulas are those of
shared/reference/scoring.md; each docstring names where it departs from the R code (only where
R itself returns NaN/NA, or where a default differs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypeVar

from services.scoring import counts as _counts, cusum as _cusum, ears as _ears, ewma as _ewma
from services.scoring.bound import NO_BOUND, Bound
from services.scoring.cusum import cusum
from services.scoring.ears import ears_c1, ears_c2, ears_c3
from services.scoring.ewma import ewma
from services.scoring.series import Next, as_current
from services.scoring.student_t import t_cdf, t_isf, t_sf

METHODS: tuple[str, ...] = (
    "ears-c1", "ears-c2", "ears-c3", "cusum", "ewma", "poisson", "negbin", "glrpois", "glr",
)

_SERIES: dict[str, Callable[..., list[Bound]]] = {
    **_ears.SERIES, **_cusum.SERIES, **_ewma.SERIES, **_counts.SERIES}
_NEXT: dict[str, Callable[..., Next]] = {**_ears.NEXT, **_cusum.NEXT, **_ewma.NEXT, **_counts.NEXT}


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
    value = as_current(current)
    return _next_of(method, tuple(history), tuple(sorted(params.items())))(value)


@lru_cache(maxsize=8192)
def _next_of(method: str, history: tuple[float, ...], params: tuple[tuple[str, float], ...]) -> Next:
    """A closed history changes once per bucket, while its running bucket is scored on every
    batch: its bound is computed once (CUSUM and EWMA replay the whole history)."""
    return _NEXT[method](history, **dict(params))


__all__ = ["METHODS", "NO_BOUND", "Bound", "Next", "cusum", "ears_c1", "ears_c2", "ears_c3", "ewma",
           "score_series", "t_cdf", "t_isf", "t_sf", "upper_bound"]
