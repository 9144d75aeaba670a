"""Delivery: getting one notice to one contact over one channel, despite weak links,
rate limits, dead endpoints and restarts of the notify service itself.

    submit ─▶ Redis record + due set ─▶ run(): claim (lease) ─▶ channel.send ─▶ finish
                                                     ▲                            │
                                     retry (backoff) ┘    fallback channel ◀── failed ──▶ dead letter
    every attempt ─▶ incident timeline (Redis) + outbox ─▶ pantau.notifications.v1

**Identity.** A delivery id is `sha256(incident_id, event_key, contact_id, channel_id)[:32]`:
the caller's restart and resubmit of the same event finds the record already there (created
atomically, if absent) and sends nothing again. The job is in Redis before `submit` returns.

**Claims.** Workers claim due jobs in one Lua script that moves each job's due time to the
end of a lease (`timeout_s + lease_margin_s`) and numbers the attempt. Two workers never hold
the same attempt; a worker that dies leaves its lease to expire, and the next claim takes the
job over as a new attempt (the dead one is recorded as `interrupted`). A late outcome from a
worker that lost its lease is discarded (the attempt number fences it). Times come from the
Redis server clock, so workers on different machines agree about leases.

**What cannot be promised.** An attempt that reached the receiver but whose answer never
came back (a timeout, or the worker killed mid-request) is retried: the receiver may get it
twice. Exactly-once is not possible from the sender's side. Every attempt of one delivery
carries the same id (`X-Pantau-Delivery` for webhooks, `Message-ID` for e-mail, `{delivery_id}`
in SMS gateway templates), so a receiver that remembers ids drops the repeat; Telegram, Slack
and plain SMS have no such key, and a coordinator may see such a message twice.

**Outcomes.** Each attempt ends `delivered`, `retry` (rescheduled with exponential backoff and
full jitter, at least the peer's `retry_after`), `failed` (given up on this channel; the fallback
channel, if any, gets a new delivery of its own) or `dead` (given up with no fallback left: a
dead-letter record). Each outcome is appended, in the same Lua script that records it, to the
incident's timeline and to an outbox that is published to `pantau.notifications.v1`
(at least once; consumers key on `(delivery_id, attempt, outcome)`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

import orjson
import redis.asyncio as aioredis

from services.notify.channels.base import Channel, Reason, Result, failure
from services.notify.delivery_records import (
    CLAIM_LUA, FINISH_LUA, SUBMIT_LUA, DEAD_KEY, DUE_KEY, OUTBOX_KEY, OUTBOX_LOCK_KEY, PREFIX, delivery_id, e2e_key,
    record_key,
)
from services.notify.outbox import OutboxPublisher
from shared.script_batch import ScriptBatch
from services.notify.messages import Notice
from shared import metrics, topics
from shared.channels_config import ContactConfig, DeliverySettings, contact_configs
from shared.retry import backoff_s
from shared.times import rfc3339

log = logging.getLogger("pantau.delivery")


# A peer's own wait hint is honoured up to this long.
MAX_RETRY_AFTER_S = 3600.0
OUTBOX_BATCH = 500
OUTBOX_LOCK_MS = 15_000


def backoff_delay(attempt: int, initial_s: float, max_s: float, rand: float, retry_after_s: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): full jitter over an
    exponential cap, `rand` in [0, 1); never shorter than the peer's `retry_after_s`."""
    delay = backoff_s(attempt, initial_s, max_s, rand)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed attempt: `previous` is the job's state before the claim (`sending` means
    a dead worker's lease was taken over; `exhausted` that it was the last allowed attempt)."""

    id: str
    attempt: int
    previous: str
    record: dict[str, str] | None = None  # its fields as claimed (None: read them when attempting)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


EventListener = Callable[[dict[str, Any]], "Awaitable[None] | None"]


class Deliverer:
    """Submits deliveries and runs the worker that sends them (see the module docstring)."""

    def __init__(
        self,
        contacts: Iterable[Any],
        redis: aioredis.Redis,
        producer: Any,
        channels: "dict[str, Channel] | Any",
        *,
        settings: DeliverySettings = DeliverySettings(),
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.time,
        on_event: EventListener | None = None,
    ):
        self.redis = redis
        self.producer = producer
        self.channels = channels
        self.contacts: dict[str, ContactConfig] = {c.id: c for c in contact_configs(contacts)}
        self.settings = settings
        self.rng = rng or random.Random().random
        self.clock = clock
        self.on_event = on_event
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._submit = redis.register_script(SUBMIT_LUA)
        self._claim = redis.register_script(CLAIM_LUA)
        self._finish = redis.register_script(FINISH_LUA)
        # Submits from a batch of firings, and the outcomes of attempts answered together,
        # each share one pipeline (shared/script_batch.py).
        self.batch = ScriptBatch(redis)
        self.outbox = OutboxPublisher(redis, producer, key=OUTBOX_KEY, lock_key=OUTBOX_LOCK_KEY,
                                      topic=topics.NOTIFICATIONS_V1, what="delivery outcomes", batch=OUTBOX_BATCH,
                                      lease_s=OUTBOX_LOCK_MS / 1000, poll_s=self.settings.poll_interval_s * 4,
                                      owner=self.worker)
        self._wake = asyncio.Event()

    # ----------------------------------------------------------------------- submit

    async def submit(
        self,
        incident_id: str,
        event_key: str,
        contact_id: str | None,
        channel_id: str,
        notice: Notice,
        fallback_channel_id: str | None = None,
    ) -> str:
        """Queue `notice` for `contact_id` on `channel_id` and return the delivery id.

        Idempotent: the same (incident_id, event_key, contact_id, channel_id) returns the same
        id and queues nothing new. The job is persisted before this returns. Raises ValueError
        for an unknown channel or contact (a configuration mistake, not a delivery problem)."""
        channel = self._channel(channel_id)
        if fallback_channel_id is not None:
            self._channel(fallback_channel_id)
            if fallback_channel_id == channel_id:
                raise ValueError("the fallback channel must differ from the channel")
        if contact_id is not None and contact_id not in self.contacts:
            raise ValueError(f"unknown contact {contact_id!r}")
        if notice.incident_id != incident_id:
            raise ValueError("notice.incident_id differs from incident_id")
        did = delivery_id(incident_id, event_key, contact_id, channel_id)
        fields = {
            "id": did, "incident_id": incident_id, "event_key": event_key, "contact_id": contact_id or "",
            "channel_id": channel_id, "channel_type": channel.type, "fallback_channel_id": fallback_channel_id or "",
            "parent_id": "", "notice": orjson.dumps(notice.to_dict()).decode(), "attempt": 0, "state": "pending",
            "lease_ms": self._lease_ms(channel), "max_attempts": channel.config.max_attempts,
        }
        flat: list[Any] = [x for kv in fields.items() for x in kv]
        created = await self.batch.call(self._submit, [record_key(did), DUE_KEY], [did, *flat])
        if int(created):
            self._wake.set()
        return did

    def _channel(self, channel_id: str) -> Channel:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise ValueError(f"unknown channel {channel_id!r}") from None

    def _lease_ms(self, channel: Channel) -> int:
        return int((channel.config.timeout_s + self.settings.lease_margin_s) * 1000)

    # ----------------------------------------------------------------------- worker

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send due jobs until `stop` is set, then let in-flight attempts finish and
        flush the outbox. Cancelling the task instead abandons in-flight attempts: their leases
        expire and another worker (or this one, restarted) takes them over."""
        inflight: set[asyncio.Task] = set()
        publisher = asyncio.create_task(self.outbox.run(stop), name="pantau-delivery-outbox")
        stop_task = asyncio.create_task(stop.wait())
        wake_task = asyncio.create_task(self._wake.wait())
        graceful = False
        # Whether the last claim may have left due jobs behind for want of a free slot: only
        # then does a finished attempt send the loop to claim again. Otherwise each attempt
        # that finished cost a claim (a round trip) that found nothing.
        more = True
        try:
            while not stop.is_set():
                if wake_task.done():
                    self._wake.clear()
                    wake_task = asyncio.create_task(self._wake.wait())
                free = self.settings.concurrency - len(inflight)
                wait_s = self.settings.poll_interval_s
                if free > 0:
                    try:
                        jobs, now_ms, next_ms = await self.claim(free)
                    except (aioredis.RedisError, OSError) as e:
                        log.warning("claim failed (%s); retrying", type(e).__name__)
                        jobs, now_ms, next_ms = [], 0, -1
                    for job in jobs:
                        t = asyncio.create_task(self._attempt_safely(job), name=f"pantau-delivery-{job.id}")
                        inflight.add(t)
                        t.add_done_callback(inflight.discard)
                    more = len(jobs) >= free
                    if next_ms >= 0:
                        wait_s = min(wait_s, max(0.0, (next_ms - now_ms) / 1000))
                # Sleep until the next job is due, something is submitted or rescheduled here,
                # an attempt frees a slot that a due job waits for, or the poll interval passes
                # (submits from other processes).
                await asyncio.wait({stop_task, wake_task, *(inflight if more else ())}, timeout=wait_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            graceful = True
        finally:
            stop_task.cancel()
            wake_task.cancel()
            if graceful:
                if inflight:
                    await asyncio.gather(*inflight, return_exceptions=True)
                await publisher  # it sees `stop` and flushes what is left
            else:
                for t in (*inflight, publisher):
                    t.cancel()

    async def claim(self, limit: int) -> tuple[list[Job], int, int]:
        """Claim up to `limit` due jobs (one worker step, public for tests and tools).
        Returns the jobs, the Redis time and the earliest due time left (-1: none)."""
        res = await self._claim(keys=[DUE_KEY, OUTBOX_KEY], args=[limit, rfc3339(self.clock()), PREFIX, self.worker])
        now_ms, next_ms = int(res[0]), int(res[1])
        jobs = []
        for i in range(2, len(res), 5):
            flat = res[i + 4]
            job = Job(_s(res[i]), int(res[i + 1]), _s(res[i + 2]),
                      {_s(flat[j]): _s(flat[j + 1]) for j in range(0, len(flat), 2)})
            jobs.append(job)
            lost = _s(res[i + 3])
            if lost:
                ev = orjson.loads(lost)
                metrics.NOTIFICATION_ATTEMPTS.labels(ev["channel_type"], "interrupted").inc()
                log.warning("delivery %s attempt %s was interrupted (lease expired); taking it over",
                            job.id, ev["attempt"])
                await self._emitted(ev)
        if jobs:
            self.outbox.wake()
        return jobs, now_ms, next_ms

    async def _attempt_safely(self, job: Job) -> None:
        try:
            await self.attempt(job)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Redis gone mid-attempt: the lease expires and the job is taken over
            log.error("delivery %s attempt %d not recorded: %s", job.id, job.attempt, type(e).__name__)

    async def attempt(self, job: Job) -> str | None:
        """Send one claimed attempt and record its outcome; returns the recorded outcome, or
        None when the attempt was no longer ours."""
        rec = job.record or {_s(k): _s(v) for k, v in (await self.redis.hgetall(record_key(job.id))).items()}
        if not rec:
            return None
        channel = self.channels.get(rec["channel_id"])
        contact = self.contacts.get(rec["contact_id"]) if rec["contact_id"] else None
        max_attempts = int(rec["max_attempts"])
        if job.previous == "exhausted":
            result = failure(Reason.timeout, False, "the last attempt was interrupted")
        elif channel is None:
            result = failure(Reason.client_error, False, f"channel {rec['channel_id']} is not configured")
        elif rec["contact_id"] and contact is None:
            result = failure(Reason.client_error, False, f"contact {rec['contact_id']} is not configured")
        else:
            result = await self._send(channel, contact, Notice.from_dict(orjson.loads(rec["notice"])), job.id)

        delay_s = 0.0
        if result.ok:
            outcome = "delivered"
        elif result.retry and job.attempt < max_attempts:
            outcome = "retry"
            cfg = channel.config  # type: ignore[union-attr]
            delay_s = backoff_delay(job.attempt, cfg.backoff_initial_s, cfg.backoff_max_s, self.rng(),
                                    result.retry_after_s)
        else:
            outcome = "failed"
        fb = self.channels.get(rec["fallback_channel_id"]) if rec["fallback_channel_id"] else None
        fb_id = delivery_id(rec["incident_id"], rec["event_key"], rec["contact_id"] or None, fb.id) if fb else ""
        res = await self.batch.call(
            self._finish,
            [record_key(job.id), DUE_KEY, OUTBOX_KEY, DEAD_KEY, record_key(fb_id) if fb_id else record_key("-"),
             e2e_key(rec["incident_id"])],
            [job.id, job.attempt, outcome, result.reason.value, result.detail, rfc3339(self.clock()),
             int(delay_s * 1000), self.settings.retention_days * 86400, fb_id, fb.id if fb else "",
             fb.type if fb else "", self._lease_ms(fb) if fb else 0, fb.config.max_attempts if fb else 0,
             self.settings.dead_letter_max],
        )
        if not int(res[0]):
            log.warning("delivery %s attempt %d finished after its lease was taken over; outcome discarded",
                        job.id, job.attempt)
            return None
        final, now_ms, origin_ms = _s(res[1]), int(res[2]), int(res[3])
        ctype = rec["channel_type"]
        metrics.NOTIFICATION_ATTEMPTS.labels(ctype, final).inc()
        if not result.ok:
            metrics.NOTIFICATION_FAILURES.labels(ctype, result.reason.value).inc()
        if final == "delivered":
            metrics.NOTIFICATION_DELIVERY_SECONDS.labels(ctype).observe(max(0.0, (now_ms - origin_ms) / 1000))
            # Taken (GETDEL) by the script that recorded the delivery: only the incident's first
            # delivered page is observed, whichever worker sends it.
            received = res[5]
            if received:
                metrics.END_TO_END_SECONDS.observe(max(0.0, now_ms / 1000 - float(received)))
        elif final == "retry":
            metrics.NOTIFICATION_RETRIES.labels(ctype).inc()
            self._wake.set()  # the loop learns the retry's due time from its next claim
        elif final == "dead":
            metrics.NOTIFICATION_DEAD_LETTERS.labels(ctype).inc()
            log.error("delivery %s (%s, incident %s) dead-lettered after %d attempts: %s %s", job.id,
                      rec["channel_id"], rec["incident_id"], job.attempt, result.reason.value, result.detail)
        elif final == "failed":
            log.warning("delivery %s (%s) failed after %d attempts (%s); falling back to %s as %s", job.id,
                        rec["channel_id"], job.attempt, result.reason.value, fb.id if fb else "-", fb_id)
            self._wake.set()
        self.outbox.wake()
        await self._emitted(orjson.loads(res[4]))
        return final

    async def _send(self, channel: Channel, contact: ContactConfig | None, notice: Notice, did: str) -> Result:
        """One send, bounded by the channel's timeout whatever the transport does."""
        try:
            async with asyncio.timeout(channel.config.timeout_s + 1.0):
                return await channel.send(contact, notice, did)
        except TimeoutError:
            return failure(Reason.timeout, True, "attempt exceeded timeout_s")
        except Exception as e:  # a channel bug; its message may quote secrets, so only the type
            log.error("channel %s raised %s", channel.id, type(e).__name__)
            return failure(Reason.client_error, True, f"channel raised {type(e).__name__}")

    async def _emitted(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            r = self.on_event(event)
            if asyncio.iscoroutine(r):
                await r

    # ----------------------------------------------------------------------- reading

    async def get(self, did: str) -> dict[str, Any] | None:
        """A delivery record (state, attempt, last reason, ...), or None."""
        rec = {_s(k): _s(v) for k, v in (await self.redis.hgetall(record_key(did))).items()}
        if not rec:
            return None
        rec["notice"] = orjson.loads(rec["notice"])
        return rec

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        return [orjson.loads(x) for x in await self.redis.lrange(DEAD_KEY, 0, limit - 1)]

