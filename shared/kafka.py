"""Kafka client settings and topic creation shared by every service.

Tansu (the embedded broker) completes a group join only after half the session timeout, so
short session timeouts make a restarted worker resume in ~3 s instead of ~30 s; Apache Kafka
is fine with the same values.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any, Awaitable, Callable

from shared import topics
from shared.retry import backoff_s

# How long a fetch waits on the broker for new records. Tansu often holds a waiting fetch
# until this runs out although records have arrived, so each consumer hop cost p50 ~150 ms at
# aiokafka's default 500 ms (Faust's is 1,500) against ~7 ms at 50 (measured 2026-11-28,
# README, Benchmarks). Apache Kafka answers at once either way; idle, this is 20 small
# fetches a second per consumer.
FETCH_MAX_WAIT_MS = 50

CONSUMER_DEFAULTS = dict(
    fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    session_timeout_ms=6000,
    heartbeat_interval_ms=1000,
    enable_auto_commit=False,
    auto_offset_reset="earliest",
)


def producer_settings(send_timeout_s: float = 5.0) -> dict:
    """Durable producer: acks=all, so a 202 means the broker has the report."""
    return dict(acks="all", linger_ms=2, request_timeout_ms=int(send_timeout_s * 1000), max_batch_size=1 << 20)


async def started(make: Callable[[], Any], discard: Callable[[Any], Awaitable[Any]], timeout_s: float,
                  first_s: float, max_s: float, retry_on: tuple[type[BaseException], ...] = (Exception,)) -> Any:
    """A client from `make()` once its start() succeeds: after a failure (one of `retry_on`) it
    is discarded and a new one tried, with backoff, until `timeout_s` has passed; then the error."""
    deadline = time.monotonic() + timeout_s
    failures = 0
    while True:
        client = make()
        try:
            await client.start()
            return client
        except retry_on:
            await discard(client)
            if time.monotonic() > deadline:
                raise
            failures += 1
            await asyncio.sleep(backoff_s(failures, first_s, max_s))


def ensure_topics(bootstrap: str, partitions: int, replication: int = 1, timeout_s: float = 20.0,
                  names: tuple[str, ...] = topics.ALL) -> None:
    """Create every topic of `names` (the contract's, by default) that does not exist yet (idempotent)."""
    asyncio.run(_ensure_topics(bootstrap, partitions, replication, timeout_s, names))


async def _ensure_topics(bootstrap: str, partitions: int, replication: int, timeout_s: float,
                         names: tuple[str, ...]) -> None:
    # aiokafka's admin client, because kafka-python 2.3's list_topics chokes on Tansu's
    # metadata (an ACL operation code it does not know).
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError

    admin = await started(lambda: AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pantau-admin"),
                          lambda a: a.close(), timeout_s, 0.05, 0.2, (KafkaConnectionError,))
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, replication) for t in names if t not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


async def stop_quietly(consumer) -> None:
    """Stop `consumer` (aiokafka; None if it never started) on the way out: a broker already
    gone must not turn a clean stop into a failure."""
    if consumer is not None:
        with suppress(Exception):
            await consumer.stop()


async def report_lag(consumer, group: str) -> None:
    """Set pantau_consumer_lag_messages for every partition `consumer` (aiokafka) owns.

    The high watermark comes with each fetch response and the position is local, so this costs
    no round trip; call it after every batch as well as when idle, or a consumer that never
    idles would show the lag of its last quiet moment."""
    from shared import metrics

    for tp in consumer.assignment():
        hw = consumer.highwater(tp)
        if hw is None:
            continue
        pos = await consumer.position(tp)
        metrics.CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, hw - pos))
