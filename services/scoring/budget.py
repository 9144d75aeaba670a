"""An alert budget from a region's own history: how many statistical pages the live method
would have raised, per cell and per month, had it run over a backfill file.

Pure: the caller reads the file (cli/backfill.py) and says which cells a policy would page
(`routed`); only alarms that open an incident count as a page, so an alarm within the
incident's lifetime of the last one (auto-resolve plus hysteresis, in buckets) does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.scoring.backfill import Aggregate, CellId
from services.scoring.baseline import Scoring
from services.scoring.methods import score_series


@dataclass(frozen=True, slots=True)
class CellPages:
    """One cell's history and the pages it would have sent."""

    cell: CellId
    buckets: int
    reports: int
    alarms: int        # alarm buckets
    pages: int         # alarms that open an incident
    routed: bool       # whether a policy pages this cell at waspada

    @property
    def mean(self) -> float:
        return self.reports / self.buckets if self.buckets else 0.0


@dataclass(frozen=True, slots=True)
class Budget:
    """Pages per cell over the span of the file, and per month for all routed cells."""

    cells: list[CellPages]
    buckets: int            # buckets from the file's first to its last, per cell
    bucket_days: float      # days in one bucket

    @property
    def months(self) -> float:
        return self.buckets * self.bucket_days / (365.25 / 12)

    @property
    def pages_per_month(self) -> float:
        routed = sum(c.pages for c in self.cells if c.routed)
        return routed / self.months if self.months else 0.0

    @property
    def per_cell_year(self) -> float:
        if not self.cells or not self.buckets:
            return 0.0
        years = self.buckets * self.bucket_days / 365.25
        return sum(c.pages for c in self.cells) / len(self.cells) / years


def pages(agg: Aggregate, sc: Scoring, routed: Callable[[str, str], bool]) -> Budget:
    """Score every cell of `agg` from the file's first bucket to its last with the live method
    and count the incidents its alarms would open."""
    starts = [b for counts in agg.weighted.values() for b in counts]
    if not starts:
        return Budget([], 0, sc.size / 86400)
    first, last = min(starts), max(starts)
    # Every cell is scored over the same span, its own days without reports as zeros. Cells
    # of provinces in other time zones start a few hours apart: the offset keeps their days.
    span = (last - first) // sc.size + 1
    quiet_needed = sc.settings.auto_resolve_buckets + sc.settings.hysteresis_buckets
    out = []
    for cell, weights in sorted(agg.weighted.items()):
        own_first = min(weights)
        offset = first + ((own_first - first) % sc.size)
        series = [0.0] * span
        for start, w in weights.items():
            i = (start - offset) // sc.size
            if 0 <= i < span:
                series[i] += w
        bounds = score_series(sc.settings.method, series, **sc.params)
        alarms, opened, since_alarm = 0, 0, quiet_needed
        for b in bounds:
            if b.alarm:
                alarms += 1
                if since_alarm >= quiet_needed:
                    opened += 1
                since_alarm = 0
            else:
                since_alarm += 1
        out.append(CellPages(cell, span, int(sum(agg.reports[cell].values())), alarms, opened,
                             routed(cell[0], cell[1])))
    return Budget(out, span, sc.size / 86400)
