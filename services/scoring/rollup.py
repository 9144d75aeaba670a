"""Province cells: every kabupaten/kota rolls up to its province.

Each kabupaten/kota cell publishes a snapshot of itself (running bucket and closed history,
absolute values, versioned by its `pantau.reports.v1` offset and then its last backfill) to
`pantau.scoring.province`, keyed by province. The province cell keeps the latest snapshot per member (last writer
wins, older versions ignored, so replays are harmless), sums the members bucket by bucket,
scores the sum against its own baseline, and adds the rule "alarms in the same category in
`province_alarm_kabkota` or more kabupaten/kota → siaga". Reports filed at province level
(region code of two digits) arrive as the member named by the province code itself, and only
their severity counts towards the province's severity rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any


from services.scoring.baseline import (
    Cell,
    CellCodec,
    Scoring,
    bucket_start,
    estimate,
    fit_history,
    known_history,
    settle,
    since_floor,
)
from shared.scores import ScoreUpdate
from services.scoring.levels import Bucket, Estimate, Hysteresis, Reason, close_bucket, judge, level_of

SNAPSHOT_IDS = 5  # report ids a member passes on to its province


def province_of(region: str) -> str:
    return region[:2]


def snapshot(cell: Cell) -> dict[str, Any]:
    """What a province needs to know of one member cell, in absolute values."""
    ids = sorted(cell.report_ids, key=lambda r: -r[1])[:SNAPSHOT_IDS]
    return {
        "region": cell.region, "category": cell.category, "offset": cell.offset,
        "backfilled": cell.backfilled,
        "bucket": cell.bucket, "since": cell.since, "history": cell.history,
        "observed": cell.observed, "weighted": cell.weighted, "alarm": cell.alarm,
        "severity": cell.severity, "casualties": cell.casualties, "report_ids": [i for i, _ in ids],
    }


@dataclass(slots=True)
class ProvinceCell(CellCodec):
    """The compact, JSON-serialisable state of one (province, category)."""

    region: str                    # province code
    category: str
    bucket: int                    # start of the running bucket, epoch seconds
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest snapshot per member
    alarm: bool = False
    hold: Hysteresis = field(default_factory=Hysteresis)
    emitted: list[Any] = field(default_factory=lambda: ["normal", False])



def new_province(province: str, category: str, now: float, sc: Scoring) -> ProvinceCell:
    return ProvinceCell(region=province, category=category, bucket=bucket_start(now, province, sc.size))


@dataclass(frozen=True, slots=True)
class Summed:
    """The members added up, aligned on the province's running bucket."""

    history: list[float]
    known: int
    bucket: Bucket
    report_ids: list[str]


def summed(p: ProvinceCell, sc: Scoring) -> Summed:
    h = sc.history
    rows: list[list[float]] = []   # each member's buckets, aligned on the province's ring
    known = observed = 0
    weighted = 0.0
    severity = casualties = 0
    alarmed: list[str] = []
    direct_ids: list[str] = []
    alarm_ids: list[str] = []
    other_ids: list[str] = []
    floor = since_floor(p.region, sc)
    for code, m in sorted(p.members.items()):
        lag = (p.bucket - m["bucket"]) // sc.size  # ≥ 0: the province runs at or ahead of members
        series = fit_history(m["history"], h) + [m["weighted"]]  # series[h]: the member's running bucket
        rows.append(series[lag:lag + h] if lag >= 0 else [0.0] * -lag + series[:h + lag])
        since = m["since"] if floor is None else min(m["since"], floor)
        known = max(known, known_history(p.bucket, since, sc))
        if lag != 0:
            continue
        observed += m["observed"]
        weighted += m["weighted"]
        if code == p.region:
            severity, casualties = m["severity"], m["casualties"]
            direct_ids = m["report_ids"]
        elif m["alarm"]:
            alarmed.append(code)
            alarm_ids += m["report_ids"]
        else:
            other_ids += m["report_ids"]
    # Column sums in member order from 0.0, as adding member by member would give; a member
    # missing a bucket adds 0.0 there, which changes no sum.
    history = [sum(col, 0.0) for col in zip_longest(*rows, fillvalue=0.0)]
    history += [0.0] * (h - len(history))
    ids = (direct_ids + alarm_ids + other_ids)[:20]
    return Summed(history, known, Bucket(observed, weighted, severity, casualties, tuple(alarmed)), ids)


def assess(p: ProvinceCell, sc: Scoring) -> tuple[str, list[Reason], Estimate, Summed]:
    s = summed(p, sc)
    est = estimate(s.history, s.known, s.bucket.weighted, p.region, p.category, sc)
    target, reasons = judge(s.bucket, est, sc.settings)
    return target, reasons, est, s


def appraise(p: ProvinceCell, sc: Scoring) -> tuple[str, Estimate, Summed]:
    """The level the province's running bucket calls for, without its reasons."""
    s = summed(p, sc)
    est = estimate(s.history, s.known, s.bucket.weighted, p.region, p.category, sc)
    return level_of(s.bucket, est, sc.settings), est, s


def reassess_province(p: ProvinceCell, now: float, sc: Scoring) -> ScoreUpdate | None:
    """Score the province's running bucket as it stands; an update if the state changed."""
    target, est, s = appraise(p, sc)
    return settle(p, s.bucket, est, target, lambda: s.report_ids, now, sc)


def _roll_to(p: ProvinceCell, to_bucket: int, now: float, sc: Scoring) -> ScoreUpdate | None:
    if to_bucket <= p.bucket:
        return None
    steps = (to_bucket - p.bucket) // sc.size
    hysteresis = sc.settings.hysteresis_buckets
    for _ in range(min(steps, sc.history + 3 * hysteresis + 4)):
        close_bucket(p.hold, appraise(p, sc)[0], hysteresis)
        p.bucket += sc.size
    p.bucket = to_bucket
    # A member whose running bucket has left the ring adds nothing any more.
    horizon = p.bucket - (sc.history + 1) * sc.size
    p.members = {c: m for c, m in p.members.items() if m["bucket"] > horizon}
    return reassess_province(p, now, sc)


def roll_province(p: ProvinceCell, now: float, sc: Scoring) -> tuple[ProvinceCell, ScoreUpdate | None]:
    """Close the province buckets that have ended by `now`."""
    return p, _roll_to(p, bucket_start(now, p.region, sc.size), now, sc)


def apply_member(p: ProvinceCell, snap: dict[str, Any], now: float, sc: Scoring,
                 evaluate: bool = True) -> tuple[ProvinceCell, ScoreUpdate | None]:
    """Take a member's snapshot (ignored if not newer than the one held). With
    `evaluate=False` the level is not reassessed: a batch calls `reassess_province` once."""
    held = p.members.get(snap["region"])
    # Both versions only grow: a member's reports.v1 offset, and the backfill that last changed it.
    if held is not None and (snap["offset"], snap["backfilled"]) <= (held["offset"], held["backfilled"]):
        return p, None
    update = _roll_to(p, max(snap["bucket"], bucket_start(now, p.region, sc.size)), now, sc)
    if snap["bucket"] + sc.size * (sc.history + 1) <= p.bucket:
        return p, update
    p.members[snap["region"]] = {k: v for k, v in snap.items() if k not in ("region", "category")}
    return p, (reassess_province(p, now, sc) if evaluate else None) or update
