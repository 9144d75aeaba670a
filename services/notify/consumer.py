"""Kafka in and out for incidents.

In: `ScoreConsumer` reads `pantau.scores.v1` in a consumer group and turns each score update
into an incident change (one incident per (kabupaten/kota or province, category): later
updates change it, they never open a second one). Offsets are committed only after the
batch's changes are in Redis; a replayed update changes nothing.

Out: each change's lifecycle events go to the Redis outbox atomically with it;
`escalation_publisher` makes the publisher (services/notify/outbox.py) that moves them to
`pantau.escalations.v1` (at least once: a consumer can drop repeats by (incident_id, status,
step, updated_at)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import datetime
from typing import Callable, Sequence

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError
from pydantic import ValidationError

from shared import metrics, topics
from shared.kafka import CONSUMER_DEFAULTS, report_lag, stop_quietly
from services.notify.delivery_records import e2e_key
from shared.notify_config import Policy
from services.notify.store import K_OUTBOX, IncidentStore
from services.notify.transitions import apply_update, open_incident
from services.notify.incident import Change, incident_key, new_incident_id
from shared.scores import ScoreUpdate
from services.notify.outbox import OutboxPublisher
from services.notify.incident_metrics import count_change
from services.notify.wakeups import release_held
from shared.retry import backoff_s

log = logging.getLogger("pantau.notify.consumer")


class ScoreHandler:
    """Applies one score update to Redis (no Kafka here, so tests can drive it directly)."""

    def __init__(self, store: IncidentStore, policies: Sequence[Policy], auto_resolve_buckets: int,
                 language: str = "id", clock: Callable[[], float] = time.time, wake: Callable[[], None] = lambda: None):
        self.store = store
        self.policies = policies
        self.auto_n = auto_resolve_buckets
        self.language = language
        self.clock = clock
        self.wake = wake

    async def handle(self, u: ScoreUpdate) -> Change | None:
        now = self.clock()
        region = u.incident_region
        _, change = await self.store.upsert(
            incident_key(region, u.category),
            on_new=lambda closed: self._open(u, now, closed),
            on_open=lambda inc: apply_update(inc, u, self.policies, self.auto_n, now, self.language),
        )
        await self._saved(change, now)
        return change

    def _open(self, u: ScoreUpdate, now: float, closed: dict | None) -> Change | None:
        region = u.incident_region
        return open_incident(new_incident_id(region, u.category, now), u, self.policies, now, self.language, closed)

    async def _saved(self, change: Change | None, now: float) -> None:
        count_change(change)
        woke = await release_held(self.store, change, now)
        if change is not None and (change.events or change.incident.broadcasts or woke):
            self.wake()

    async def handle_batch(self, updates: Sequence[ScoreUpdate]) -> list[Change | None]:
        """Apply a batch as `handle` would one by one, in fewer round trips: updates for
        different (region, category) pairs touch different incidents, so each round takes the
        next update of every pair in the batch, reads their incidents in one round trip and
        saves the changes in another. A pair's updates keep their order (one per round); a
        save that meets a concurrent change is redone alone through `handle`."""
        pending: dict[str, deque[tuple[int, ScoreUpdate]]] = {}
        for i, u in enumerate(updates):
            pending.setdefault(incident_key(u.incident_region, u.category), deque()).append((i, u))
        out: list[Change | None] = [None] * len(updates)
        while pending:
            now = self.clock()
            this = [(key, *q.popleft()) for key, q in pending.items()]
            pending = {key: q for key, q in pending.items() if q}
            plans = []
            for (key, i, u), (inc, closed) in zip(this, await self.store.load_many([k for k, _, _ in this])):
                change = (apply_update(inc, u, self.policies, self.auto_n, now, self.language) if inc is not None
                          else self._open(u, now, closed))
                if change is not None:
                    plans.append((i, u, change, inc.version if inc is not None else 0))
            saved = await self.store.save_many([(change, version) for _, _, change, version in plans])
            for (i, u, change, _), ok in zip(plans, saved):
                if ok is None:
                    out[i] = await self.handle(u)
                else:
                    out[i] = change
                    await self._saved(change, now)
        return out


def parse_update(raw: bytes | None) -> ScoreUpdate | None:
    if raw is None:
        return None
    try:
        return ScoreUpdate.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError):
        return None


class ScoreConsumer:
    """The consumer-group loop around ScoreHandler."""

    def __init__(self, bootstrap: str, group: str, handler: ScoreHandler):
        self.bootstrap = bootstrap
        self.group = group
        self.handler = handler
        self.consumer: AIOKafkaConsumer | None = None
        self.processed = 0

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(topics.SCORES_V1, bootstrap_servers=self.bootstrap, group_id=self.group,
                                         **CONSUMER_DEFAULTS)
        await self.consumer.start()

    async def stop(self) -> None:
        await stop_quietly(self.consumer)

    async def run(self, stop: asyncio.Event) -> None:
        if self.consumer is None:
            await self.start()  # here, not before the API: joining the group takes seconds
        assert self.consumer is not None
        # A batch's offsets are committed while the next batch is fetched and applied: under
        # load the commit round trip was ~15% of each cycle, which every waiting update sat
        # through. One commit at a time, in order, each only after its batch is in Redis.
        committing: asyncio.Task | None = None
        try:
            while not stop.is_set():
                offsets = await self._apply_next(stop)
                if offsets is None:
                    continue
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(offsets))
        finally:
            if committing is not None:
                await asyncio.gather(committing, return_exceptions=True)

    async def _apply_next(self, stop: asyncio.Event) -> dict | None:
        """Fetch one batch and apply it to Redis; the offsets it may commit, or None (nothing
        fetched, or stopping before Redis came back: the batch is read again after restart)."""
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
        if not batches:
            await report_lag(self.consumer, self.group)
            return None
        updates, received = [], []
        for tp, msgs in batches.items():
            for m in msgs:
                u = parse_update(m.value)
                if u is None:
                    metrics.SCORE_UPDATES_REJECTED.inc()
                    log.warning("unreadable score update at %s/%d offset %d; skipped", tp.topic, tp.partition,
                                m.offset)
                    continue
                updates.append(u)
                received.append(received_at(m.headers))
        if not await self._apply(updates, received, stop):
            return None
        self.processed += len(updates)
        return {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}

    async def _commit(self, offsets: dict) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError:
            # A rebalance took the partitions meanwhile; their next owner replays the batch,
            # which changes nothing already applied.
            log.warning("offset commit lost to a rebalance; the batch will be replayed")
        except Exception as e:  # the broker away: the next batch's commit covers these offsets too
            log.warning("offset commit failed (%s: %s); a later commit or a replay covers it", type(e).__name__, e)
        await report_lag(self.consumer, self.group)

    async def _apply(self, updates: list[ScoreUpdate], received: list[float | None], stop: asyncio.Event) -> bool:
        """Apply the batch to Redis, trying again while Redis is away (restarting, or loading its
        append-only file): the offsets stay put meanwhile, and a partly applied batch applied
        again changes nothing. Exiting instead left the restart to a supervisor, with every
        update of the outage read again. False: `stop` came first."""
        failures = 0
        while True:
            try:
                # Each pair's updates are applied in the order this loop once applied them one by one.
                changes = await self.handler.handle_batch(updates)
                await self.note_received(changes, received)
                return True
            except (aioredis.RedisError, OSError) as e:
                failures += 1
                delay = backoff_s(failures, 0.1, 5.0)
                log.warning("applying %d score updates failed (%s: %s); retrying in %.1f s",
                            len(updates), type(e).__name__, e, delay)
            with contextlib.suppress(asyncio.TimeoutError):  # waited out: retry the updates
                await asyncio.wait_for(stop.wait(), delay)
                return False

    async def note_received(self, changes: Sequence[Change | None], received: Sequence[float | None]) -> None:
        """Remember when the report behind each newly opened incident was received, for the
        delivery worker to observe pantau_end_to_end_seconds at its first delivered page. A
        metric, not a guarantee: a crash right here, or a page delivered before this lands,
        only leaves that one incident unmeasured."""
        opened = [(c.incident.id, t) for c, t in zip(changes, received) if c is not None and c.opened and t]
        if opened:
            async with self.handler.store.r.pipeline(transaction=False) as pipe:
                for incident_id, t in opened:
                    pipe.set(e2e_key(incident_id), repr(t), nx=True, ex=86400)
                await pipe.execute()


def received_at(headers: Sequence[tuple[str, bytes]] | None) -> float | None:
    """The pantau-received-at header that scoring puts on an update, as epoch seconds."""
    for name, v in headers or ():
        if name == topics.RECEIVED_AT_HEADER:
            try:
                return datetime.fromisoformat(v.decode()).timestamp()
            except (UnicodeDecodeError, ValueError):
                return None
    return None


def escalation_publisher(r: aioredis.Redis, producer: AIOKafkaProducer) -> OutboxPublisher:
    """The publisher of the lifecycle-event outbox to `pantau.escalations.v1`."""
    return OutboxPublisher(r, producer, key=K_OUTBOX, lock_key="pantau:notify:outbox:lock",
                           topic=topics.ESCALATIONS_V1, what="lifecycle events", batch=200, lease_s=10.0, poll_s=0.2)
