"""shared.record_batches on a real broker: records sent as one batch per partition land on the
partition aiokafka's own send() picks for their key, in order, and each batch's acknowledgement
gives the offset after its last record."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cli.stack import EmbeddedStack
from shared.kafka import producer_settings
from shared.record_batches import send_keyed


async def _check(bootstrap: str) -> None:
    topic = f"test.record-batches.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(5))
    await producer.start()
    try:
        # Where send() puts each key: the placement send_keyed must keep.
        keys = [f"65.{i:02d}".encode() for i in range(1, 13)]
        placed = {k: (await (await producer.send(topic, b"probe", key=k))).partition for k in keys}
        before = {p: 0 for p in set(placed.values())}
        records = [(keys[i % len(keys)], f"r{i}".encode() + b"x" * 4000) for i in range(1200)]
        # 1200 records of ~4 KB: more than one 1 MiB batch for some partitions.
        sent = await send_keyed(producer, topic, records)
        assert len(sent) > len(set(placed.values()))
        ends = await asyncio.gather(*(s.next_offset() for s in sent))
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or await _parts(consumer, topic))]
        consumer.assign(tps)
        got: dict[int, list[tuple[bytes, bytes]]] = {}
        want = len(records) + len(keys)
        while sum(len(v) for v in got.values()) < want:
            for tp, ms in (await consumer.getmany(timeout_ms=1000)).items():
                got.setdefault(tp.partition, []).extend((m.key, m.value) for m in ms)
    finally:
        await consumer.stop()
    for k, p in placed.items():
        mine = [v for key, v in got[p] if key == k and v != b"probe"]
        assert mine == [v for key, v in records if key == k]  # its partition, in order
    for s, end in zip(sent, ends):
        before[s.partition] = max(before[s.partition], end)
    for p, end in before.items():
        assert end == len(got[p])  # the offset after the partition's last record


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(topic) or set()


def test_batches_land_where_send_would_put_them(stack: EmbeddedStack) -> None:
    asyncio.run(_check(stack.config.kafka.bootstrap_servers))
