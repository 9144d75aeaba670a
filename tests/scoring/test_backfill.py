"""Backfill without Kafka: a file's reports into counts per cell and local bucket, and those
counts merged into cells as history, by the agent as it would apply them."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from services.scoring.agents import ProvinceScorer, ReportScorer, partition_of, progress_key
from services.scoring.tables import PartitionedTable
from services.scoring.backfill import Outside, aggregate, merge, messages, outside
from services.scoring.baseline import Cell, bucket_start, new_cell
from services.scoring.rollup import ProvinceCell
from shared import topics
from tests.scoring.builders import WIB, at, report, scoring, seeded
from tests.scoring.test_agents import PARTITIONS, Feed, Msg, applied, members

DAY = 86400


def test_reports_roll_up_to_their_kabupaten_and_local_day():
    sc = scoring()
    reports = [
        report(at(-3, 23, 30), region_code="65.71.02.1001"),            # desa of Kota Tarakan, late evening WITA
        report(at(-2, 0, 30), region_code="65.71.02"),                  # kecamatan, the next local day
        report(at(-2, 8), region_code="65.71", verified=False),         # weighs half
        report(at(-2, 8), region_code="65.01", category="other"),
    ]
    agg = aggregate(reports, sc)
    tarakan = agg.weighted[("65.71", "mass_mobilization")]
    assert dict(tarakan) == {bucket_start(at(-3), "65.71", DAY): 1.0, bucket_start(at(-2), "65.71", DAY): 1.5}
    assert dict(agg.reports[("65.71", "mass_mobilization")]) == {bucket_start(at(-3), "65.71", DAY): 1,
                                                                  bucket_start(at(-2), "65.71", DAY): 2}
    assert list(agg.weighted[("65.01", "other")].values()) == [1.0]
    assert agg.first == at(-3, 23, 30)


def test_a_bucket_is_the_local_day_of_the_province():
    sc = scoring()
    # 23:30 WIB in Jakarta is 00:30 WITA: the same instant falls on different local days.
    ts = at(-1, 23, 30, tz=WIB)
    agg = aggregate([report(ts, region_code="31.71"), report(ts, region_code="65.71")], sc)
    (jakarta,), (tarakan,) = agg.weighted[("31.71", "mass_mobilization")], agg.weighted[("65.71", "mass_mobilization")]
    assert tarakan - jakarta == DAY - 3600


def test_a_repeated_source_and_event_id_counts_once():
    sc = scoring()
    r = report(at(-2))
    agg = aggregate([r, dict(r, title="sent again"), dict(r, source="other-source")], sc)
    assert agg.duplicates == 1
    assert sum(agg.weighted[("65.71", "mass_mobilization")].values()) == 2.0


def test_messages_hold_the_ring_and_leave_out_the_running_bucket():
    sc = scoring()
    now = at(0, 15)
    reports = [report(at(-d)) for d in (0, 1, 2, 34, 35, 36, 40)]
    agg = aggregate(reports, sc)
    (msg,) = messages(agg, sc, now)
    today = bucket_start(now, "65.71", DAY)
    starts = [s for s, _ in msg["buckets"]]
    # One bucket of margin beyond the ring of 35; the running bucket belongs to live reports.
    assert starts == [today - d * DAY for d in (36, 35, 34, 2, 1)]
    assert msg["since"] == today - 40 * DAY and msg["size"] == DAY
    assert outside(agg, sc, now) == Outside(too_old=2, running=1)  # days 36 and 40 are older than the ring; today runs


def test_merge_takes_the_larger_count_per_bucket_and_moves_since_back():
    sc = scoring()
    cell = seeded(sc, [0, 0, 3, 0])  # four live days, three reports two days ago
    today = cell.bucket
    msg = {"region": "65.71", "category": "mass_mobilization", "size": DAY, "since": today - 20 * DAY,
           "buckets": [[today - 10 * DAY, 5.0], [today - 2 * DAY, 2.0], [today - DAY, 4.0],
                       [today, 9.0], [today - 40 * DAY, 7.0]]}
    assert merge(cell, msg, sc)
    assert cell.history[-10] == 5.0
    assert cell.history[-2] == 3.0      # live 3 > backfilled 2: never lowered
    assert cell.history[-1] == 4.0
    assert cell.observed == 0           # the running bucket is live reports' alone
    assert cell.since == today - 20 * DAY
    before = cell.to_bytes()
    assert not merge(cell, msg, sc)     # the same file again changes nothing
    assert cell.to_bytes() == before


def test_merge_refuses_another_bucket_size():
    with pytest.raises(ValueError, match="3600 s buckets"):
        merge(new_cell("65.71", "other", at(0), scoring()), {"size": 3600, "since": 0, "buckets": []}, scoring())


def backfill_msg(p: int, offset: int, msg: dict) -> Msg:
    return Msg(topics.SCORING_BACKFILL, p, offset, orjson.dumps(msg))


def history_file(region: str, daily: list[int], category: str = "communal_clash") -> list[dict]:
    """Reports for the days before today (at(0)), oldest first, `daily[i]` of them on day i."""
    n = len(daily)
    return [report(at(-(n - i), 9, k % 60), region_code=region, category=category)
            for i, count in enumerate(daily) for k in range(count)]


def test_the_agent_applies_a_backfill_once_with_at_most_one_update():
    sc, now = scoring(), at(0, 12)
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, sc, PARTITIONS)
    busy = history_file("65.01", [9, 12, 10, 14, 8, 11, 13, 9, 12, 10])
    quiet = history_file("65.02", [1] * 10)
    offsets: dict[int, int] = {}
    batch = []
    for m in messages(aggregate(busy + quiet, sc), sc, now):
        p = partition_of(m["region"], PARTITIONS)
        offsets[p] = offsets.get(p, -1) + 1
        batch.append(backfill_msg(p, offsets[p], m))
    box = scorer.handle(batch, now)
    applied(table, box)
    assert set(box.writes) == {b"65.01|communal_clash", b"65.02|communal_clash"}
    assert box.updates == {}  # a quiet history is no news
    assert set(box.snapshots) == {"65.01|communal_clash", "65.02|communal_clash"}
    for p, off in offsets.items():
        assert table[progress_key(p, "backfill")] == str(off).encode()

    # Six live reports: an alarm against the quiet history, routine against the busy one.
    feed = Feed()
    live = [feed(report(now, region_code=r, category="communal_clash")) for r in ("65.01", "65.02") for _ in range(6)]
    box = scorer.handle(live, now)
    applied(table, box)
    assert list(box.updates) == ["65.02|communal_clash"]
    quiet_update = box.updates["65.02|communal_clash"]
    assert (quiet_update.alarm, quiet_update.method, quiet_update.level) == (True, "ears-c2", "siaga")
    busy_cell = Cell.from_bytes(table[b"65.01|communal_clash"])
    assert busy_cell.observed == 6 and not busy_cell.alarm

    # The same file once more: redelivered offsets skip, a new run's offsets change nothing.
    cells_before = {k: v for k, v in table.items() if not k.startswith(b"~")}
    again = [backfill_msg(m.partition, m.offset + len(batch), orjson.loads(m.value)) for m in batch]
    for p in offsets:
        offsets[p] += len(batch)
    box = scorer.handle(batch + again, now)
    applied(table, box)
    assert (box.updates, box.writes, box.snapshots) == ({}, {}, {})
    assert {k: v for k, v in table.items() if not k.startswith(b"~")} == cells_before


def test_a_backfill_that_changes_the_level_sends_one_update():
    sc, now = scoring(), at(0, 12)
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, sc, PARTITIONS)
    feed = Feed()
    # Live today: six reports, alarming against the cold-start prior (no history yet).
    box = scorer.handle([feed(report(now, region_code="65.03", category="other")) for _ in range(6)], now)
    applied(table, box)
    assert box.updates["65.03|other"].method == "poisson:default_rate" and box.updates["65.03|other"].alarm
    p = partition_of("65.03", PARTITIONS)
    (msg,) = messages(aggregate(history_file("65.03", [4, 5, 3, 6, 4, 5, 4, 3, 5, 4], "other"), sc), sc, now)
    box = scorer.handle([backfill_msg(p, 0, msg)], now)
    update = box.updates["65.03|other"]
    assert (update.alarm, update.method, update.level) == (False, "ears-c2", "waspada")  # held by hysteresis
    assert len(box.updates) == 1


def test_a_province_takes_a_member_snapshot_after_a_backfill():
    sc, now = scoring(), at(0, 12)
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, sc, PARTITIONS)
    feed = Feed()
    box = scorer.handle([feed(report(now, region_code="65.71"))], now)
    applied(table, box)
    ptable: dict[bytes, bytes] = {}
    provinces = ProvinceScorer(ptable, sc, PARTITIONS)
    pp = partition_of("65", PARTITIONS)
    applied(ptable, provinces.handle(
        [Msg(topics.SCORING_PROVINCE, pp, 0, members(box.snapshots["65.71|mass_mobilization"]))], now))
    (msg,) = messages(aggregate([report(at(-2, 9), region_code="65.71")], sc), sc, now)
    box = scorer.handle([backfill_msg(partition_of("65.71", PARTITIONS), 0, msg)], now)
    snap = box.snapshots["65.71|mass_mobilization"]
    assert (snap["offset"], snap["backfilled"]) == (0, 0)  # the same reports.v1 offset, a newer version
    applied(ptable, provinces.handle([Msg(topics.SCORING_PROVINCE, pp, 1, members(snap))], now))
    member = ProvinceCell.from_bytes(ptable[b"65|mass_mobilization"]).members["65.71"]
    assert member["history"][-2] == 1.0


def test_closing_records_go_out_one_per_partition_per_round():
    fake = SimpleNamespace(partition_for_key=lambda k: int(k.rsplit(b"|", 1)[1]))
    closing = {progress_key(0, "backfill"): b"3", progress_key(1): b"7", progress_key(0): b"9"}
    rounds = PartitionedTable._one_per_partition(fake, closing)
    assert rounds == [{b"~backfill|0": b"3", b"~progress|1": b"7"}, {b"~progress|0": b"9"}]
