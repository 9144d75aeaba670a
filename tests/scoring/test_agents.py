"""One batch through the agents' work, with a dict for the table and plain messages: each
touched cell written once, ticks roll only their partition, replays count nothing twice."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from services.scoring.agents import ProvinceScorer, ReportScorer, partition_of, progress_key, stalled
from services.scoring.baseline import Cell
from shared import metrics, topics
from tests.scoring.builders import at, report, scoring


def members(*snaps: dict) -> bytes:
    """A `pantau.scoring.province` message holding these member snapshots of one province."""
    return orjson.dumps({"region": snaps[0]["region"][:2], "members": list(snaps)})

PARTITIONS = 4


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: float = 0.0


class Feed:
    """Reports as pantau.reports.v1 would carry them: keyed by kabupaten/kota, offsets per partition."""

    def __init__(self):
        self.next: dict[int, int] = {}

    def __call__(self, body: dict | bytes, region: str | None = None) -> Msg:
        region = region or body["region_code"][:5]
        p = partition_of(region, PARTITIONS)
        off = self.next.get(p, 0)
        self.next[p] = off + 1
        return Msg(topics.REPORTS_V1, p, off, body if isinstance(body, bytes) else orjson.dumps(body), at(0))


def applied(table: dict, box) -> None:
    """What PartitionedTable.write does with an outbox, minus the broker."""
    table.update(box.writes)
    table.update(box.progress)


def tick(p: int) -> Msg:
    return Msg(topics.SCORING_TICKS, p, 0, b"")


def test_a_busy_cell_is_written_once_per_batch():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    batch = [feed(report(at(0), region_code="65.71.02")) for _ in range(100)]
    box = scorer.handle(batch, at(0))
    assert list(box.writes) == [b"65.71|mass_mobilization"]
    assert list(box.updates) == ["65.71|mass_mobilization"] and box.updates["65.71|mass_mobilization"].level == "siaga"
    assert list(box.snapshots) == ["65.71|mass_mobilization"]
    assert box.outcomes["counted"] == 100


def test_a_replayed_batch_counts_nothing_twice():
    table: dict[bytes, bytes] = {}
    feed = Feed()
    batch = [feed(report(at(0), region_code=r)) for r in ("65.71.02", "65.01", "65.71.01") * 3]
    applied(table, ReportScorer(table, scoring(), PARTITIONS).handle(batch[:5], at(0)))
    # A crash before the offsets were committed: a new worker gets the whole batch again.
    box = ReportScorer(table, scoring(), PARTITIONS).handle(batch, at(0))
    applied(table, box)
    assert box.outcomes == {"redelivered": 5, "counted": 4}
    counts = {k: Cell.from_bytes(v).observed for k, v in table.items() if not k.startswith(b"~")}
    assert counts == {b"65.71|mass_mobilization": 6, b"65.01|mass_mobilization": 3}
    assert table[progress_key(partition_of("65.71", PARTITIONS))] == b"5"


def test_messages_past_a_gap_are_dropped_until_the_gap_is_read():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    batch = [feed(report(at(0), region_code="65.71")) for _ in range(6)]
    applied(table, scorer.handle(batch[:2], at(0)))
    # The consumer skipped offsets 2 and 3 (committed past them): ask to read from 2 again.
    box = scorer.handle(batch[4:], at(0))
    p = partition_of("65.71", PARTITIONS)
    assert (box.reseek, box.outcomes, box.writes) == ({(topics.REPORTS_V1, p): 2}, {"ahead": 2}, {})
    scorer.skip_to(p, 2)
    assert scorer.handle(batch[5:], at(0)).reseek == {}  # already seeking there: drop quietly
    box = scorer.handle(batch[2:], at(0))
    applied(table, box)
    assert box.outcomes == {"counted": 4}
    assert Cell.from_bytes(table[b"65.71|mass_mobilization"]).observed == 6


def test_a_partition_that_stopped_short_of_the_broker_s_end_is_read_again():
    """Records fetched and dropped around a rebalance, with none after them to arrive ahead of
    their turn: the next look finds the partition where it was while the broker holds more."""
    r, b = (topics.REPORTS_V1, 0), (topics.REPORTS_V1, 1)
    before = {r: 40, b: 7}
    assert stalled({r: 40, b: 7}, before, {r: 45, b: 7}) == [r]      # r stuck behind 45; b at its end
    assert stalled({r: 44, b: 7}, before, {r: 45, b: 7}) == []       # r moved: still reading
    assert stalled({r: 40}, {}, {r: 45}) == []                        # no earlier look: give it one
    assert stalled({r: 40}, before, {}) == [], "no known end, no guess"


def test_a_tick_rolls_only_its_partition():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    regions = ["65.01", "65.02", "65.03", "65.04", "65.71", "32.73", "32.04"]
    table.update(scorer.handle([feed(report(at(0), region_code=r)) for r in regions], at(0)).writes)
    mine = partition_of("65.71", PARTITIONS)
    box = scorer.handle([tick(mine)], at(1))
    rolled = {k.decode().split("|")[0] for k in box.writes}
    assert rolled == {r for r in regions if partition_of(r, PARTITIONS) == mine} and "65.71" in rolled
    assert scorer.handle([tick(mine)], at(1, 10, 30)).writes == {}  # scanned this hour already


def test_a_bad_message_is_counted_and_skipped():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    bad = feed(b"{not json", region="65.71")
    unknown = feed(report(at(0), category="gossip"))
    box = scorer.handle([bad, unknown, feed(report(at(0)))], at(0))
    assert box.outcomes == {"invalid": 2, "counted": 1}


def test_province_level_reports_speak_through_the_province():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    box = scorer.handle([feed(report(at(0), region_code="65", severity=5))], at(0))
    assert box.updates == {} and list(box.snapshots) == ["65|mass_mobilization"]
    provinces = ProvinceScorer({}, scoring(), PARTITIONS)
    snap = Msg(topics.SCORING_PROVINCE, partition_of("65", PARTITIONS), 0, members(box.snapshots["65|mass_mobilization"]))
    out = provinces.handle([snap], at(0))
    assert out.updates["65|mass_mobilization"].level == "awas"


def test_province_messages_carry_each_province_once_and_score_as_one_message_per_member():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    regions = ["65.01", "65.71", "65.03", "65", "32.73", "32.04"]
    box = scorer.handle([feed(report(at(0), region_code=r, severity=4 if r == "65.03" else 2)) for r in regions * 4], at(0))
    sent = box.province_messages()
    assert sorted(k for k, _ in sent) == [b"32", b"65"]
    together = ProvinceScorer({}, scoring(), PARTITIONS).handle(
        [Msg(topics.SCORING_PROVINCE, partition_of(k.decode(), PARTITIONS), 0, v) for k, v in sent], at(0))
    offsets: dict[int, int] = {}
    singles = []
    for snap in box.snapshots.values():
        p = partition_of(snap["region"][:2], PARTITIONS)
        singles.append(Msg(topics.SCORING_PROVINCE, p, offsets.get(p, 0), members(snap)))
        offsets[p] = offsets.get(p, 0) + 1
    alone = ProvinceScorer({}, scoring(), PARTITIONS).handle(singles, at(0))
    assert together.writes == alone.writes and together.writes
    assert {k: u.level for k, u in together.updates.items()} == {k: u.level for k, u in alone.updates.items()}


def test_a_cell_whose_write_was_not_applied_is_read_again_from_the_table():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    applied(table, scorer.handle([feed(report(at(0), region_code="65.71"))], at(0)))
    scorer.handle([feed(report(at(0), region_code="65.71"))], at(0))  # its writes never reached the table
    scorer.expected.clear()  # offsets read again from the table, the decoded cells kept
    feed.next[partition_of("65.71", PARTITIONS)] = 1
    box = scorer.handle([feed(report(at(0), region_code="65.71"))], at(0))
    applied(table, box)
    assert Cell.from_bytes(table[b"65.71|mass_mobilization"]).observed == 2


def test_a_kabupaten_falling_back_to_normal_leaves_the_level_metric():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    batch = [feed(report(at(0), region_code="65.04.01", category="land_resource_conflict")) for _ in range(30)]
    applied(table, scorer.handle(batch, at(0)))
    series = 'pantau_region_level{category="land_resource_conflict",region="65.04"}'
    assert f"{series} 2.0\n" in metrics.exposition().decode()
    box = scorer.handle([tick(partition_of("65.04", PARTITIONS))], at(3))  # two quiet days later
    assert box.updates["65.04|land_resource_conflict"].level == "normal"
    assert series not in metrics.exposition().decode()
