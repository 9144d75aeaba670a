"""An idle scoring worker writes nothing to its changelog: on the durable broker every write is
a record batch kept on disk and listed on every fetch, so progress rewritten on each tick made
an idle stack store thousands of batches an hour (README, One machine: durable and ephemeral
modes)."""

from __future__ import annotations

from services.scoring.agents import ProvinceScorer, ReportScorer, partition_of, progress_key
from tests.scoring.builders import at, report, scoring
from tests.scoring.test_agents import PARTITIONS, Feed, applied, tick


def test_ticks_on_an_idle_worker_write_no_changelog_record():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    applied(table, scorer.handle([feed(report(at(0), region_code="65.71.02"))], at(0)))
    for p in range(PARTITIONS):  # every partition's progress known, as after the lag timer's look
        scorer.next_offset(p)
    first = scorer.handle([tick(p) for p in range(PARTITIONS)], at(0, 11))  # the hour's scan
    applied(table, first)
    quiet = scorer.handle([tick(p) for p in range(PARTITIONS)], at(0, 11, 30))
    assert (quiet.writes, quiet.progress) == ({}, {})

    rollups = ProvinceScorer({}, scoring(), PARTITIONS)
    for p in range(PARTITIONS):
        rollups.next_offset(p)
    assert rollups.handle([tick(p) for p in range(PARTITIONS)], at(0, 11, 30)).progress == {}


def test_a_report_still_moves_its_partition_s_progress_and_only_that():
    table: dict[bytes, bytes] = {}
    scorer = ReportScorer(table, scoring(), PARTITIONS)
    feed = Feed()
    for p in range(PARTITIONS):
        scorer.next_offset(p)
    box = scorer.handle([feed(report(at(0), region_code="65.71.02"))], at(0))
    p = partition_of("65.71", PARTITIONS)
    assert box.progress == {progress_key(p): b"0"}
