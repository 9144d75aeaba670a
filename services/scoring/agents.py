"""What the two scoring agents do with one batch of messages, without Kafka in sight.

- `ReportScorer`: `pantau.reports.v1` and ticks → kabupaten/kota cells; score updates for
  `pantau.scores.v1`, member snapshots for `pantau.scoring.province`.
- `ProvinceScorer`: `pantau.scoring.province` and ticks → province cells; score updates.

Each `handle(messages, now)` reads cells from the table (a mapping of bytes to bytes), applies
the batch in plain Python and returns an `Outbox`: the updates and snapshots to send, each
touched cell once, encoded, to write after the sends are acknowledged, and then the progress
of every written partition. A tick for partition p closes elapsed buckets of the cells whose
region hashes to p.

Offsets are kept with the state. The table holds, per source partition, the last offset whose
effects are in the table (`~progress|<p>`), written after the cells. Messages are applied in
strict offset order from there: an offset already applied is a redelivery; an offset beyond the
next one means the consumer skipped messages (Faust can commit past unprocessed messages
around a rebalance), so the batch asks for a seek back (`Outbox.reseek`) and drops what came
too early. Nothing is lost, nothing applied twice, whatever offsets Faust commits.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka.partitioner import murmur2

from services.scoring.baseline import (
    COUNTED, INVALID, LATE, REDELIVERED, Cell, Scoring, ScoreUpdate, add_report, new_cell, reassess, roll,
)
from services.scoring.levels import RANK
from services.scoring.rollup import (
    ProvinceCell, apply_member, new_province, province_of, reassess_province, roll_province, snapshot,
)
from shared import metrics, topics
from shared.regions import Registry
from shared.schemas import CATEGORIES

log = logging.getLogger("pantau.scoring")

_CATEGORIES = frozenset(CATEGORIES)
AHEAD = "ahead"  # a message past the next expected offset: dropped, to come again after a seek


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    timestamp: float      # Kafka timestamp, seconds (as Faust gives it)
    value: bytes | None


def partition_of(region: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key `region` (murmur2), i.e. the
    partition of `pantau.reports.v1` carrying that region's reports."""
    return (murmur2(region.encode()) & 0x7FFFFFFF) % partitions


def cell_key(region: str, category: str) -> bytes:
    return f"{region}|{category}".encode()


def region_of(key: bytes) -> str:
    return key.split(b"|", 1)[0].decode()


def progress_key(partition: int) -> bytes:
    """Table key of a source partition's progress; `~` keys live in the partition they name."""
    return f"~progress|{partition}".encode()


def meta_partition(key: bytes) -> int | None:
    """The partition a `~name|<p>` key names, or None for a cell key."""
    if key.startswith(b"~"):
        return int(key.rsplit(b"|", 1)[1])
    return None


@dataclass
class Outbox:
    """The result of one batch: what to send, then what to write, then where to seek."""

    updates: dict[str, ScoreUpdate] = field(default_factory=dict)   # last update per cell
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)  # member snapshots per cell
    writes: dict[bytes, bytes] = field(default_factory=dict)        # table key → encoded cell
    progress: dict[bytes, bytes] = field(default_factory=dict)      # progress key → last applied offset
    reseek: dict[int, int] = field(default_factory=dict)            # source partition → offset to read next
    outcomes: Counter = field(default_factory=Counter)


def show_level(region: str, category: str, level: str) -> None:
    """Keep pantau_region_level bounded: provinces always, a kabupaten/kota while ≥ waspada."""
    if len(region) == 2 or level != "normal":
        metrics.REGION_LEVEL.labels(region, category).set(RANK[level])
    else:
        try:
            metrics.REGION_LEVEL.remove(region, category)
        except KeyError:
            pass


class _Scorer:
    """Shared plumbing: the table, partitions, offsets in order, and the hourly scan for ticks."""

    decode: Any = None
    source: str = ""

    def __init__(self, table: MutableMapping[bytes, bytes], sc: Scoring, partitions: int):
        self.table, self.sc, self.partitions = table, sc, partitions
        self._partition: dict[str, int] = {}
        # Bucket boundaries fall on whole UTC hours (day or hour buckets, offsets +7/+8/+9),
        # so a partition needs scanning only once per hour, and after an assignment.
        self.scanned: dict[int, int] = {}
        self.expected: dict[int, int] = {}   # source partition → next offset to apply
        self.seeking: dict[int, int] = {}    # source partition → offset a seek was asked for

    def partition(self, region: str) -> int:
        p = self._partition.get(region)
        if p is None:
            p = self._partition[region] = partition_of(region, self.partitions)
        return p

    def on_assignment(self) -> None:
        """Partitions moved: reread progress from the (recovered) table, rescan for ticks."""
        self.scanned.clear()
        self.expected.clear()
        self.seeking.clear()

    def stored_progress(self, p: int) -> int:
        raw = self.table.get(progress_key(p))
        return -1 if raw is None else int(raw)

    def next_offset(self, p: int) -> int:
        exp = self.expected.get(p)
        if exp is None:
            exp = self.expected[p] = self.stored_progress(p) + 1
        return exp

    def admit(self, m: Message, box: Outbox) -> bool:
        """True when `m` is the next message of its partition; otherwise it is skipped
        (a redelivery) or dropped and a seek back asked for (it came too early)."""
        exp = self.next_offset(m.partition)
        if m.offset < exp:
            box.outcomes[REDELIVERED] += 1
            return False
        if m.offset > exp:
            box.outcomes[AHEAD] += 1
            if self.seeking.get(m.partition) != exp:
                box.reseek[m.partition] = exp
            return False
        self.seeking.pop(m.partition, None)
        self.expected[m.partition] = exp + 1
        return True

    def skip_to(self, p: int, offset: int) -> None:
        """The next offset of `p` is `offset` (after a seek, or messages lost to retention)."""
        self.expected[p] = offset
        self.seeking[p] = offset

    def _roll_due(self, ticks: set[int], now: float, roll_cell: Any, cells: dict[bytes, Any],
                  dirty: set[bytes], box: Outbox) -> list[Any]:
        """Close the elapsed buckets of every cell in the ticked partitions; a cell whose
        bucket moved is marked for writing, a level change goes to the outbox."""
        rolled = []
        for key in self._keys_of(self._due(ticks, now)):
            cell = cells.get(key) or self._load(key)
            bucket = cell.bucket
            cell, update = roll_cell(cell, now, self.sc)
            if cell.bucket != bucket:
                cells[key] = cell
                dirty.add(key)
            if update is not None:
                box.updates[cell.key] = update
            rolled.append(cell)
        return rolled

    def _finish(self, box: Outbox, cells: dict[bytes, Any], dirty: set[bytes]) -> None:
        """Encode the touched cells, and close every written partition with its progress (a
        single record after the cells: see PartitionedTable.write)."""
        box.writes = {key: cells[key].to_bytes() for key in dirty}
        touched = {self.partition(region_of(k)) for k in dirty} | set(self.expected)
        for p in touched:
            box.progress[progress_key(p)] = str(self.next_offset(p) - 1).encode()

    def _load(self, key: bytes):
        raw = self.table.get(key)
        return None if raw is None else self.decode(raw)

    def _due(self, ticks: Iterable[int], now: float) -> set[int]:
        hour = int(now // 3600)
        due = {p for p in ticks if self.scanned.get(p) != hour}
        for p in due:
            self.scanned[p] = hour
        return due

    def _keys_of(self, partitions: set[int]) -> list[bytes]:
        return [k for k in list(self.table.keys())
                if not k.startswith(b"~") and self.partition(region_of(k)) in partitions]


class ReportScorer(_Scorer):
    """Applies `pantau.reports.v1` messages and ticks to kabupaten/kota cells."""

    decode = staticmethod(Cell.from_bytes)
    source = topics.REPORTS_V1

    def handle(self, messages: Iterable[Message], now: float) -> Outbox:
        box, cells, dirty, changed, ticks = Outbox(), {}, set(), set(), set()
        newest = 0.0
        for m in messages:
            if m.topic == topics.SCORING_TICKS:
                ticks.add(m.partition)
                continue
            if not self.admit(m, box):
                continue
            newest = max(newest, m.timestamp or 0)
            try:
                report = orjson.loads(m.value)
                region, category = Registry.kabkota_of(report["region_code"]), report["category"]
                if category not in _CATEGORIES:
                    raise ValueError(f"unknown category {category!r}")
                key = cell_key(region, category)
                cell = cells.get(key) or self._load(key) or new_cell(region, category, now, self.sc)
                cell, update, outcome = add_report(cell, report, m.offset, now, self.sc, evaluate=False)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                log.error("skipping %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
                box.outcomes[INVALID] += 1
                continue
            box.outcomes[outcome] += 1
            cells[key] = cell
            if outcome != REDELIVERED:
                dirty.add(key)
            if outcome in (COUNTED, LATE):
                changed.add(key)
            if update is not None:
                box.updates[cell.key] = update
        # The level once per touched cell and batch: counts only grow within a bucket, so the
        # last state of the batch is the one that matters.
        for key in changed:
            update = reassess(cells[key], now, self.sc)
            if update is not None:
                box.updates[cells[key].key] = update
        for cell in self._roll_due(ticks, now, roll, cells, dirty, box):
            if len(cell.region) > 2:
                show_level(cell.region, cell.category, cell.hold.level)
        # A province-level report's cell speaks through its province; it has no update of its own.
        box.updates = {k: u for k, u in box.updates.items() if len(u.region_code) > 2}
        for u in box.updates.values():
            show_level(u.region_code, u.category, u.level)
        for key in changed:
            box.snapshots[cells[key].key] = snapshot(cells[key])
        self._finish(box, cells, dirty)
        if newest:
            metrics.SCORING_LAG.set(max(0.0, time.time() - newest))
        elif ticks:
            metrics.SCORING_LAG.set(0.0)  # a batch of ticks alone: no report was waiting
        return box


class ProvinceScorer(_Scorer):
    """Applies member snapshots from `pantau.scoring.province` and ticks to province cells."""

    decode = staticmethod(ProvinceCell.from_bytes)
    source = topics.SCORING_PROVINCE

    def handle(self, messages: Iterable[Message], now: float) -> Outbox:
        box, cells, dirty, ticks = Outbox(), {}, set(), set()
        for m in messages:
            if m.topic == topics.SCORING_TICKS:
                ticks.add(m.partition)
                continue
            if not self.admit(m, box):
                continue
            try:
                snap = orjson.loads(m.value)
                province, category = province_of(snap["region"]), snap["category"]
                key = cell_key(province, category)
                cell = cells.get(key) or self._load(key) or new_province(province, category, now, self.sc)
                cell, update = apply_member(cell, snap, now, self.sc, evaluate=False)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                log.error("skipping %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
                continue
            cells[key] = cell
            dirty.add(key)
            if update is not None:
                box.updates[cell.key] = update
        for key in dirty:
            update = reassess_province(cells[key], now, self.sc)
            if update is not None:
                box.updates[cells[key].key] = update
        for cell in self._roll_due(ticks, now, roll_province, cells, dirty, box):
            show_level(cell.region, cell.category, cell.hold.level)
        for u in box.updates.values():
            show_level(u.region_code, u.category, u.level)
        self._finish(box, cells, dirty)
        return box
