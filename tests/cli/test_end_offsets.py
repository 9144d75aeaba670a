"""A durable broker's end offset is the end of what it holds, even when every batch was written
within the same second (Tansu 0.6 takes the latest offset from the newest LastModified the
store lists): what Faust's changelog recovery, lag metrics and `seek_to_end` rely on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.cli.test_s3compact import CHANGELOG, Broker, produce, setup

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def ends(bootstrap: str) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        tp = TopicPartition(CHANGELOG, 0)
        return (await c.end_offsets([tp]))[tp]
    finally:
        await c.stop()


def test_the_end_offset_counts_every_batch_written_in_the_last_second(tmp_path: Path) -> None:
    b = Broker(tmp_path)
    try:
        bootstrap = b.start()
        asyncio.run(setup(bootstrap))
        offsets = asyncio.run(produce(bootstrap, CHANGELOG, [(b"k", b"%d" % i) for i in range(5)]))
        assert offsets == [0, 1, 2, 3, 4]
        assert asyncio.run(ends(bootstrap)) == 5
    finally:
        b.stop()
