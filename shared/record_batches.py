"""Keyed records handed to an aiokafka producer as one record batch per partition.

`producer.send()` costs ~10 µs of Python per record (metadata wait, serialising, partitioner,
a future and a delivery wrapper each); a service that writes a whole consumer batch at once
pays that per record although the records leave together. Here each partition's records go
into one `BatchBuilder` and one `send_batch()`: the same records on the same partitions (the
partition is chosen from the key as aiokafka's default partitioner does for `send()`: murmur2
of the key over every partition of the topic), in the same order within a partition, with
acks as the producer is configured. A record batch is one unit at the broker: it is appended
whole or not at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


@dataclass(slots=True)
class Sent:
    """One record batch handed to the producer: its partition, its record count, and the
    future that the broker's acknowledgement resolves (to the batch's base offset)."""

    partition: int
    count: int
    future: asyncio.Future

    async def next_offset(self) -> int:
        """After the acknowledgement: the offset after the batch's last record."""
        md = await self.future
        return md.offset + self.count


async def send_keyed(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]]) -> list[Sent]:
    """Hand `records` (key, value) to the producer, one batch per partition (more where a
    partition's records exceed the producer's max_batch_size). Raises what `send_batch`
    raises when the producer refuses a batch (then no later batch was handed over)."""
    if not records:
        return []
    parts = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in records:
        by_partition.setdefault(_PARTITIONER(key, parts, parts), []).append((key, value))
    sent: list[Sent] = []
    for partition, recs in by_partition.items():
        batch = producer.create_batch()
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await _submit(producer, batch, topic, partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch")
        sent.append(await _submit(producer, batch, topic, partition))
    return sent


async def _submit(producer: AIOKafkaProducer, batch, topic: str, partition: int) -> Sent:
    count = batch.record_count()
    # Closed, so that no send() of this producer appends to it while it waits to be sent.
    batch.close()
    return Sent(partition, count, await producer.send_batch(batch, topic, partition=partition))
