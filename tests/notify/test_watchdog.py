"""The watchdog's tail of `pantau.reports.v1` on a real broker and Redis: it keeps the newest
report time per source and, in the same Redis write, how far it has read each partition, so a
restart resumes right after what is already counted; and it reports its lag as
`pantau_consumer_lag_messages` like every other consumer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import metrics, topics
from services.notify.store import IncidentStore
from services.notify.watchdog import K_LAST_SEEN, K_POSITIONS, Watchdog, builtin_policy
from tests.notify.conftest import run
from tests.utils import wait_for_async


def report(source: str, i: int) -> bytes:
    return orjson.dumps({"event_id": f"wd-{source}-{i}", "source": source, "region_code": "65.71",
                         "received_at": datetime.now(timezone.utc).isoformat()})


async def end_offsets(bootstrap: str) -> dict[int, int]:
    """The end offset of each reports.v1 partition."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(topics.REPORTS_V1, p) for p in sorted(c.partitions_for_topic(topics.REPORTS_V1) or ())]
        c.assign(tps)
        await c.seek_to_end(*tps)
        return {tp.partition: await c.position(tp) for tp in tps}
    finally:
        await c.stop()


def lag_series(group: str) -> list[float]:
    return [s.value for m in metrics.CONSUMER_LAG.collect() for s in m.samples
            if s.labels.get("group") == group and s.labels.get("topic") == topics.REPORTS_V1]


def test_watchdog_stores_its_positions_with_what_it_read_resumes_there_and_reports_lag(
        fresh_redis: str, kafka_bootstrap: str) -> None:
    group = f"wd-{uuid.uuid4().hex[:8]}"
    first, second = f"src-{uuid.uuid4().hex[:6]}", f"src-{uuid.uuid4().hex[:6]}"

    async def t() -> None:
        r = aioredis.from_url(fresh_redis)
        p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await p.start()

        async def produce(source: str, n: int) -> dict[int, int]:
            for i in range(n):
                await p.send_and_wait(topics.REPORTS_V1, report(source, i), key=str(i).encode())
            return await end_offsets(kafka_bootstrap)

        async def read_to(end: dict[int, int], source: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                stored = {int(k): int(v) for k, v in (await r.hgetall(K_POSITIONS)).items()}
                return bool(await r.hexists(K_LAST_SEEN, source)) and all(
                    stored.get(part, 0) >= off for part, off in end.items() if off)
            return check

        async def watching(check: Callable[[], Awaitable[bool]], lag_zero: bool) -> None:
            wd = Watchdog(r, IncidentStore(r), kafka_bootstrap, group, [(first, 3600.0, "65.71"),
                                                                         (second, 3600.0, "65.71")],
                          builtin_policy(60), check_s=3600)
            stop = asyncio.Event()
            await wd.start()
            task = asyncio.create_task(wd.run(stop))
            try:
                await wait_for_async("the watchdog's positions and lag", check)
                if lag_zero:
                    async def no_lag() -> bool:
                        lags = lag_series(group)
                        return bool(lags) and sum(lags) == 0
                    await wait_for_async("zero lag", no_lag)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
                await wd.stop()

        try:
            end = await produce(first, 40)
            # Positions reach the end of every partition once the reports are counted, and the
            # lag metric has a series for the watchdog that comes down to 0.
            await watching(await read_to(end, first), lag_zero=True)
            # Restarted, it resumes from the stored positions: what it had counted before is
            # not read again (the forgotten `first` stays forgotten), the new reports are.
            await r.hdel(K_LAST_SEEN, first)
            end = await produce(second, 5)
            await watching(await read_to(end, second), lag_zero=False)
            assert not await r.hexists(K_LAST_SEEN, first)
        finally:
            await p.stop()
            await r.aclose()

    run(t())
