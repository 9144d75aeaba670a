"""From a bucket's counts and reports to an alert level, with the reasons for it.

Pure rules over plain values (defaults from shared/reference/scoring.md):
- a report with casualties > 0, or of severity 5 → `awas`; severity 4 → at least `siaga`;
- a statistical alarm (weighted count above the upper bound) → at least `waspada`, and a
  count above `surge_factor` × the upper bound → `siaga`;
- alarms in the same category in two or more kabupaten/kota of a province → the province `siaga`.
Hysteresis: a level rises at once and falls only after `hysteresis_buckets` quiet buckets;
except that when an operator rejects a report of the running bucket, a level that bucket
raised falls at once to what the bucket still calls for (`withdraw`).
Reasons are data here (`Reason`); services/scoring/reasons.py puts them into words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.levels import LEVEL_RANK as RANK, LEVELS
from shared.scoring_config import ScoringSettings


def higher(a: str, b: str) -> str:
    return a if RANK[a] >= RANK[b] else b


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason, as a code and its numbers: `count`, `surge`, `severity`, `casualties`,
    `province_alarms`, `held`, `fell`."""

    code: str
    level: str = "normal"  # the level this reason implies on its own
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Estimate:
    """The running bucket against its baseline: what was expected, the alarm threshold, and
    which method (or which cold-start prior) gave them."""

    expected: float
    upper: float
    alarm: bool
    method: str                 # e.g. "ears-c2", or "poisson" for a prior
    prior: str | None = None    # the prior's source when the method had too little history
    prior_daily_rate: float | None = None
    history: int = 0            # closed buckets the method could read
    p_value: float | None = None  # chance of a count this large without a real event, if known


@dataclass(frozen=True, slots=True)
class Bucket:
    """What the rules look at in the running bucket."""

    observed: int
    weighted: float
    severity: int = 0
    casualties: int = 0
    alarmed: tuple[str, ...] = ()   # kabupaten/kota with an alarm (province cells only)


def judge(bucket: Bucket, est: Estimate, rules: ScoringSettings) -> tuple[str, list[Reason]]:
    """The level the running bucket calls for by itself, and its reasons, strongest first.
    The count line is always among the reasons, so every update says how busy the region is."""
    found: list[Reason] = []
    sev = rules.severity
    if bucket.casualties > 0 and sev.casualties != "normal":
        found.append(Reason("casualties", sev.casualties, {"casualties": bucket.casualties}))
    if bucket.severity >= sev.awas_at:
        found.append(Reason("severity", "awas", {"severity": bucket.severity}))
    elif bucket.severity >= sev.siaga_at:
        found.append(Reason("severity", "siaga", {"severity": bucket.severity}))
    count_level = "normal"
    if est.alarm:
        count_level = "waspada"
        if bucket.weighted > rules.surge_factor * est.upper:
            count_level = "siaga"
    found.append(Reason("count", count_level, {
        "observed": bucket.observed, "weighted": bucket.weighted, "expected": est.expected,
        "upper": est.upper, "method": est.method, "prior": est.prior,
        "prior_daily_rate": est.prior_daily_rate, "alarm": est.alarm,
        "baseline": rules.baseline_buckets, "bucket": rules.bucket, "p_value": est.p_value,
    }))
    if count_level == "siaga":
        found.append(Reason("surge", "siaga", {"factor": rules.surge_factor}))
    if len(bucket.alarmed) >= rules.province_alarm_kabkota:
        found.append(Reason("province_alarms", "siaga", {"regions": list(bucket.alarmed)}))
    level = "normal"
    for r in found:
        level = higher(level, r.level)
    # Strongest first; the order of equal reasons stays as written above (stable sort).
    found.sort(key=lambda r: -RANK[r.level])
    return level, found


def level_of(bucket: Bucket, est: Estimate, rules: ScoringSettings) -> str:
    """`judge(bucket, est, rules)[0]` without building the reasons: a cell is judged on every
    batch, and its reasons are needed only when its state changes."""
    sev = rules.severity
    rank = 0
    if bucket.casualties > 0 and sev.casualties != "normal":
        rank = RANK[sev.casualties]
    if bucket.severity >= sev.awas_at:
        rank = 3
    elif bucket.severity >= sev.siaga_at and rank < 2:
        rank = 2
    if est.alarm and rank < 2:
        rank = 2 if bucket.weighted > rules.surge_factor * est.upper else 1
    if rank < 2 and len(bucket.alarmed) >= rules.province_alarm_kabkota:
        rank = 2
    return LEVELS[rank]


@dataclass(slots=True)
class Hysteresis:
    """The level actually held, and how many quiet buckets it has seen."""

    level: str = "normal"
    quiet: int = 0          # consecutive closed buckets whose own level was below `level`
    peak: str = "normal"    # the highest level among those quiet buckets
    # [level, quiet, peak] as the running bucket opened: what the closed buckets hold, before
    # its own reports. None for state written before it was kept: nothing to fall back to.
    opened: list[Any] | None = field(default_factory=lambda: ["normal", 0, "normal"])


def rise(h: Hysteresis, target: str) -> None:
    """A level rises the moment the running bucket calls for more."""
    if RANK[target] > RANK[h.level]:
        h.level, h.quiet, h.peak = target, 0, "normal"


def close_bucket(h: Hysteresis, closed_target: str, buckets: int) -> None:
    """Account for one closed bucket whose own level was `closed_target`: after `buckets`
    quiet buckets in a row the level falls to the highest level among them."""
    if RANK[closed_target] >= RANK[h.level]:
        h.level, h.quiet, h.peak = closed_target, 0, "normal"
    else:
        h.quiet += 1
        h.peak = higher(h.peak, closed_target)
        if h.quiet >= buckets:
            h.level, h.quiet, h.peak = h.peak, 0, "normal"
    h.opened = [h.level, h.quiet, h.peak]


def withdraw(h: Hysteresis, target: str) -> bool:
    """An operator rejected a report of the running bucket, which now calls for `target`. A
    level the bucket raised falls at once to the higher of `target` and what the closed
    buckets held when it opened (with their count of quiet buckets): hysteresis rides out
    noisy counts, it should not keep coordinators paged over a report declared false. A level
    the closed buckets hold is left to them. True when the level fell."""
    if h.opened is None:
        return False
    level, quiet, peak = h.opened
    to = higher(target, level)
    if RANK[to] >= RANK[h.level]:
        return False
    h.level, h.quiet, h.peak = (level, quiet, peak) if to == level else (to, 0, "normal")
    return True


def held_reason(h: Hysteresis, target: str, buckets: int, bucket: str) -> Reason | None:
    """Why the level is above what the running bucket calls for, if it is."""
    if RANK[h.level] <= RANK[target]:
        return None
    return Reason("held", h.level, {"level": h.level, "quiet": h.quiet, "needed": buckets, "bucket": bucket})


def fell_reason(before: str, after: str, buckets: int, bucket: str) -> Reason | None:
    if RANK[after] >= RANK[before]:
        return None
    return Reason("fell", after, {"from": before, "to": after, "quiet": buckets, "bucket": bucket})
