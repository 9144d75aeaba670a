"""The harness behind `pantau evaluate`: seeded simulated count series, scored by each method.

Scenarios follow Noufaily et al. (2013): stationary daily counts (Poisson, negative binomial of
several dispersions, with or without a weekday pattern) at rates from 0.02 to 20 a day, and the
same counts with an injected surge (one-day spike, three days of +delta, a three-day ramp, a
lasting step). Per method and parameter set it measures false alarms per region×category-year
and, for surges, the share alarmed on the surge's first day, within 3 and within 7 days, and
the median delay. Everything is seeded: the same arguments give the same table.

Methods are scored with services.scoring.methods.score_series, the function the live scorer
and `pantau backtest` use.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from services.scoring.methods import score_series

DAYS_PER_YEAR = 365
BURN_IN = 60          # days before anything is counted: every method has its full baseline
SURGE_BURN_IN = 50    # days before a surge: the longest reference (28 + 2) and two GLR windows
YEARS = 2             # length of a stationary series after the burn-in
FOLLOW = 7            # days after a surge's start in which an alarm counts as detection
WEEKDAY = (1.3, 1.2, 1.1, 1.0, 1.0, 0.7, 0.7)  # Monday..Sunday, mean 1: offices report on weekdays

# Surge shapes: extra expected reports on each day from the start, as multiples of delta.
SHAPES: dict[str, tuple[float, ...] | None] = {
    "spike": (1.0,),
    "surge3": (1.0, 1.0, 1.0),
    "ramp3": (0.5, 1.0, 1.5),
    "step": None,  # +delta every day from the start on
}


def surge_delta(rate: float) -> float:
    """The standard surge of the issue: +max(2, 2×rate) reports a day."""
    return max(2.0, 2.0 * rate)


@dataclass(frozen=True, slots=True)
class Counts:
    """How a stationary series is drawn: its rate, dispersion (None: Poisson) and weekday pattern."""

    rate: float
    size: float | None = None     # negative binomial size; variance = rate + rate²/size
    weekday: bool = False

    @property
    def label(self) -> str:
        dist = "poisson" if self.size is None else f"nb{self.size:g}"
        return f"{dist}{'+weekday' if self.weekday else ''}"


@dataclass(frozen=True, slots=True)
class Setting:
    """One method at one parameter set: a point on that method's curve."""

    method: str
    params: tuple[tuple[str, float], ...]
    alpha: float | None = None    # the nominal false-alarm probability per bucket, if it has one

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.method}({shown})"


def setting(method: str, alpha_key: str | None = None, **params: float) -> Setting:
    alpha = params.get(alpha_key) if alpha_key else None
    return Setting(method, tuple(sorted(params.items())), alpha)


# --------------------------------------------------------------------------- drawing counts


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: inversion by multiplication, in chunks of 30 so exp(-lam) stays exact."""
    total = 0
    while lam > 30.0:
        total += poisson(rng, 30.0)
        lam -= 30.0
    if lam <= 0.0:
        return total
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        p *= rng.random()
        k += 1
    return total + k


def draw_series(rng: random.Random, counts: Counts, days: int, first_weekday: int = 0) -> list[float]:
    out = []
    for d in range(days):
        lam = counts.rate * (WEEKDAY[(first_weekday + d) % 7] if counts.weekday else 1.0)
        if counts.size is not None:
            lam = rng.gammavariate(counts.size, lam / counts.size)
        out.append(float(poisson(rng, lam)))
    return out


def add_surge(rng: random.Random, series: list[float], start: int, shape: str, delta: float) -> None:
    profile = SHAPES[shape]
    days = len(series) - start if profile is None else len(profile)
    for j in range(days):
        extra = delta * (1.0 if profile is None else profile[j])
        series[start + j] += poisson(rng, extra)


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class FalseAlarms:
    """Alarms on stationary series: per region×category-year, and per bucket."""

    alarms: int = 0
    days: int = 0

    @property
    def per_year(self) -> float:
        return self.alarms / self.days * DAYS_PER_YEAR if self.days else math.nan

    @property
    def per_bucket(self) -> float:
        return self.alarms / self.days if self.days else math.nan


@dataclass(slots=True)
class Detection:
    """When surges were first alarmed: delay in days from the surge's first day, None if not
    within FOLLOW days."""

    delays: list[int | None] = field(default_factory=list)

    def within(self, days: int) -> float:
        if not self.delays:
            return math.nan
        return sum(1 for d in self.delays if d is not None and d < days) / len(self.delays)

    @property
    def median_delay(self) -> float | None:
        seen = [d for d in self.delays if d is not None]
        return statistics.median(seen) if seen else None


def _seed(*parts: object) -> int:
    # A stable seed per task, whatever process runs it (hash() of a str is salted per process).
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(text.encode(), "little") % (2**61 - 1)


def false_alarms(s: Setting, counts: Counts, series: int, seed: int) -> FalseAlarms:
    """Alarms of `s` over `series` stationary series of YEARS years each (after the burn-in)."""
    rng = random.Random(_seed(seed, "fa", counts))
    out = FalseAlarms()
    days = YEARS * DAYS_PER_YEAR
    for _ in range(series):
        y = draw_series(rng, counts, BURN_IN + days, rng.randrange(7))
        bounds = score_series(s.method, y, **dict(s.params))
        out.alarms += sum(1 for b in bounds[BURN_IN:] if b.alarm)
        out.days += days
    return out


def detection(s: Setting, counts: Counts, shape: str, delta: float, series: int, seed: int) -> Detection:
    """First alarm of `s` after surges of `shape` and `delta` a day injected at the end of a
    SURGE_BURN_IN-day stationary series."""
    rng = random.Random(_seed(seed, "surge", counts, shape, delta))
    out = Detection()
    for _ in range(series):
        y = draw_series(rng, counts, SURGE_BURN_IN + FOLLOW, rng.randrange(7))
        add_surge(rng, y, SURGE_BURN_IN, shape, delta)
        bounds = score_series(s.method, y, **dict(s.params))
        first = next((j for j, b in enumerate(bounds[SURGE_BURN_IN:]) if b.alarm), None)
        out.delays.append(first)
    return out


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True, slots=True)
class Grid:
    """Which scenarios to run and how many series each."""

    rates: tuple[float, ...]
    dists: tuple[Counts, ...]          # rate ignored: the dispersion and weekday pattern
    shapes: tuple[str, ...]
    sizes: tuple[float, ...]           # multiples of surge_delta(rate)
    fa_series: int
    surge_series: int
    seed: int = 20261202
    surge_dists: tuple[Counts, ...] = (Counts(0), Counts(0, 2.0))   # where surges are injected

    def counts(self, dists: tuple[Counts, ...] | None = None) -> Iterable[Counts]:
        for d in self.dists if dists is None else dists:
            for r in self.rates:
                yield Counts(r, d.size, d.weekday)


ITEM3_RATES = (0.05, 0.2, 0.5, 1.0, 3.0, 10.0)

QUICK = Grid(rates=ITEM3_RATES, dists=(Counts(0), Counts(0, 2.0)), shapes=("spike", "surge3"),
             sizes=(1.0,), fa_series=15, surge_series=100)
FULL = Grid(rates=(0.02, 0.05, 0.2, 0.5, 1.0, 3.0, 10.0, 20.0),
            dists=(Counts(0), Counts(0, 1.0), Counts(0, 2.0), Counts(0, 5.0), Counts(0, None, True),
                   Counts(0, 2.0, True)),
            shapes=tuple(SHAPES), sizes=(0.5, 1.0, 2.0), fa_series=25, surge_series=80)


@dataclass(slots=True)
class Result:
    """Everything measured for one setting."""

    setting: Setting
    fa: dict[Counts, FalseAlarms] = field(default_factory=dict)
    det: dict[tuple[Counts, str, float], Detection] = field(default_factory=dict)

    def fa_max(self, size: float | None, weekday: bool = False) -> float:
        vals = [v.per_year for c, v in self.fa.items() if c.size == size and c.weekday == weekday
                and c.rate in ITEM3_RATES]
        return max(vals) if vals else math.nan

    def fa_mean(self, size: float | None = None) -> float:
        vals = [v.per_year for c, v in self.fa.items() if c.size == size and not c.weekday
                and c.rate in ITEM3_RATES]
        return statistics.fmean(vals) if vals else math.nan

    def alpha_ratio(self) -> float | None:
        """Measured false alarms per bucket over the nominal alpha (stationary Poisson)."""
        if self.setting.alpha is None:
            return None
        vals = [v.per_bucket for c, v in self.fa.items() if c.size is None and not c.weekday]
        return statistics.fmean(vals) / self.setting.alpha if vals else None

    def item3(self, within: int = 3) -> dict[float, float]:
        """Share of 3-day surges of +surge_delta(rate) a day (Poisson) alarmed within `within` days."""
        return {c.rate: d.within(within) for (c, shape, size), d in self.det.items()
                if shape == "surge3" and size == 1.0 and c.size is None and not c.weekday
                and c.rate in ITEM3_RATES}

    def detect(self, shape: str, within: int) -> float:
        vals = [d.within(within) for (c, sh, size), d in self.det.items()
                if sh == shape and size == 1.0 and c.size is None and not c.weekday]
        return statistics.fmean(vals) if vals else math.nan

    def median_delay(self, shape: str = "surge3") -> float | None:
        delays = [x for (c, sh, size), d in self.det.items() if sh == shape and size == 1.0
                  and c.size is None and not c.weekday for x in d.delays if x is not None]
        return statistics.median(delays) if delays else None


def _fa_task(args: tuple[Setting, Counts, int, int]) -> tuple[Setting, Counts, FalseAlarms]:
    s, c, n, seed = args
    return s, c, false_alarms(s, c, n, seed)


def _det_task(args: tuple[Setting, Counts, str, float, int, int]) -> tuple[Setting, tuple, Detection]:
    s, c, shape, size, n, seed = args
    return s, (c, shape, size), detection(s, c, shape, size * surge_delta(c.rate), n, seed)


def run(settings: Sequence[Setting], grid: Grid, workers: int = 2) -> list[Result]:
    """Measure every setting on every scenario of the grid, in `workers` processes."""
    results = {s: Result(s) for s in settings}
    fa_tasks = [(s, c, grid.fa_series, grid.seed) for s in settings for c in grid.counts()]
    det_tasks = [(s, c, shape, size, grid.surge_series, grid.seed) for s in settings
                 for c in grid.counts(grid.surge_dists) for shape in grid.shapes for size in grid.sizes]
    if workers <= 1:
        fa_out = map(_fa_task, fa_tasks)
        det_out = map(_det_task, det_tasks)
        _collect(results, fa_out, det_out)
    else:
        with ProcessPoolExecutor(workers) as pool:
            _collect(results, pool.map(_fa_task, fa_tasks, chunksize=4),
                     pool.map(_det_task, det_tasks, chunksize=8))
    return [results[s] for s in settings]


def _collect(results: dict[Setting, Result], fa_out: Iterable, det_out: Iterable) -> None:
    for s, c, fa in fa_out:
        results[s].fa[c] = fa
    for s, key, det in det_out:
        results[s].det[key] = det


# --------------------------------------------------------------------------- what is compared


def candidates() -> list[Setting]:
    """Each method at a few parameter sets: the curves of the plot."""
    out = [setting("ears-c2", "alpha", baseline=7, alpha=a, min_sigma=0.5) for a in (0.001, 0.0001)]
    out += [setting("cusum", None, h=h) for h in (2.26, 6.0)]
    out += [setting("poisson", "alpha", baseline=28, guard=2, alpha=a) for a in (0.01, 0.001, 0.0001)]
    out += [setting("negbin", "alpha", baseline=28, guard=2, alpha=a) for a in (0.01, 0.001, 0.0001)]
    out += [setting("glr", None, baseline=28, guard=2, window=7, threshold=c) for c in (5.0, 7.0, 9.0)]
    return out


def calibrate(method: str, thresholds: Sequence[float], series: int, seed: int, workers: int = 2,
              **params: float) -> list[tuple[float, float]]:
    """(threshold, worst false alarms per region×category-year over the item-3 rates on
    stationary Poisson counts) for each threshold of a GLR method: the table that turns a
    `scoring.false_alarms_per_year` budget into a threshold (shared/scoring_config.py)."""
    settings = [setting(method, None, threshold=t, **params) for t in thresholds]
    grid = Grid(rates=ITEM3_RATES, dists=(Counts(0),), shapes=(), sizes=(), fa_series=series, surge_series=0,
                seed=seed)
    return [(dict(r.setting.params)["threshold"], r.fa_max(None)) for r in run(settings, grid, workers)]
