"""Merged batches (cli/s3merge.py) with the real Tansu `s3://` broker: a consumer at the end of a
long partition costs the store the same few requests as at the end of a short one; readers
see every record at its offset, with its key, value, headers and timestamp, a committed offset
inside a merged batch resumes exactly there, and producers go on at the right offset; a batch merged
away while the store runs can still be read by a fetch that listed it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cli.stack import Child, create_bucket, free_port, wait_port
from shared.kafka import FETCH_MAX_WAIT_MS
from tests.cli.test_s3expiry import create, records_dir
from tests.cli.test_s3compact import Broker
from tests.cli.test_s3merge import DAY_NS, one, write

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOPIC = "pantau.reports.v1"
MERGE = f"tansu/clusters/*/topics/{TOPIC}/partitions/*/records=60"


def age_all(folder: Path) -> None:
    """Make every stored batch a day older, as after a day of service (order kept)."""
    for p in folder.glob("*.batch"):
        st = p.stat()
        os.utime(p, ns=(st.st_mtime_ns - DAY_NS, st.st_mtime_ns - DAY_NS))


def requests(store_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{store_port}/_requests", timeout=10) as r:
        return {k: v["count"] for k, v in json.load(r).items()}


async def produce(bootstrap: str, n: int, start: int) -> list[int]:
    """One batch per record, with a header each. Not idempotent: this Tansu build answers
    InitProducerId with an error on `s3://` (and Pantau's producers do not ask for it)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:
        return [(await p.send_and_wait(TOPIC, b"v%d" % i, key=b"k%d" % (i % 3), partition=0,
                                       headers=[("n", b"%d" % i)])).offset for i in range(start, start + n)]
    finally:
        await p.stop()


async def read(bootstrap: str, until: int, group: str | None = None, commit_at: int | None = None) -> list[tuple]:
    """(offset, key, value, headers, timestamp) from the start (or the group's committed offset)
    up to offset `until` - 1; with `commit_at`, commits that offset for the group and returns."""
    tp = TopicPartition(TOPIC, 0)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await c.start()
    try:
        c.assign([tp])
        if commit_at is not None:
            await c.commit({tp: commit_at})
            return []
        got: list[tuple] = []
        while not got or got[-1][0] < until - 1:
            for ms in (await c.getmany(tp, timeout_ms=1000)).values():
                got += [(m.offset, m.key, m.value, list(m.headers), m.timestamp) for m in ms]
        return got
    finally:
        await c.stop()


def test_readers_and_producers_carry_on_over_merged_batches(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    try:
        bootstrap = b.start()
        asyncio.run(create(bootstrap, (TOPIC,)))
        assert asyncio.run(produce(bootstrap, 120, 0)) == list(range(120))
        before = asyncio.run(read(bootstrap, 120))
        asyncio.run(read(bootstrap, 0, group="g", commit_at=50))
        b.stop()
        folder = records_dir(b.data, TOPIC)
        age_all(folder)

        bootstrap = b.start("--merge", MERGE)
        assert len(list(folder.glob("*.batch"))) == 2  # one merged object and the newest batch
        assert asyncio.run(read(bootstrap, 120)) == before
        # A committed offset inside a merged batch: that batch is served whole, the client
        # skips what comes before its offset.
        assert asyncio.run(read(bootstrap, 120, group="g")) == before[50:]
        # Offsets go on after the last: the high watermark is kept apart from the batches.
        assert asyncio.run(produce(bootstrap, 5, 120)) == list(range(120, 125))
        assert [r[0] for r in asyncio.run(read(bootstrap, 125))] == list(range(125))
    finally:
        b.stop()


def fill(folder: Path, n: int) -> None:
    """n one-record batches a day old and the partition's watermark, as Tansu leaves them."""
    old = time.time_ns() - DAY_NS
    for i in range(n):
        write(folder, i, one(i, b"r" * 260, 1_700_000_000_000 + i), old + i * 1_000_000)
    (folder.parent / "watermark.json").write_text(json.dumps({"low": None, "high": n, "timestamps": None}))


async def at_the_end(bootstrap: str, rounds: int) -> None:
    tp = TopicPartition(TOPIC, 0)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await c.start()
    await p.start()
    try:
        c.assign([tp])
        await c.seek_to_end(tp)
        for _ in range(rounds):
            sent = await p.send_and_wait(TOPIC, b"new", partition=0)
            got: list = []
            while not got:
                got = [m for ms in (await c.getmany(tp, timeout_ms=1000)).values() for m in ms]
            assert [m.offset for m in got] == [sent.offset]
    finally:
        await p.stop()
        await c.stop()


def test_a_consumer_at_the_end_of_a_long_partition_lists_a_few_objects(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    try:
        bootstrap = b.start()
        asyncio.run(create(bootstrap, (TOPIC,)))
        b.stop()
        fill(records_dir(b.data, TOPIC), 5000)

        bootstrap = b.start("--merge", MERGE)
        before = requests(b.store_port)
        asyncio.run(at_the_end(bootstrap, 5))
        asked = {k: v - before.get(k, 0) for k, v in requests(b.store_port).items()}
        # Unmerged, each fetch with a new record lists the 5,000 batches, 1,000 a page, and
        # with the 50 ms wait it gives up before their end, again and again.
        assert asked["keys listed"] <= 5 * 30, asked
        assert asked["LIST records"] <= 5 * 2, asked
        assert not [k for k in asked if "start-after" in k]  # Tansu never lists from an offset
    finally:
        b.stop()


def test_a_batch_merged_away_while_running_is_still_readable(tmp_path: Path) -> None:
    port = free_port()
    child = Child("store", [sys.executable, "-m", "cli.s3store", "--port", str(port),
                            "--merge", "tansu/t/partitions/*/records=1", str(tmp_path / "data")],
                  tmp_path / "store.log").start()
    try:
        wait_port("127.0.0.1", port, 15, child.proc, "store")
        create_bucket(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            sent = {i: one(i, b"v%d" % i, 1) for i in range(6)}
            for i, data in sent.items():
                assert c.put(f"/tansu/t/partitions/0/records/{i:020d}.batch", content=data).status_code == 200
            age_all(tmp_path / "data" / "tansu" / "t" / "partitions" / "0" / "records")
            listing = {"list-type": "2", "prefix": "t/partitions/0/records/"}
            deadline = time.monotonic() + 30
            while len(re.findall("<Key>", c.get("/tansu", params=listing).text)) > 2:
                assert time.monotonic() < deadline, "the store did not merge"
                time.sleep(0.1)
            assert c.get(f"/tansu/t/partitions/0/records/{3:020d}.batch").content == sent[3]
            assert c.head(f"/tansu/t/partitions/0/records/{3:020d}.batch").status_code == 200
            assert c.get(f"/tansu/t/partitions/0/records/{9:020d}.batch").status_code == 404
    finally:
        child.stop()
