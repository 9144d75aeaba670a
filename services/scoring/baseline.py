"""The baseline cell of one (kabupaten/kota, category): its running bucket, the closed
buckets before it, and the level they add up to. Pure functions, no Kafka.

Buckets follow event time: a report counts in the bucket of its `occurred_at`, in the local
day (or hour) of its province (WIB/WITA/WIT). The running bucket is the one of the wall clock
(or of a report up to 5 minutes ahead of it). A report for an earlier bucket still in the ring
of `history_buckets` closed buckets is added to that bucket's history (that is how late
reports and backfill work); an older one is too old to count. Empty buckets count as zero
from `since` on: the first bucket the cell knows about (its first report, a backfilled one,
or `scoring.observed_since`); before that the history is unknown, and while it is too short
for the method a cold-start prior stands in (services/scoring/priors.py).

Idempotent: a `pantau.reports.v1` offset at or below the highest applied one is a Kafka
redelivery, and a (source, event_id) among the last 256 seen is a repeat; neither counts.
A score update is produced only when the state (level or alarm) changes.
"""

from __future__ import annotations

import math
from base64 import b64decode, b64encode
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Callable, Protocol

import orjson

from services.scoring import methods
from services.scoring.levels import (
    Bucket, Estimate, Hysteresis, Reason, close_bucket, fell_reason, held_reason, judge, level_of, rise,
)
from services.scoring.priors import Priors, poisson_upper
from services.scoring.reasons import render
from shared.levels import LEVEL_RANK as RANK
from shared.regions import Registry
from shared.scores import ScoreUpdate
from shared.times import rfc3339
from shared.scoring_config import ScoringSettings

RECENT_IDS = 256   # (source, event_id) hashes kept per cell against repeats
ID_BYTES = 6       # bytes of one such hash
REPORT_IDS = 20    # event ids of the running bucket kept for `report_ids`

# What happened to one report (the `outcome` label of pantau_scoring_reports_total).
COUNTED, LATE, DUPLICATE, REDELIVERED, TOO_OLD, INVALID = (
    "counted", "late", "duplicate", "redelivered", "too_old", "invalid")
OUTCOMES = (COUNTED, LATE, DUPLICATE, REDELIVERED, TOO_OLD, INVALID)


@dataclass(frozen=True, slots=True)
class Scoring:
    """Everything the pure core needs besides the cell: settings, priors, derived sizes."""

    settings: ScoringSettings
    priors: Priors
    size: int            # seconds per bucket
    history: int         # closed buckets kept per cell
    params: dict[str, float]

    @classmethod
    def from_settings(cls, settings: ScoringSettings) -> "Scoring":
        return cls(settings, Priors(settings), settings.bucket_seconds, settings.history_buckets,
                   settings.method_params())


# --------------------------------------------------------------------------- time


_UTC_OFFSET: dict[str, int] = {}   # province code → seconds east of UTC


def bucket_start(ts: float, region: str, size: int) -> int:
    """Epoch seconds of the start of the bucket holding `ts`, in the region's local time."""
    offset = _UTC_OFFSET.get(region[:2])
    if offset is None:
        offset = _UTC_OFFSET[region[:2]] = int(Registry.timezone_of(region).utcoffset(None).total_seconds())
    t = math.floor(ts)
    return t - (t + offset) % size


def local_time(ts: float, region: str) -> str:
    """RFC 3339 with the region's local offset, e.g. 2024-11-27T00:00:00+08:00."""
    return datetime.fromtimestamp(ts, Registry.timezone_of(region)).isoformat(timespec="seconds")


@lru_cache(maxsize=4096)  # a burst of reports shares a handful of occurred_at values
def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp with offset (as validated by the schema)."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).timestamp()


def since_floor(region: str, sc: Scoring) -> int | None:
    """The bucket of `scoring.observed_since` in the region's local time, if configured."""
    day = sc.settings.observed_since
    if day is None:
        return None
    midnight = datetime(day.year, day.month, day.day, tzinfo=Registry.timezone_of(region))
    return bucket_start(midnight.timestamp(), region, sc.size)


# --------------------------------------------------------------------------- the update


class State(Protocol):
    """What emitting needs from a kabupaten/kota cell or a province cell."""

    region: str
    category: str
    bucket: int
    alarm: bool
    hold: Hysteresis
    emitted: list


def estimate(history: list[float], known: int, current: float, region: str, category: str,
             sc: Scoring) -> Estimate:
    """Expected count and upper bound of the running bucket from the last `known` closed
    buckets, or from the cold-start prior when the method cannot score that little history."""
    s = sc.settings
    if known > 0:
        b = methods.upper_bound(s.method, history[len(history) - known:], current=current, **sc.params)
        if b.expected is not None and b.upper is not None:
            return Estimate(b.expected, b.upper, b.alarm, s.method, history=known, p_value=b.p_value)
    prior = sc.priors.for_region(region, category)
    upper = poisson_upper(prior.rate, s.alpha)
    return Estimate(prior.rate, upper, current > upper, "poisson", prior.source, prior.daily_rate, known)


def settle(state: State, bucket: Bucket, est: Estimate, target: str, report_ids: Callable[[], list[str]],
           now: float, sc: Scoring, withdrawn: bool = False) -> ScoreUpdate | None:
    """Raise the held level to `target` (the level `bucket` and `est` call for) if lower,
    record the alarm, and return a score update, with its reasons and `report_ids()`, when
    (level, alarm) differs from the last one emitted. `withdrawn`: a fall since the last
    update is a rejected report's (levels.withdraw), not quiet buckets'."""
    state.alarm = est.alarm
    rise(state.hold, target)
    level = state.hold.level
    if [level, est.alarm] == state.emitted:
        return None
    s = sc.settings
    reasons = judge(bucket, est, s)[1]
    before = state.emitted[0]
    state.emitted = [level, est.alarm]
    fell = (Reason("withdrawn", level, {"from": before, "to": level}) if withdrawn and RANK[level] < RANK[before]
            else fell_reason(before, level, s.hysteresis_buckets, s.bucket))
    lead = [r for r in (fell,
                        held_reason(state.hold, target, s.hysteresis_buckets, s.bucket)) if r]
    # Built from values this module computed, so pydantic's checks (a registry lookup per
    # update) are skipped on the hot path; notify validates what it reads.
    return ScoreUpdate.model_construct(
        region_code=state.region, category=state.category,
        bucket_start=local_time(state.bucket, state.region),
        bucket_end=local_time(state.bucket + sc.size, state.region),
        observed=bucket.observed, weighted=round(bucket.weighted, 3),
        expected=round(est.expected, 4), upper=round(est.upper, 4),
        method=est.method if est.prior is None else f"poisson:{est.prior}",
        alarm=est.alarm, level=level, reasons=render(lead + reasons, s.language),
        report_ids=report_ids(), computed_at=rfc3339(now),
    )


# --------------------------------------------------------------------------- the cell


class CellCodec:
    """JSON round trip and table key, shared by kabupaten/kota cells and province cells."""

    __slots__ = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps(self, default=_encode_blob)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Any:
        d = orjson.loads(raw)
        # A hold written before `opened` was kept: nothing known to fall back to.
        d["hold"] = Hysteresis(**{"opened": None, **d["hold"]})
        if "recent" in d:  # kabupaten/kota cells only
            d["recent"] = b64decode(d["recent"])
        return cls(**d)

    @property
    def key(self) -> str:
        return f"{self.region}|{self.category}"  # type: ignore[attr-defined]


def _encode_blob(value: Any) -> str:
    if isinstance(value, bytes):
        return b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__}")




@dataclass(slots=True)
class Cell(CellCodec):
    """The compact, JSON-serialisable state of one (kabupaten/kota, category)."""

    region: str                 # kabupaten/kota code (a province code for province-level reports)
    category: str
    bucket: int                 # start of the running bucket, epoch seconds
    since: int                  # first bucket whose lack of reports means zero
    history: list[float]        # weighted counts of the closed buckets, oldest first
    observed: int = 0           # reports in the running bucket
    weighted: float = 0.0       # the same, unverified reports weighing `unverified_weight`
    severity: int = 0           # highest severity in the running bucket
    casualties: int = 0         # most casualties in one report of the running bucket
    alarm: bool = False         # statistical alarm of the running bucket
    report_ids: list[list[Any]] = field(default_factory=list)  # [event_id, severity], ≤ REPORT_IDS
    recent: bytes = b""         # hashes of recent (source, event_id), ID_BYTES each, oldest first
    offset: int = -1            # highest pantau.reports.v1 offset applied
    backfilled: int = -1        # pantau.scoring.backfill offset that last changed the history
    hold: Hysteresis = field(default_factory=Hysteresis)
    emitted: list[Any] = field(default_factory=lambda: ["normal", False])  # last (level, alarm) sent
    # Operators' decisions on this cell's reports (services/scoring/verification.py).
    decisions: dict[str, list[Any]] = field(default_factory=dict)



def new_cell(region: str, category: str, now: float, sc: Scoring) -> Cell:
    start = bucket_start(now, region, sc.size)
    floor = since_floor(region, sc)
    since = start if floor is None else min(start, floor)
    return Cell(region=region, category=category, bucket=start, since=since, history=[0.0] * sc.history)


# A cell keeps as many closed buckets as its method needs (ears-* 35, glr 44, ...). An operator
# may change `scoring.method` (or its baseline) on a running deployment, and the cells in the
# changelog then hold another number: they are fitted on load, never refused or reset.
def fit_history(history: list[float], size: int) -> list[float]:
    """The last `size` closed buckets of `history`, zeros in front where it holds fewer: a cell
    kept under a method that needed a shorter history loads as one that had no reports in the
    buckets it never kept (its `since` still says which buckets are known)."""
    if len(history) == size:
        return history
    return [0.0] * (size - len(history)) + history[-size:] if size else []


def fit_cell(cell: "Cell", sc: Scoring) -> "Cell":
    """A cell loaded under a method that keeps another number of closed buckets: its history
    fitted to `sc.history`, and `since` moved up so that the zeros put in front are not read
    as days that had no reports (the shorter history dropped them, whatever they held)."""
    kept = len(cell.history)
    if kept != sc.history:
        cell.history = fit_history(cell.history, sc.history)
        if kept < sc.history:
            cell.since = max(cell.since, cell.bucket - kept * sc.size)
    return cell


def known_history(bucket: int, since: int, sc: Scoring) -> int:
    return max(0, min(sc.history, (bucket - since) // sc.size))


def running(cell: Cell) -> Bucket:
    return Bucket(cell.observed, cell.weighted, cell.severity, cell.casualties)


def appraise(cell: Cell, sc: Scoring) -> tuple[str, Estimate]:
    """The level the running bucket calls for and the estimate behind it."""
    est = estimate(cell.history, known_history(cell.bucket, cell.since, sc), cell.weighted,
                   cell.region, cell.category, sc)
    return level_of(running(cell), est, sc.settings), est


def assess(cell: Cell, sc: Scoring) -> tuple[str, list[Reason], Estimate]:
    """The level the running bucket calls for, its reasons and the estimate behind them."""
    target, est = appraise(cell, sc)
    return target, judge(running(cell), est, sc.settings)[1], est


def report_key(source: str, event_id: str) -> bytes:
    """A 48-bit hash of (source, event_id): small in the cell, collisions negligible in 256."""
    return blake2b(f"{source}\x1f{event_id}".encode(), digest_size=ID_BYTES).digest()


def _seen(recent: bytes, ident: bytes) -> bool:
    """Whether `ident` is one of the ids in `recent` (a match across two ids does not count)."""
    at = recent.find(ident)
    while at >= 0:
        if at % ID_BYTES == 0:
            return True
        at = recent.find(ident, at + 1)
    return False


def _keep_id(cell: Cell, event_id: str, severity: int) -> None:
    """Keep up to REPORT_IDS ids of the bucket; when full, a graver report replaces the
    oldest of the least grave, so the reports behind a level are always named."""
    ids = cell.report_ids
    if len(ids) < REPORT_IDS:
        ids.append([event_id, severity])
        return
    lowest = min(r[1] for r in ids)
    if lowest < severity:
        del ids[[r[1] for r in ids].index(lowest)]
        ids.append([event_id, severity])


def _ids(cell: Cell) -> list[str]:
    return [i for i, _ in cell.report_ids]


def _advance(cell: Cell, to_bucket: int, sc: Scoring) -> None:
    """Close the running bucket and every empty one up to `to_bucket`, letting the held
    level fall where enough quiet buckets have passed."""
    steps = (to_bucket - cell.bucket) // sc.size
    hysteresis = sc.settings.hysteresis_buckets
    # Past this many steps the ring is all zeros and the level has settled: skip ahead.
    for _ in range(min(steps, sc.history + 3 * hysteresis + 4)):
        target = appraise(cell, sc)[0]
        close_bucket(cell.hold, target, hysteresis)
        cell.history.append(cell.weighted)
        del cell.history[0]
        cell.observed, cell.weighted, cell.severity, cell.casualties = 0, 0.0, 0, 0
        cell.report_ids = []
        cell.bucket += sc.size
    cell.bucket = to_bucket


def roll(cell: Cell, now: float, sc: Scoring) -> tuple[Cell, ScoreUpdate | None]:
    """Close the buckets that have ended by `now`; an update when the state changes."""
    return _roll_to(cell, bucket_start(now, cell.region, sc.size), now, sc)


def _roll_to(cell: Cell, to_bucket: int, now: float, sc: Scoring) -> tuple[Cell, ScoreUpdate | None]:
    if to_bucket <= cell.bucket:
        return cell, None
    _advance(cell, to_bucket, sc)
    return cell, reassess(cell, now, sc)


def add_report(cell: Cell, report: dict[str, Any], offset: int | None, now: float,
               sc: Scoring, evaluate: bool = True) -> tuple[Cell, ScoreUpdate | None, str]:
    """Count one report of `pantau.reports.v1` (at `offset`, None when not from Kafka).
    Returns the cell, a score update if the state changed, and the outcome.

    With `evaluate=False` the level is not reassessed (only buckets closed by the report's
    arrival are): a batch adds all its reports, then calls `reassess` once per cell."""
    if offset is not None:
        if offset <= cell.offset:
            return cell, None, REDELIVERED
        cell.offset = offset
    ident = report_key(report["source"], report["event_id"])
    if _seen(cell.recent, ident):
        return cell, None, DUPLICATE
    # One bytes blob rather than a list of ints: a full cell encodes 256 ids in 2 KB of base64
    # instead of 256 JSON numbers.
    cell.recent = (cell.recent + ident)[-RECENT_IDS * ID_BYTES:]

    s = sc.settings
    rb = bucket_start(parse_time(report["occurred_at"]), cell.region, sc.size)
    # The running bucket is the wall clock's, or a report's up to 5 minutes ahead of it.
    cell, update = _roll_to(cell, max(rb, bucket_start(now, cell.region, sc.size)), now, sc)
    weight = 1.0 if report.get("verified") else s.unverified_weight
    severity, casualties = int(report["severity"]), int(report.get("casualties") or 0)
    outcome = COUNTED
    if rb == cell.bucket:
        cell.observed += 1
        cell.weighted += weight
    else:
        age = (cell.bucket - rb) // sc.size
        if age > sc.history:
            return cell, update, TOO_OLD
        cell.history[-age] += weight
        cell.since = min(cell.since, rb)
        outcome = LATE
        grave = severity >= s.severity.siaga_at or casualties > 0
        if age > s.hysteresis_buckets or not grave:
            # Only the baseline learns of it.
            return cell, (reassess(cell, now, sc) if evaluate else None) or update, outcome
    # Reports of this bucket, and grave late ones recent enough that they would still hold
    # the level today, count towards the severity rules of the running bucket.
    cell.severity = max(cell.severity, severity)
    cell.casualties = max(cell.casualties, casualties)
    _keep_id(cell, report["event_id"], severity)
    return cell, (reassess(cell, now, sc) if evaluate else None) or update, outcome


def reassess(cell: Cell, now: float, sc: Scoring) -> ScoreUpdate | None:
    """Score the running bucket as it stands; an update if the state changed."""
    target, est = appraise(cell, sc)
    return settle(cell, running(cell), est, target, lambda: _ids(cell), now, sc)


def add_reports(cell: Cell, reports: list[dict[str, Any]], now: float, sc: Scoring) -> tuple[Cell, ScoreUpdate | None]:
    """Apply several reports (no Kafka offsets) and keep the last update: for tests and backfill."""
    last = None
    for r in reports:
        cell, update, _ = add_report(cell, r, None, now, sc)
        last = update or last
    return cell, last
