"""Reading what ingest already wrote: output partitions read up to their high watermark, to
find the ingest ids of copies a failed or killed writer may have left there.

Used by the validator's recovery after a crash, and by the gateway to resolve a claim whose
produce may or may not have reached the broker. Two behaviours of Tansu 0.6.0, measured, shape
it: ListOffsets for the end (`end_offsets`) answers the last batch's base offset + 1, so reading
stops only at the high watermark that fetch responses carry; and ListOffsets by timestamp
(`offsets_for_times`) answers offset 0 whatever the time, which is safe (the read is only
longer: the whole partition) and is exact on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

log = logging.getLogger("pantau.ingest.scan")

# A broker that has just answered us again may still hold requests that reached it while it
# was stopped (a produce whose client gave up, in a socket buffer). It reads them as soon as it
# runs; reading the partition only this long after it first answered leaves it time to.
SETTLE_S = 1.0


async def read_to_high_watermark(
    consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int], on_record: Callable[[ConsumerRecord], None],
    done: Callable[[], bool] = lambda: False, deadline: float | None = None,
) -> None:
    """Pass every record from `starts` up to each partition's fetch high watermark to
    `on_record`, or stop early once `done()`. TimeoutError past `deadline` (monotonic).

    `consumer` is a group-less consumer used by one caller at a time: assign() replaces its
    partition states, so no high watermark from an earlier read can end this one early."""
    if not starts:
        return
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    remaining = set(starts)
    while remaining and not done():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} partitions not read to their end in time")
        got = await consumer.getmany(*remaining, timeout_ms=200, max_records=5000)
        for ms in got.values():
            for m in ms:
                on_record(m)
        for tp in list(remaining):
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= hw:
                remaining.discard(tp)


def ingest_id(record: ConsumerRecord) -> str:
    """The `ingest_id` of an output record, "" when it has none or is not JSON."""
    try:
        v = orjson.loads(record.value)
        return v.get("ingest_id", "") if isinstance(v, dict) else ""
    except (orjson.JSONDecodeError, TypeError):
        return ""


class Finder:
    """Looks for ingest ids on one output topic through one group-less consumer. Searches
    asked for while one runs are merged into the next (after a broker pause, hundreds of
    retries resolve at once; on Tansu each search reads whole partitions)."""

    def __init__(self, consumer: AIOKafkaConsumer, timeout_s: float, topic: str):
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.topic = topic
        self._queue: list[tuple[dict[int, tuple[int, set[str]]], asyncio.Future]] = []
        self._runner: asyncio.Task | None = None
        # Since when the broker has answered every search request (None after a failure):
        # searches read only SETTLE_S after that.
        self._answering_since: float | None = None

    async def find(self, wanted: dict[int, tuple[int, set[str]]]) -> set[str]:
        """Which of the wanted ingest ids are on the topic: {partition: (written no earlier
        than this time in ms, {ids})}. Raises TimeoutError (or a KafkaError) when the broker
        does not answer in time."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((wanted, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # Waits for the search in progress, then its own: two searches and the settling.
        return await asyncio.wait_for(asyncio.shield(fut), 2 * self.timeout_s + SETTLE_S)

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            merged: dict[int, tuple[int, set[str]]] = {}
            for wanted, _ in batch:
                for p, (since, ids) in wanted.items():
                    s, i = merged.get(p, (since, set()))
                    merged[p] = (min(s, since), i | ids)
            try:
                found = await self._search(merged)
            except Exception as e:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for wanted, fut in batch:
                if not fut.done():
                    fut.set_result({i for _, ids in wanted.values() for i in ids if i in found})

    async def _search(self, wanted: dict[int, tuple[int, set[str]]]) -> set[str]:
        deadline = time.monotonic() + self.timeout_s + SETTLE_S
        tps = {TopicPartition(self.topic, p): since for p, (since, _) in wanted.items()}
        try:
            found_at = await asyncio.wait_for(self.consumer.offsets_for_times(tps), self.timeout_s)
        except BaseException:
            self._answering_since = None
            raise
        if self._answering_since is None:
            self._answering_since = time.monotonic()
        await asyncio.sleep(max(0.0, self._answering_since + SETTLE_S - time.monotonic()))
        starts = {tp: o.offset for tp, o in found_at.items() if o is not None}  # None: nothing since
        ids = set().union(*(i for _, i in wanted.values()))
        found: set[str] = set()
        read = 0

        def take(m: ConsumerRecord) -> None:
            nonlocal read
            read += 1
            i = ingest_id(m)
            if i in ids:
                found.add(i)

        try:
            await read_to_high_watermark(self.consumer, starts, take, done=lambda: found == ids, deadline=deadline)
        except BaseException:
            self._answering_since = None
            raise
        # One line per search (searches follow failures only): what was read, so that a copy
        # written twice can be traced to the range that missed the first.
        ends = {tp.partition: (o, self.consumer.highwater(tp)) for tp, o in starts.items()}
        log.info("searched %s for %d ingest ids: %d found in %d records read; partition: (from offset, "
                 "high watermark) %s; nothing since the claim time in %s", self.topic, len(ids), len(found), read,
                 ends, sorted(tp.partition for tp in tps if tp not in starts) or "none")
        return found
