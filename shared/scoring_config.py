"""The `scoring` section of the config: bucket size, baseline method and its parameters,
severity rules, report weights, hysteresis, cold-start fallbacks and the worker's own settings.

Unknown keys are refused by name, so a typo (`hysterisis_buckets`) stops the service at start
instead of silently keeping a default.
"""

from __future__ import annotations

import csv
import math
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.categories import CATEGORIES
from shared.levels import Level
from shared.strict import Strict as _Strict

Method = Literal["ears-c1", "ears-c2", "ears-c3", "cusum", "ewma", "poisson", "negbin", "glrpois", "glr"]
# Methods that read a long reference of counts (services/scoring/counts.py).
COUNT_METHODS = ("poisson", "negbin", "glrpois", "glr")

# Closed buckets kept per cell when the method needs fewer: EARS C2 with a 7-bucket baseline
# reads 9, EWMA 30; 35 leaves room for a late report from a month of daily buckets.
MIN_HISTORY = 35


class SeverityRules(_Strict):
    """Levels that follow from the reports themselves, whatever the counts say."""

    awas_at: int = Field(5, ge=1, le=5, description="a report of this severity or higher → awas")
    siaga_at: int = Field(4, ge=1, le=5, description="a report of this severity or higher → at least siaga")
    casualties: Level = Field("awas", description="level for a report with casualties > 0 (normal: no rule)")


class CusumParams(_Strict):
    """CUSUM (`method: cusum`): reference value k, decision interval h, and buckets before it starts."""

    k: float = 1.04
    h: float = Field(2.26, ge=0)
    start: int = Field(7, ge=1, le=100)


class EwmaParams(_Strict):
    """EWMA (`method: ewma`): weight, guard buckets, baseline length and the two alarm p-values."""

    guard: int = Field(2, ge=0, le=14)
    w: float = Field(0.4, gt=0, le=1)
    min_baseline: int = Field(11, ge=3, le=100)
    red_p: float = Field(0.01, gt=0, lt=1)
    yellow_p: float = Field(0.05, gt=0, lt=1)


class GlrParams(_Strict):
    """The GLR methods (`glrpois`, `glr`): the window a rise may span and the alarm threshold."""

    window: int = Field(7, ge=1, le=28, description="longest run of buckets a rise may span")
    # 7.5, not R's customary 5: measured by `pantau evaluate`, the highest threshold that still
    # alarms within 3 days on 60 % of 3-day surges keeps negative-binomial counts under 1.5
    # false alarms a year at 10 reports a day (7 gave 1.44 there).
    threshold: float = Field(7.5, gt=0, le=100, description="GLR statistic (divided by the overdispersion) that alarms")


class ScoringSettings(_Strict):
    """How reports become levels. Every default is the production choice named in
    shared/reference/scoring.md."""

    bucket: Literal["day", "hour"] = "day"
    # Chosen with `pantau evaluate` (README, "Choosing the method"): on stationary sparse and
    # clustered counts it keeps false alarms under one per region×category-year at every rate
    # from 0.05 to 10 a day, where EARS C2 raised up to a dozen.
    method: Method = "glr"
    baseline: int | None = Field(None, ge=3, le=100, description="default 7 for EARS, 28 for EWMA and the count methods")
    guard: int = Field(2, ge=0, le=14, description="buckets between the reference and the scored one (count methods)")
    alpha: float = Field(0.001, gt=0, lt=0.5)
    false_alarms_per_year: float | None = Field(
        None, gt=0, le=100, description="false-alarm budget per region×category-year for the count methods: "
        "sets alpha (poisson, negbin) or the GLR threshold instead")
    min_sigma: float = Field(0.5, ge=0, description="floor of the standard deviation (flat histories)")
    cusum: CusumParams = CusumParams()
    ewma: EwmaParams = EwmaParams()
    glr: GlrParams = GlrParams()

    severity: SeverityRules = SeverityRules()
    surge_factor: float = Field(2.0, gt=1, description="count above factor × upper bound → siaga")
    province_alarm_kabkota: int = Field(
        2, ge=1, description="alarms in this many kabupaten/kota of a province, same category → province siaga")
    unverified_weight: float = Field(0.5, gt=0, le=1)
    hysteresis_buckets: int = Field(2, ge=0, le=30, description="quiet buckets before a level may fall")
    auto_resolve_buckets: int = Field(3, ge=1, le=365, description="normal buckets before an incident resolves itself")

    fallback_daily_rate: float = Field(0.5, gt=0, description="expected reports per day without history or prior")
    vulnerability_map: Path | None = Field(
        None, description="CSV region_code,category,daily_rate (peta rawan konflik); category * = all")
    observed_since: date | None = Field(
        None, description="from this day on, a bucket without reports is a real zero for every region")

    language: Literal["id", "en"] = "id"
    tick_interval_s: float = Field(5.0, ge=0.05, le=3600)
    web_host: str = "127.0.0.1"
    web_port: int = Field(8081, ge=1, le=65535)

    @field_validator("vulnerability_map")
    @classmethod
    def _map_readable(cls, v: Path | None) -> Path | None:
        if v is not None:
            read_vulnerability_map(v)  # raises ValueError naming the line at fault
        return v

    @model_validator(mode="after")
    def _one_threshold(self) -> "ScoringSettings":
        if self.false_alarms_per_year is None:
            return self
        if self.method not in COUNT_METHODS:
            raise ValueError(f"false_alarms_per_year applies to the methods {', '.join(COUNT_METHODS)}, "
                             f"not {self.method}")
        if self.method in ("poisson", "negbin") and "alpha" in self.model_fields_set:
            raise ValueError("set false_alarms_per_year or alpha, not both: the budget sets alpha")
        if self.method in ("glrpois", "glr") and "threshold" in self.glr.model_fields_set:
            raise ValueError("set false_alarms_per_year or glr.threshold, not both: the budget sets the threshold")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "ScoringSettings":
        if self.severity.siaga_at > self.severity.awas_at:
            raise ValueError("severity.siaga_at must not exceed severity.awas_at")
        if self.ewma.red_p > self.ewma.yellow_p:
            raise ValueError("ewma.red_p must not exceed ewma.yellow_p")
        if self.method == "ewma" and self.baseline is not None and self.baseline < self.ewma.min_baseline:
            raise ValueError(f"baseline must be at least ewma.min_baseline ({self.ewma.min_baseline})")
        return self

    # --- derived values ------------------------------------------------------------------

    @property
    def bucket_seconds(self) -> int:
        return 86400 if self.bucket == "day" else 3600

    @property
    def baseline_buckets(self) -> int:
        if self.baseline is not None:
            return self.baseline
        return 28 if self.method == "ewma" or self.method in COUNT_METHODS else 7

    @property
    def history_buckets(self) -> int:
        """Closed buckets each cell keeps: what the method reads, and at least MIN_HISTORY."""
        b = self.baseline_buckets
        need = {"ears-c1": b, "ears-c2": b + 2, "ears-c3": b + 4,
                "cusum": self.cusum.start + 28, "ewma": b + self.ewma.guard,
                "poisson": b + self.guard, "negbin": b + self.guard,
                # The GLR replays its statistic over the kept history: two windows beyond the
                # first scorable bucket, so a reset after an alarm is seen as in a backtest.
                "glrpois": b + self.guard + 2 * self.glr.window,
                "glr": b + self.guard + 2 * self.glr.window}[self.method]
        return max(MIN_HISTORY, need)

    @property
    def bound_alpha(self) -> float:
        """Alpha of the count bounds: the budget spread over a year's buckets, if one is set."""
        if self.false_alarms_per_year is None:
            return self.alpha
        return min(0.49, self.false_alarms_per_year / (365.0 * 86400 / self.bucket_seconds))

    @property
    def glr_threshold(self) -> float:
        """The GLR threshold: as configured, or read from GLR_FALSE_ALARMS for the budget."""
        if self.false_alarms_per_year is None:
            return self.glr.threshold
        # The table is per day; an hourly bucket has 24 chances a day to alarm.
        return threshold_for_budget(self.false_alarms_per_year * self.bucket_seconds / 86400)

    def method_params(self) -> dict[str, float]:
        """Keyword arguments for services.scoring.methods.upper_bound."""
        if self.method.startswith("ears"):
            return {"baseline": self.baseline_buckets, "alpha": self.alpha, "min_sigma": self.min_sigma}
        if self.method == "cusum":
            return self.cusum.model_dump()
        if self.method in ("poisson", "negbin"):
            return {"baseline": self.baseline_buckets, "guard": self.guard, "alpha": self.bound_alpha}
        if self.method in ("glrpois", "glr"):
            return {"baseline": self.baseline_buckets, "guard": self.guard, "window": self.glr.window,
                    "threshold": self.glr_threshold}
        return {"baseline": self.baseline_buckets, **self.ewma.model_dump()}


# Measured by `pantau evaluate --calibrate` (2026-12-02, seed 20261202, 60 series of 2 years per
# rate): the worst false alarms per region×category-year of the GLR (28-day reference, guard 2,
# window 7) over stationary Poisson counts at 0.05, 0.2, 0.5, 1, 3 and 10 reports a day.
# One false alarm in those 120 series-years is 0.008: the last rows are at the resolution.
GLR_FALSE_ALARMS: tuple[tuple[float, float], ...] = (
    (3.0, 5.325), (4.0, 2.100), (5.0, 0.892), (6.0, 0.417), (7.0, 0.250), (7.5, 0.150), (8.0, 0.092),
    (9.0, 0.083), (10.0, 0.033), (12.0, 0.008), (14.0, 0.008),
)


def threshold_for_budget(per_year: float) -> float:
    """The lowest GLR threshold whose measured false alarms a year stay within `per_year`,
    interpolated on the log of the rate between the measured thresholds."""
    table: list[tuple[float, float]] = []
    for t, fa in GLR_FALSE_ALARMS:  # strictly falling: a noisy tie keeps its lower threshold
        if fa > 0 and (not table or fa < table[-1][1]):
            table.append((t, fa))
    if per_year >= table[0][1]:
        return table[0][0]
    for (t0, f0), (t1, f1) in zip(table, table[1:]):
        if f1 <= per_year <= f0:
            return round(t0 + (t1 - t0) * (math.log(f0) - math.log(per_year)) / (math.log(f0) - math.log(f1)), 2)
    return table[-1][0]


RateKey = tuple[str, str]  # (region code, category or "*")


def read_vulnerability_map(path: Path) -> dict[RateKey, float]:
    """Read a peta rawan konflik CSV (`region_code,category,daily_rate`; category `*` for all)
    into {(region, category): expected reports per day}, or raise ValueError naming the line."""
    from shared.regions import registry

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    rows = csv.DictReader(text.splitlines())
    missing = {"region_code", "category", "daily_rate"} - set(rows.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: header must name region_code,category,daily_rate (missing {', '.join(sorted(missing))})")
    rates: dict[RateKey, float] = {}
    for line, row in enumerate(rows, start=2):
        region, category = (row["region_code"] or "").strip(), (row["category"] or "").strip()
        if not registry().exists(region) or registry().level(region) > 2:
            raise ValueError(f"{path} line {line}: {region!r} is not a province or kabupaten/kota code")
        if category != "*" and category not in CATEGORIES:
            raise ValueError(f"{path} line {line}: unknown category {category!r}")
        try:
            rate = float(row["daily_rate"])
        except (TypeError, ValueError):
            raise ValueError(f"{path} line {line}: daily_rate {row['daily_rate']!r} is not a number") from None
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"{path} line {line}: daily_rate must be a number >= 0")
        rates[(region, category)] = rate
    return rates
