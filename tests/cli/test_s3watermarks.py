"""A power cut between Tansu's watermark and its record batch (cli/s3watermarks.py): the store
sets the watermark back as it starts, so the partition goes on without a hole that a reader
applying offsets in order would wait on for ever."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from cli.s3watermarks import settle, settle_partition
from tests.cli.test_s3compact import Broker
from tests.cli.test_s3expiry import create, produce, records_dir
from tests.cli.test_s3merge import one, write
from tests.cli.test_s3merge_broker import read

TOPIC = "pantau.reports.v1"
PARTITIONS = "tansu/clusters/*/topics/*/partitions/*"


def partition(tmp: Path, n: int, high: int | None) -> Path:
    """A partition folder of n one-record batches and a watermark saying `high`."""
    folder = tmp / "p" / "records"
    for i in range(n):
        write(folder, i, one(i, b"v%d" % i, 1_700_000_000_000 + i), time.time_ns())
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / "watermark.json").write_text(json.dumps({"low": None, "high": high, "timestamps": None}))
    return folder.parent


def high(p: Path) -> int | None:
    return json.loads((p / "watermark.json").read_text())["high"]


def test_a_watermark_ahead_of_the_stored_batches_is_set_back(tmp_path: Path) -> None:
    p = partition(tmp_path, 5, 7)
    assert settle_partition(p) == (7, 5)
    assert high(p) == 5
    assert settle_partition(p) is None  # nothing more to do


@pytest.mark.parametrize("n, mark", [(5, 5), (0, None), (3, 2)])
def test_a_watermark_at_or_behind_the_stored_end_is_left(tmp_path: Path, n: int, mark: int | None) -> None:
    p = partition(tmp_path, n, mark)
    assert settle_partition(p) is None
    assert high(p) == mark


def test_a_partition_that_never_stored_a_batch_starts_at_zero(tmp_path: Path) -> None:
    p = partition(tmp_path, 0, 1)  # the cut fell inside the partition's first produce
    assert settle_partition(p) == (1, 0)


def test_an_unreadable_batch_leaves_the_watermark_alone(tmp_path: Path) -> None:
    p = partition(tmp_path, 3, 9)
    (p / "records" / f"{3:020d}.batch").write_bytes(b"not a record batch")
    assert settle_partition(p) is None
    assert high(p) == 9


def test_after_a_cut_between_watermark_and_batch_offsets_go_on_without_a_hole(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    try:
        bootstrap = b.start()
        asyncio.run(create(bootstrap, (TOPIC,)))
        assert asyncio.run(produce(bootstrap, TOPIC, [b"a%d" % i for i in range(10)])) == list(range(10))
        b.stop()
        # As Tansu leaves a partition when killed after raising the watermark for offset 10 and
        # before storing its batch: the producer had no answer and sends the record again.
        part = records_dir(b.data, TOPIC).parent
        assert high(part) == 10
        (part / "watermark.json").write_text(json.dumps({"low": None, "high": 11, "timestamps": None}))

        bootstrap = b.start("--watermarks", PARTITIONS)
        assert high(part) == 10
        assert asyncio.run(produce(bootstrap, TOPIC, [b"again"])) == [10]
        got = asyncio.run(read(bootstrap, 11))
        assert [r[0] for r in got] == list(range(11))
        assert got[-1][2] == b"again"
        assert "set back to 10" in (b.logs / "store.log").read_text()
    finally:
        b.stop()


def test_settle_reports_each_partition_it_moved(tmp_path: Path) -> None:
    moved = partition(tmp_path / "a", 2, 4)
    partition(tmp_path / "b", 2, 2)
    assert settle(tmp_path, "*/p") == {moved: (4, 2)}
