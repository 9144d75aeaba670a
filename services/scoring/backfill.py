"""Backfill: historical reports turned into closed-bucket history for the baseline cells.
Pure functions, no Kafka; `pantau backfill` (cli/backfill.py) feeds them and the scoring agent
(services/scoring/agents.py) applies their result.

The command aggregates a file into weighted counts per (kabupaten/kota, category, local bucket
start), by the same rules as live scoring: kecamatan and desa roll up to their kabupaten/kota,
buckets are local days (or hours) of the province, unverified reports weigh
`unverified_weight`, and a (source, event_id) seen earlier in the file counts once. It sends one
message per cell to `pantau.scoring.backfill`, keyed like `pantau.reports.v1`, so it reaches
the worker that owns the cell.

The worker merges a message into its cell as history of closed buckets only, taking per bucket
the larger of what it has and what the file says. Live reports that the file also holds are
then not counted twice, a live count is never lowered, and loading the same file again changes
nothing. The file is taken to cover every bucket from its first report on, so the cell's
`since` moves back to that bucket: a day without reports in the file is a real zero. Buckets
older than the ring of closed buckets, and the running bucket (which belongs to live reports),
are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.scoring.baseline import Cell, Scoring, bucket_start, parse_time
from shared.regions import Registry

CellId = tuple[str, str]  # (kabupaten/kota, category)


@dataclass
class Aggregate:
    """Weighted counts per cell and bucket start, and what the file held besides."""

    weighted: dict[CellId, Counter] = field(default_factory=dict)  # cell → {bucket start: weight}
    reports: dict[CellId, Counter] = field(default_factory=dict)   # cell → {bucket start: reports}
    duplicates: int = 0                                             # repeats of a (source, event_id)
    first: float | None = None                                      # earliest occurred_at, epoch s
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add(self, report: Mapping[str, Any], sc: Scoring) -> bool:
        """Count one validated report; False when its (source, event_id) was counted already."""
        ident = (report["source"], report["event_id"])
        if ident in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(ident)
        region = Registry.kabkota_of(report["region_code"])
        cell = (region, report["category"])
        ts = parse_time(report["occurred_at"])
        weight = 1.0 if report.get("verified") else sc.settings.unverified_weight
        start = bucket_start(ts, region, sc.size)
        if cell not in self.weighted:
            self.weighted[cell], self.reports[cell] = Counter(), Counter()
        self.weighted[cell][start] += weight
        self.reports[cell][start] += 1
        self.first = ts if self.first is None else min(self.first, ts)
        return True


def aggregate(reports: Iterable[Mapping[str, Any]], sc: Scoring) -> Aggregate:
    """Aggregate validated reports (in any order) into counts per cell and bucket."""
    agg = Aggregate()
    for r in reports:
        agg.add(r, sc)
    return agg


def messages(agg: Aggregate, sc: Scoring, now: float) -> list[dict[str, Any]]:
    """One message per cell, sorted by region and category, carrying the closed buckets the
    worker's ring can still hold as of `now`; the worker drops whatever is older when it
    applies them, so one bucket of margin keeps a message sent near midnight whole."""
    out = []
    for (region, category), counts in sorted(agg.weighted.items()):
        running = bucket_start(now, region, sc.size)
        oldest = running - (sc.history + 1) * sc.size
        buckets = [[start, round(w, 6)] for start, w in sorted(counts.items()) if oldest <= start < running]
        since = bucket_start(agg.first, region, sc.size) if agg.first is not None else running
        out.append({"region": region, "category": category, "size": sc.size, "since": since,
                    "buckets": buckets})
    return out


@dataclass(frozen=True, slots=True)
class Outside:
    """Reports of the file that no cell will hold, by why."""

    too_old: int
    running: int


def outside(agg: Aggregate, sc: Scoring, now: float) -> Outside:
    """How many counted reports fall before the ring or in the running bucket as of `now`."""
    old = run = 0
    for cell, counts in agg.reports.items():
        running = bucket_start(now, cell[0], sc.size)
        oldest = running - sc.history * sc.size
        old += sum(n for s, n in counts.items() if s < oldest)
        run += sum(n for s, n in counts.items() if s >= running)
    return Outside(old, run)


def merge(cell: Cell, message: Mapping[str, Any], sc: Scoring) -> bool:
    """Apply a backfill message to a cell whose running bucket is the wall clock's: each closed
    bucket in the ring becomes max(held, backfilled), and `since` moves back to the message's.
    True when the cell changed. Raises ValueError for a message of another bucket size."""
    if message["size"] != sc.size:
        raise ValueError(f"backfill of {message['size']} s buckets, scoring uses {sc.size} s")
    changed = False
    for start, weight in message["buckets"]:
        age, misaligned = divmod(cell.bucket - int(start), sc.size)
        if misaligned or not 1 <= age <= sc.history:
            continue
        if weight > cell.history[-age]:
            cell.history[-age] = float(weight)
            changed = True
    since = int(message["since"])
    if since < cell.since:
        cell.since = since
        changed = True
    return changed
