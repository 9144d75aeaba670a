"""The store's compaction of changelogs at start (cli/s3compact.py), with the real Tansu
`s3://` broker: after a restart fewer batches are stored, a topic read from its start folds
into the same last value per key, offsets go on where they were, and topics that are not
changelogs keep every batch."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cli.stack import Child, broker, create_bucket, free_port, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHANGELOG, OTHER = "pantau-scoring-bench-changelog", "bench.history"
PATTERN = "tansu/clusters/*/topics/*-changelog/partitions/*/records"
WRITES = [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"c", b"c1"), (b"a", b"a3"), (b"b", b"b2"), (b"~p", b"5")]


def records_dir(data: Path, topic: str) -> Path:
    return data / "tansu" / "clusters" / "tansu_cluster" / "topics" / topic / "partitions" / f"{0:010d}" / "records"


def batch_count(folder: Path) -> int:
    return sum(1 for n in folder.iterdir() if n.name.endswith(".batch"))


class Broker:
    """Store and Tansu on one folder, started together and stopped together (a restart)."""

    def __init__(self, tmp: Path):
        self.data, self.logs = tmp / "data", tmp / "logs"
        self.store_port, self.port = free_port(), free_port()
        self.children: list[Child] = []

    def start(self, *store_args: str) -> str:
        store = Child("store", [sys.executable, "-m", "cli.s3store", "--port", str(self.store_port), *store_args,
                                str(self.data)], self.logs / "store.log").start()
        self.children = [store]
        wait_port("127.0.0.1", self.store_port, 30, store.proc, "store")
        create_bucket(self.store_port)
        tansu = broker(self.port, self.logs, self.store_port).start()
        self.children.append(tansu)
        wait_port("127.0.0.1", self.port, 15, tansu.proc, "broker")
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()


async def setup(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (CHANGELOG, OTHER)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> list[int]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:  # one record batch each, as the scoring worker's closing records are
        return [(await p.send_and_wait(topic, v, key=k, partition=0)).offset for k, v in records]
    finally:
        await p.stop()


async def read(bootstrap: str, topic: str, last: bytes) -> list[tuple[int, bytes, bytes]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    tp = TopicPartition(topic, 0)
    try:
        c.assign([tp])
        got: list[tuple[int, bytes, bytes]] = []
        while not got or got[-1][2] != last:
            for ms in (await c.getmany(tp, timeout_ms=500)).values():
                got += [(m.offset, m.key, m.value) for m in ms]
        return got
    finally:
        await c.stop()


def test_a_changelog_is_compacted_at_start_and_reads_to_the_same_table(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    try:
        bootstrap = b.start()
        asyncio.run(setup(bootstrap))
        assert asyncio.run(produce(bootstrap, CHANGELOG, WRITES)) == list(range(len(WRITES)))
        asyncio.run(produce(bootstrap, OTHER, WRITES))
        before = asyncio.run(read(bootstrap, CHANGELOG, b"5"))
        b.stop()

        bootstrap = b.start("--compact", PATTERN)
        # a1, a2 and b1 have later versions; c1 and the last two do not.
        assert batch_count(records_dir(b.data, CHANGELOG)) == len(WRITES) - 3
        assert batch_count(records_dir(b.data, OTHER)) == len(WRITES)
        after = asyncio.run(read(bootstrap, CHANGELOG, b"5"))
        assert {k: v for _, k, v in after} == {k: v for _, k, v in before} == {b"a": b"a3", b"b": b"b2",
                                                                               b"c": b"c1", b"~p": b"5"}
        assert [o for o, _, _ in after] == [3, 4, 5, 6]
        assert asyncio.run(produce(bootstrap, CHANGELOG, [(b"a", b"a4")])) == [len(WRITES)]
        assert [(k, v) for _, k, v in asyncio.run(read(bootstrap, OTHER, b"5"))] == WRITES
    finally:
        b.stop()
