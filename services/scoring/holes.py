"""Offsets that hold no record: how the scoring worker tells a hole in a partition from a
consumer that skipped messages.

The scorers apply each partition in strict offset order (services/scoring/agents.py): a record
past the next expected offset means the consumer went ahead, and they seek back. Kafka does not
promise every offset a record, though (compaction, transaction markers), and Tansu's `s3://`
engine leaves a hole when a power cut falls between its watermark and its batch while another
producer's later batch of the same partition is stored (the store sets a trailing hole back as
it starts, cli/s3watermarks.py, but cannot fill one with later records after it). Seeking back
to a hole then brings the same later record again, for good.

The test is a fetch of its own at the stuck offset, outside the group: a broker answers a fetch
with the records at or after the offset asked, so a first record further on proves there is
nothing before it to wait for.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import FETCH_MAX_WAIT_MS


async def first_offset_from(bootstrap: str, topic: str, partition: int, offset: int,
                            timeout_s: float = 5.0) -> int | None:
    """The offset of the first record the broker serves from `offset` on in `partition`, or
    None if it serves none within `timeout_s` (a slow broker is no proof of a hole)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        got = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
        records = got.get(tp, [])
        return records[0].offset if records else None
    finally:
        await consumer.stop()
