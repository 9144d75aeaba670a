"""What the two scoring agents do with one batch of messages, without Kafka in sight.

- `ReportScorer`: `pantau.reports.v1`, `pantau.scoring.backfill` and ticks → kabupaten/kota
  cells; score updates for `pantau.scores.v1`, member snapshots for `pantau.scoring.province`.
- `ProvinceScorer`: `pantau.scoring.province` and ticks → province cells; score updates.

Each `handle(messages, now)` reads cells from the table (a mapping of bytes to bytes), applies
the batch in plain Python and returns an `Outbox`: the updates and snapshots to send, each
touched cell once, encoded, to write after the sends are acknowledged, and then the progress
of every written partition. A tick for partition p closes elapsed buckets of the cells whose
region hashes to p.

Offsets are kept with the state. The table holds, per source partition, the last offset whose
effects are in the table (`~progress|<p>`; `~backfill|<p>` for the backfill topic), written
after the cells. Messages are applied in
strict offset order from there: an offset already applied is a redelivery; an offset beyond the
next one means the consumer skipped messages (Faust can commit past unprocessed messages
around a rebalance), so the batch asks for a seek back (`Outbox.reseek`) and drops what came
too early. Nothing is lost, nothing applied twice, whatever offsets Faust commits.

Some 400 lines on purpose: both scorers stand on `_Scorer`'s offset bookkeeping, which is the
exactly-once argument above and reads best beside the two `handle`s that rely on it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import orjson
from aiokafka.partitioner import murmur2

from services.scoring import verification
from services.scoring.backfill import merge
from services.scoring.baseline import (
    COUNTED,
    INVALID,
    LATE,
    REDELIVERED,
    Cell,
    Scoring,
    add_report,
    fit_cell,
    new_cell,
    reassess,
    roll,
)
from shared.scores import ScoreUpdate
from shared.levels import LEVEL_RANK as RANK
from services.scoring.rollup import (
    ProvinceCell, apply_member, new_province, province_of, reassess_province, roll_province, snapshot,
)
from shared import metrics, topics
from shared.regions import Registry
from shared.categories import CATEGORIES

log = logging.getLogger("pantau.scoring")

_CATEGORIES = frozenset(CATEGORIES)
AHEAD = "ahead"  # a message past the next expected offset: dropped, to come again after a seek


class Message(Protocol):
    """What the scorer reads of a Kafka record (Faust's and aiokafka's records both have it)."""

    topic: str
    partition: int
    offset: int
    timestamp: float      # Kafka timestamp, seconds (as Faust gives it)
    value: bytes | None


@lru_cache(maxsize=4096)  # murmur2 is pure Python, and every written cell asks for its partition
def partition_of(region: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key `region` (murmur2), i.e. the
    partition of `pantau.reports.v1` carrying that region's reports."""
    return (murmur2(region.encode()) & 0x7FFFFFFF) % partitions


def cell_key(region: str, category: str) -> bytes:
    return f"{region}|{category}".encode()


def region_of(key: bytes) -> str:
    return key.split(b"|", 1)[0].decode()


def progress_key(partition: int, name: str = "progress") -> bytes:
    """Table key of a source partition's progress; `~` keys live in the partition they name."""
    return f"~{name}|{partition}".encode()


def meta_partition(key: bytes) -> int | None:
    """The partition a `~name|<p>` key names, or None for a cell key."""
    if key.startswith(b"~"):
        return int(key.rsplit(b"|", 1)[1])
    return None


def stalled(applied: dict[tuple[str, int], int], before: dict[tuple[str, int], int],
            highwater: dict[tuple[str, int], int]) -> list[tuple[str, int]]:
    """Partitions whose next offset to apply has not moved since the last look although the
    broker holds more. The offset check asks for a seek back only when a later record
    arrives ahead of its turn; records fetched and then dropped (flow stopped around a
    rebalance, a paused partition) with nothing after them, or a seek that did not take,
    would otherwise wait for the next report, and that could be the one that matters."""
    return [tp for tp, nxt in applied.items() if before.get(tp) == nxt and highwater.get(tp, nxt) > nxt]


@dataclass
class Outbox:
    """The result of one batch: what to send, then what to write, then where to seek."""

    updates: dict[str, ScoreUpdate] = field(default_factory=dict)   # last update per cell
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)  # member snapshots per cell
    writes: dict[bytes, bytes] = field(default_factory=dict)        # table key → encoded cell
    progress: dict[bytes, bytes] = field(default_factory=dict)      # progress key → last applied offset
    reseek: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) → offset to read next
    outcomes: Counter = field(default_factory=Counter)
    # Per cell: the earliest `received_at` (RFC 3339 UTC, so it sorts as text) of the reports
    # this batch counted. An update carries it in a header so notify can measure report
    # received → first page delivered (pantau_end_to_end_seconds), batching wait included.
    received: dict[str, str] = field(default_factory=dict)

    def province_messages(self) -> list[tuple[bytes, bytes]]:
        """The snapshots as `pantau.scoring.province` messages: one per province and up to
        SNAPSHOTS_PER_MESSAGE members, so the province agent pays Faust's per-event cost per
        province and batch rather than per report."""
        by_province: dict[str, list[dict[str, Any]]] = {}
        for snap in self.snapshots.values():
            by_province.setdefault(province_of(snap["region"]), []).append(snap)
        return [(province.encode(), orjson.dumps({"region": province, "members": snaps[i:i + SNAPSHOTS_PER_MESSAGE]}))
                for province, snaps in by_province.items()
                for i in range(0, len(snaps), SNAPSHOTS_PER_MESSAGE)]


# Well under Kafka's default 1 MB message limit even for snapshots with long backfilled histories.
SNAPSHOTS_PER_MESSAGE = 100


def show_level(region: str, category: str, level: str) -> None:
    """Keep pantau_region_level bounded: provinces always, a kabupaten/kota while ≥ waspada."""
    if len(region) == 2 or level != "normal":
        metrics.REGION_LEVELS.set((region, category), RANK[level])
    else:
        metrics.REGION_LEVELS.remove((region, category))


class _Scorer:
    """Shared plumbing: the table, partitions, offsets in order, and the hourly scan for ticks."""

    decode: Any = None
    source: str = ""
    progress_names: dict[str, str] = {}   # topic read in offset order → name of its progress key

    def __init__(self, table: MutableMapping[bytes, bytes], sc: Scoring, partitions: int):
        self.table, self.sc, self.partitions = table, sc, partitions
        self._partition: dict[str, int] = {}
        # Bucket boundaries fall on whole UTC hours (day or hour buckets, offsets +7/+8/+9),
        # so a partition needs scanning only once per hour, and after an assignment.
        self.scanned: dict[int, int] = {}
        self.expected: dict[tuple[str, int], int] = {}   # (topic, partition) → next offset to apply
        self.seeking: dict[tuple[str, int], int] = {}    # (topic, partition) → offset a seek was asked for
        # Decoded cells as last written, beside the bytes written: a cell busy in every batch is
        # decoded once, not once per batch. Valid only while the table still holds those bytes.
        self.live: dict[bytes, tuple[bytes, Any]] = {}

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
        self.live.clear()

    def stored_progress(self, p: int, topic: str | None = None) -> int:
        raw = self.table.get(progress_key(p, self.progress_names[topic or self.source]))
        return -1 if raw is None else int(raw)

    def next_offset(self, p: int, topic: str | None = None) -> int:
        tp = (topic or self.source, p)
        exp = self.expected.get(tp)
        if exp is None:
            exp = self.expected[tp] = self.stored_progress(p, tp[0]) + 1
        return exp

    def admit(self, m: Message, box: Outbox) -> bool:
        """True when `m` is the next message of its partition; otherwise it is skipped
        (a redelivery) or dropped and a seek back asked for (it came too early)."""
        tp = (m.topic, m.partition)
        exp = self.next_offset(m.partition, m.topic)
        if m.offset < exp:
            box.outcomes[REDELIVERED] += 1
            return False
        if m.offset > exp:
            box.outcomes[AHEAD] += 1
            if self.seeking.get(tp) != exp:
                box.reseek[tp] = exp
            return False
        self.seeking.pop(tp, None)
        self.expected[tp] = exp + 1
        return True

    def _admitted(self, messages: Iterable[Message], box: Outbox, ticks: set[int]) -> Iterator[Message]:
        """The messages to apply, in order: a tick's partition goes into `ticks`, and what
        `admit` refuses (a redelivery, one that came too early) is left out."""
        for m in messages:
            if m.topic == topics.SCORING_TICKS:
                ticks.add(m.partition)
            elif self.admit(m, box):
                yield m

    def skip_to(self, p: int, offset: int, topic: str | None = None) -> None:
        """The next offset of `p` is `offset` (after a seek, or messages lost to retention)."""
        tp = (topic or self.source, p)
        self.expected[tp] = offset
        self.seeking[tp] = offset

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

    def _reassess(self, keys: Iterable[bytes], cells: dict[bytes, Any], reassess_cell: Any, now: float,
                  box: Outbox) -> None:
        """The level once per touched cell and batch: counts only grow within a bucket, so the
        last state of the batch is the one that matters."""
        for key in keys:
            update = reassess_cell(cells[key], now, self.sc)
            if update is not None:
                box.updates[cells[key].key] = update

    def _finish(self, box: Outbox, cells: dict[bytes, Any], dirty: set[bytes]) -> None:
        """Encode the touched cells, and close every written partition with its progress (a
        single record after the cells: see PartitionedTable.write)."""
        box.writes = {key: cells[key].to_bytes() for key in dirty}
        for key, raw in box.writes.items():
            self.live[key] = (raw, cells[key])
        touched = {(self.source, self.partition(region_of(k))) for k in dirty}
        for topic, p in sorted(touched | set(self.expected)):
            done = self.next_offset(p, topic) - 1
            # A partition with cells written needs its closing record; any other only when it
            # moved: rewriting an unchanged progress on every tick was most of what the
            # durable broker stored while idle (README, One machine: durable and ephemeral modes).
            if (topic, p) in touched or self.stored_progress(p, topic) != done:
                box.progress[progress_key(p, self.progress_names[topic])] = str(done).encode()

    def _load(self, key: bytes):
        raw = self.table.get(key)
        if raw is None:
            return None
        # Taken out while in use: a cell changed but not written (a failed batch) must not
        # come back; _finish puts back what it writes.
        held = self.live.pop(key, None)
        if held is not None and held[0] == raw:
            return held[1]
        cell = self.decode(raw)
        # Written under a method that kept fewer (or more) closed buckets.
        return fit_cell(cell, self.sc) if isinstance(cell, Cell) else cell

    def _due(self, ticks: Iterable[int], now: float) -> set[int]:
        hour = int(now // 3600)
        due = {p for p in ticks if self.scanned.get(p) != hour}
        for p in due:
            self.scanned[p] = hour
        return due

    def _keys_of(self, partitions: set[int]) -> list[bytes]:
        if not partitions:
            return []  # most batches: no tick due, and the table holds thousands of keys
        return [k for k in list(self.table.keys())
                if not k.startswith(b"~") and self.partition(region_of(k)) in partitions]


class ReportScorer(_Scorer):
    """Applies `pantau.reports.v1` messages and ticks to kabupaten/kota cells."""

    decode = staticmethod(Cell.from_bytes)
    source = topics.REPORTS_V1
    progress_names = {topics.REPORTS_V1: "progress", topics.SCORING_BACKFILL: "backfill",
                      topics.VERIFICATIONS_V1: "verify"}

    def handle(self, messages: Iterable[Message], now: float) -> Outbox:
        box, cells, dirty, changed, ticks = Outbox(), {}, set(), set(), set()
        decided: dict[bytes, list[str]] = {}
        newest = 0.0
        for m in self._admitted(messages, box, ticks):
            if m.topic == topics.SCORING_BACKFILL:
                self._backfill(m, now, cells, dirty, changed, box)
                continue
            if m.topic == topics.VERIFICATIONS_V1:
                self._decide(m, now, cells, dirty, changed, decided)
                continue
            newest = max(newest, m.timestamp or 0)  # a Kafka record's: milliseconds
            try:
                report = orjson.loads(m.value)
                region, category = Registry.kabkota_of(report["region_code"]), report["category"]
                if category not in _CATEGORIES:
                    raise ValueError(f"unknown category {category!r}")
                key = cell_key(region, category)
                cell = cells.get(key) or self._load(key) or new_cell(region, category, now, self.sc)
                cell, update, outcome = add_report(cell, report, m.offset, now, self.sc, evaluate=False)
                if cell.decisions and outcome in (COUNTED, LATE):
                    why = verification.on_report(cell, report, now, self.sc)
                    if why is not None:
                        decided.setdefault(key, []).append(why)
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
                got = report.get("received_at")
                if isinstance(got, str) and (cell.key not in box.received or got < box.received[cell.key]):
                    box.received[cell.key] = got
            if update is not None:
                box.updates[cell.key] = update
        self._reassess(changed - decided.keys(), cells, reassess, now, box)
        for key, whys in decided.items():
            box.updates[cells[key].key] = verification.announce(cells[key], whys, now, self.sc)
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
            metrics.SCORING_LAG.set(max(0.0, time.time() - newest / 1000))
        elif ticks:
            metrics.SCORING_LAG.set(0.0)  # a batch of ticks alone: no report was waiting
        return box

    def _decide(self, m: Message, now: float, cells: dict[bytes, Cell], dirty: set[bytes],
                changed: set[bytes], decided: dict[bytes, list[str]]) -> None:
        """An operator's decision on one report (services/scoring/verification.py)."""
        try:
            d = orjson.loads(m.value)
            key = cell_key(Registry.kabkota_of(d["region_code"]), d["category"])
            cell = cells.get(key) or self._load(key)
            if cell is None:  # the report has not reached any cell yet: keep the decision for it
                cell = new_cell(Registry.kabkota_of(d["region_code"]), d["category"], now, self.sc)
            why, outcome = verification.decide(cell, d, now, self.sc)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            log.error("skipping %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
            return
        log.info("decision %s on a report of %s: %s", d["decision"], cell.key, outcome)
        metrics.VERIFICATIONS.labels(d["decision"], outcome).inc()
        if outcome == verification.REPEATED:
            return
        cells[key] = cell
        dirty.add(key)
        if why is not None:
            changed.add(key)
            decided.setdefault(key, []).append(why)

    def _backfill(self, m: Message, now: float, cells: dict[bytes, Cell], dirty: set[bytes],
                  changed: set[bytes], box: Outbox) -> None:
        """History from `pantau backfill` for one cell. A cell it changes is judged once with
        the batch's other changed cells, so a backfill sends at most one update per cell."""
        try:
            msg = orjson.loads(m.value)
            region, category = msg["region"], msg["category"]
            if category not in _CATEGORIES or region != Registry.kabkota_of(region):
                raise ValueError(f"not a kabupaten/kota cell: {region!r}, {category!r}")
            key = cell_key(region, category)
            held = cells.get(key) or self._load(key)
            cell = held or new_cell(region, category, now, self.sc)
            bucket = cell.bucket
            # The history is counted back from the wall clock's bucket, as a live report would be.
            cell, update = roll(cell, now, self.sc)
            merged = merge(cell, msg, self.sc)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            log.error("skipping %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
            return
        if update is not None:
            box.updates[cell.key] = update
        if merged:
            cell.backfilled = m.offset
            changed.add(key)
        if merged or (held is not None and cell.bucket != bucket):
            cells[key] = cell
            dirty.add(key)


class ProvinceScorer(_Scorer):
    """Applies member snapshots from `pantau.scoring.province` and ticks to province cells."""

    decode = staticmethod(ProvinceCell.from_bytes)
    source = topics.SCORING_PROVINCE
    progress_names = {topics.SCORING_PROVINCE: "progress"}

    def handle(self, messages: Iterable[Message], now: float) -> Outbox:
        box, cells, dirty, ticks = Outbox(), {}, set(), set()
        for m in self._admitted(messages, box, ticks):
            try:
                value = orjson.loads(m.value)
                # A message holds one province's members (Outbox.province_messages).
                snaps = value["members"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                log.error("skipping %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
                continue
            for snap in snaps:
                try:
                    province, category = province_of(snap["region"]), snap["category"]
                    key = cell_key(province, category)
                    cell = cells.get(key) or self._load(key) or new_province(province, category, now, self.sc)
                    cell, update = apply_member(cell, snap, now, self.sc, evaluate=False)
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    log.error("skipping a member of %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)
                    continue
                cells[key] = cell
                dirty.add(key)
                if update is not None:
                    box.updates[cell.key] = update
        self._reassess(dirty, cells, reassess_province, now, box)
        for cell in self._roll_due(ticks, now, roll_province, cells, dirty, box):
            show_level(cell.region, cell.category, cell.hold.level)
        for u in box.updates.values():
            show_level(u.region_code, u.category, u.level)
        self._finish(box, cells, dirty)
        return box
