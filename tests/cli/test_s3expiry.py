"""The store's retention (cli/s3expiry.py) with the real Tansu `s3://` broker: old batches of an
expired topic go, the newest stays, other topics keep everything, and consumers and producers
carry on as after Kafka's compaction: offsets only grow, a committed offset in the deleted
range resumes at the oldest batch left."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cli.stack import Child, broker, create_bucket, free_port, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EXPIRED, KEPT = "bench.expired", "bench.kept"
AGE_S = 2.0


def records_dir(data: Path, topic: str) -> Path:
    return data / "tansu" / "clusters" / "tansu_cluster" / "topics" / topic / "partitions" / f"{0:010d}" / "records"


def batch_count(folder: Path) -> int:
    return sum(1 for n in folder.iterdir() if n.name.endswith(".batch")) if folder.is_dir() else 0


async def create(bootstrap: str, names: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    """One record batch per value (each awaited alone); the offsets the broker gave them."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:
        return [(await p.send_and_wait(topic, v, partition=0)).offset for v in values]
    finally:
        await p.stop()


async def read(bootstrap: str, topic: str, group: str | None, until: bytes) -> list[tuple[int, bytes]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await c.start()
    tp = TopicPartition(topic, 0)
    try:
        c.assign([tp])
        got: list[tuple[int, bytes]] = []
        while not got or got[-1][1] != until:
            for ms in (await c.getmany(tp, timeout_ms=500)).values():
                got += [(m.offset, m.value) for m in ms]
        return got
    finally:
        await c.stop()


async def commit(bootstrap: str, topic: str, group: str, offset: int) -> None:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign([TopicPartition(topic, 0)])
        await c.commit({TopicPartition(topic, 0): offset})
    finally:
        await c.stop()


def test_expired_batches_go_and_the_topic_reads_on(tmp_path: Path) -> None:
    data, logs = tmp_path / "data", tmp_path / "logs"
    store_port, broker_port = free_port(), free_port()
    rule = f"tansu/clusters/*/topics/{EXPIRED}/partitions/*/records={AGE_S:g}"
    store = Child("store", [sys.executable, "-m", "cli.s3store", "--port", str(store_port), "--expire", rule,
                            str(data)], logs / "store.log").start()
    tansu = None
    try:
        wait_port("127.0.0.1", store_port, 15, store.proc, "store")
        create_bucket(store_port)
        tansu = broker(broker_port, logs, store_port).start()
        wait_port("127.0.0.1", broker_port, 15, tansu.proc, "broker")
        bootstrap = f"127.0.0.1:{broker_port}"
        asyncio.run(create(bootstrap, (EXPIRED, KEPT)))
        old = [f"old-{i}".encode() for i in range(5)]
        asyncio.run(commit(bootstrap, EXPIRED, "behind", 0))
        assert asyncio.run(produce(bootstrap, EXPIRED, old)) == [0, 1, 2, 3, 4]
        asyncio.run(produce(bootstrap, KEPT, old))
        asyncio.run(commit(bootstrap, EXPIRED, "behind", 2))  # a group stopped inside what will go

        deadline = time.monotonic() + 60
        while batch_count(records_dir(data, EXPIRED)) > 1:
            assert store.alive and time.monotonic() < deadline, f"nothing expired; see {store.log_path}"
            time.sleep(0.2)
        assert batch_count(records_dir(data, KEPT)) == 5

        # A group whose committed offset was deleted resumes at the oldest batch left (the newest,
        # which is never deleted); offsets go on from the high watermark, never reused.
        assert asyncio.run(read(bootstrap, EXPIRED, "behind", b"old-4")) == [(4, b"old-4")]
        assert asyncio.run(produce(bootstrap, EXPIRED, [b"new"])) == [5]
        # old-4 may go now that it is not the newest: a reader skips the gap either way.
        assert asyncio.run(read(bootstrap, EXPIRED, None, b"new")) in ([(4, b"old-4"), (5, b"new")], [(5, b"new")])
        assert [v for _, v in asyncio.run(read(bootstrap, KEPT, None, b"old-4"))] == old
    finally:
        if tansu is not None:
            tansu.stop()
        store.stop()
