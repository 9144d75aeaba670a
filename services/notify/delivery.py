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
import hashlib
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
from services.notify.lease import Lease
from services.notify.messages import Notice
from shared import metrics, topics
from shared.channels_config import ContactConfig, DeliverySettings, contact_configs
from shared.times import rfc3339

log = logging.getLogger("pantau.delivery")

PREFIX = "pantau:delivery:"
DUE_KEY = "pantau:delivery:due"
OUTBOX_KEY = "pantau:delivery:outbox"
OUTBOX_LOCK_KEY = "pantau:delivery:outbox:lock"
DEAD_KEY = "pantau:delivery:dead"
TIMELINE_KEY = "pantau:incident:{}:timeline"

# A peer's own wait hint is honoured up to this long.
MAX_RETRY_AFTER_S = 3600.0
OUTBOX_BATCH = 500
OUTBOX_LOCK_MS = 15_000


def delivery_id(incident_id: str, event_key: str, contact_id: str | None, channel_id: str) -> str:
    """The deterministic id of one delivery (32 hex characters)."""
    raw = "\x1f".join((incident_id, event_key, contact_id or "", channel_id))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def record_key(did: str) -> str:
    return PREFIX + did


def timeline_key(incident_id: str) -> str:
    return TIMELINE_KEY.format(incident_id)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rand: float, retry_after_s: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): full jitter over an
    exponential cap, `rand` in [0, 1); never shorter than the peer's `retry_after_s`."""
    cap = min(max_s, initial_s * 2 ** min(attempt - 1, 60))
    delay = rand * cap
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


# --------------------------------------------------------------------------- Lua
# Shared by every script: the Redis clock, and `emit`, which appends one attempt outcome to
# the outbox (contract fields) and to the incident timeline (plus kind, detail, extras).
_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function emit(outbox, key, id, attempt, outcome, reason, at, detail, extra)
  local f = redis.call('HMGET', key, 'incident_id', 'event_key', 'channel_id', 'channel_type', 'contact_id')
  local contact = f[5]
  if not contact or contact == '' then contact = cjson.null end
  local ev = {delivery_id = id, incident_id = f[1], event_key = f[2], channel = f[3], channel_type = f[4],
              contact = contact, attempt = tonumber(attempt), outcome = outcome, reason = reason, at = at}
  local line = cjson.encode(ev)
  redis.call('RPUSH', outbox, line)
  ev['kind'] = 'delivery'
  ev['detail'] = detail
  if extra then for k, v in pairs(extra) do ev[k] = v end end
  redis.call('RPUSH', 'pantau:incident:' .. f[1] .. ':timeline', cjson.encode(ev))
  return line
end
"""

# KEYS: record, due. ARGV: id, then field/value pairs. Returns 1 if created, 0 if it existed.
_SUBMIT = _LIB + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HSET', KEYS[1], 'created_ms', now, 'origin_ms', now, 'next_ms', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1
"""

# KEYS: due, outbox. ARGV: limit, at (RFC 3339), record key prefix, worker name.
# Returns {now_ms, next_due_ms or -1, then per claimed job: id, attempt, previous state,
# interrupted-event JSON or '', the record as claimed (HGETALL: the attempt needs no read of
# its own)}. A job found 'sending' is one whose lease expired.
_CLAIM = _LIB + """
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {now, -1}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local state = redis.call('HGET', key, 'state')
  if state == 'pending' or state == 'sending' then
    local attempt = tonumber(redis.call('HGET', key, 'attempt'))
    local lost = ''
    if state == 'sending' then
      lost = emit(KEYS[2], key, id, attempt, 'interrupted', 'timeout', ARGV[2],
                  'no outcome recorded before the lease expired: the worker stopped mid-attempt', nil)
    end
    if state == 'pending' or attempt < tonumber(redis.call('HGET', key, 'max_attempts')) then
      attempt = attempt + 1
    else
      state = 'exhausted'
    end
    redis.call('HSET', key, 'attempt', attempt, 'state', 'sending', 'claimed_ms', now, 'worker', ARGV[4])
    redis.call('ZADD', KEYS[1], now + tonumber(redis.call('HGET', key, 'lease_ms')), id)
    out[#out + 1] = id
    out[#out + 1] = attempt
    out[#out + 1] = state
    out[#out + 1] = lost
    out[#out + 1] = redis.call('HGETALL', key)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = tonumber(first[2]) end
return out
"""

# KEYS: record, due, outbox, dead list, fallback record, the incident's e2e key.
# ARGV: 1 id, 2 attempt, 3 outcome (delivered|retry|failed), 4 reason, 5 detail, 6 at,
#       7 delay_ms, 8 retention_s, 9 fallback id or '', 10 fallback channel id,
#       11 fallback channel type, 12 fallback lease_ms, 13 fallback max_attempts, 14 dead-letter cap.
# Returns {0} if the attempt is no longer ours, else {1, final outcome, now_ms, origin_ms, event JSON,
# the e2e key's value (taken when delivered, so the incident's first page alone is timed)}.
_FINISH = _LIB + """
local key = KEYS[1]
if redis.call('HGET', key, 'state') ~= 'sending' or redis.call('HGET', key, 'attempt') ~= ARGV[2] then
  return {0}
end
local now = now_ms()
local id, outcome, reason, detail, at = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local origin = redis.call('HGET', key, 'origin_ms')
local line
local received = false
if outcome == 'delivered' then
  redis.call('HSET', key, 'state', 'delivered', 'done_ms', now, 'last_reason', reason, 'last_detail', detail)
  received = redis.call('GETDEL', KEYS[6])
  redis.call('ZREM', KEYS[2], id)
  redis.call('EXPIRE', key, tonumber(ARGV[8]))
  line = emit(KEYS[3], key, id, ARGV[2], 'delivered', reason, at, detail, nil)
elseif outcome == 'retry' then
  local due = now + tonumber(ARGV[7])
  redis.call('HSET', key, 'state', 'pending', 'next_ms', due, 'last_reason', reason, 'last_detail', detail)
  redis.call('ZADD', KEYS[2], due, id)
  line = emit(KEYS[3], key, id, ARGV[2], 'retry', reason, at, detail, {retry_in_s = tonumber(ARGV[7]) / 1000})
else
  redis.call('ZREM', KEYS[2], id)
  redis.call('EXPIRE', key, tonumber(ARGV[8]))
  if ARGV[9] ~= '' then
    outcome = 'failed'
    redis.call('HSET', key, 'state', 'failed', 'done_ms', now, 'last_reason', reason, 'last_detail', detail,
               'fallback_id', ARGV[9])
    if redis.call('EXISTS', KEYS[5]) == 0 then
      local f = redis.call('HMGET', key, 'incident_id', 'event_key', 'contact_id', 'notice', 'origin_ms')
      redis.call('HSET', KEYS[5], 'id', ARGV[9], 'incident_id', f[1], 'event_key', f[2], 'contact_id', f[3],
                 'notice', f[4], 'origin_ms', f[5], 'channel_id', ARGV[10], 'channel_type', ARGV[11],
                 'fallback_channel_id', '', 'parent_id', id, 'attempt', 0, 'state', 'pending',
                 'created_ms', now, 'next_ms', now, 'lease_ms', ARGV[12], 'max_attempts', ARGV[13])
      redis.call('ZADD', KEYS[2], now, ARGV[9])
    end
    line = emit(KEYS[3], key, id, ARGV[2], 'failed', reason, at, detail, {fallback_delivery_id = ARGV[9]})
  else
    outcome = 'dead'
    redis.call('HSET', key, 'state', 'dead', 'done_ms', now, 'last_reason', reason, 'last_detail', detail)
    line = emit(KEYS[3], key, id, ARGV[2], 'dead', reason, at, detail, nil)
    local f = redis.call('HMGET', key, 'incident_id', 'event_key', 'channel_id', 'channel_type', 'contact_id',
                         'parent_id')
    local contact = f[5]
    if not contact or contact == '' then contact = cjson.null end
    redis.call('LPUSH', KEYS[4], cjson.encode({delivery_id = id, incident_id = f[1], event_key = f[2],
      channel = f[3], channel_type = f[4], contact = contact, attempts = tonumber(ARGV[2]), reason = reason,
      detail = detail, at = at, parent_delivery_id = f[6] or ''}))
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[14]) - 1)
  end
end
return {1, outcome, now, origin, line, received}
"""

# KEYS: outbox. ARGV: n, sha1 of the n items joined by newlines. Trims them only if they are
# still the head of the list (another publisher may have got there first).
_ACK_OUTBOX = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == tonumber(ARGV[1]) and redis.sha1hex(table.concat(items, '\\n')) == ARGV[2] then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
  return 1
end
return 0
"""


def e2e_key(incident_id: str) -> str:
    """When the report that opened an incident was received by ingest (epoch seconds), kept
    until the incident's first page is delivered: pantau_end_to_end_seconds."""
    return f"pantau:notify:e2e:{incident_id}"


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
        config: Any,
        redis: aioredis.Redis,
        producer: Any,
        channels: "dict[str, Channel] | Any",
        *,
        settings: DeliverySettings | None = None,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.time,
        on_event: EventListener | None = None,
    ):
        self.redis = redis
        self.producer = producer
        self.channels = channels
        self.contacts: dict[str, ContactConfig] = {c.id: c for c in contact_configs(getattr(config, "contacts", []))}
        self.settings = settings or _settings_of(config)
        self.rng = rng or random.Random().random
        self.clock = clock
        self.on_event = on_event
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._submit = redis.register_script(_SUBMIT)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._ack = redis.register_script(_ACK_OUTBOX)
        self._outbox_lease = Lease(redis, OUTBOX_LOCK_KEY, self.worker, OUTBOX_LOCK_MS / 1000)
        self._wake = asyncio.Event()
        self._outbox_wake = asyncio.Event()

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
        created = await self._submit(keys=[record_key(did), DUE_KEY], args=[did, *flat])
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
        publisher = asyncio.create_task(self._publish_loop(stop), name="pantau-delivery-outbox")
        stop_task = asyncio.create_task(stop.wait())
        wake_task = asyncio.create_task(self._wake.wait())
        graceful = False
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
                    if next_ms >= 0:
                        wait_s = min(wait_s, max(0.0, (next_ms - now_ms) / 1000))
                # Sleep until the next job is due, something is submitted here, an attempt
                # frees a slot, or the poll interval passes (submits from other processes).
                await asyncio.wait({stop_task, wake_task, *inflight}, timeout=wait_s,
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
            self._outbox_wake.set()
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
        res = await self._finish(
            keys=[record_key(job.id), DUE_KEY, OUTBOX_KEY, DEAD_KEY, record_key(fb_id) if fb_id else record_key("-"),
                  e2e_key(rec["incident_id"])],
            args=[job.id, job.attempt, outcome, result.reason.value, result.detail, rfc3339(self.clock()),
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
        elif final == "dead":
            metrics.NOTIFICATION_DEAD_LETTERS.labels(ctype).inc()
            log.error("delivery %s (%s, incident %s) dead-lettered after %d attempts: %s %s", job.id,
                      rec["channel_id"], rec["incident_id"], job.attempt, result.reason.value, result.detail)
        elif final == "failed":
            log.warning("delivery %s (%s) failed after %d attempts (%s); falling back to %s as %s", job.id,
                        rec["channel_id"], job.attempt, result.reason.value, fb.id if fb else "-", fb_id)
            self._wake.set()
        self._outbox_wake.set()
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

    # ----------------------------------------------------------------------- outbox

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while True:
            self._outbox_wake.clear()
            try:
                n = await self.publish_outbox()
                failures = 0
            except Exception as e:  # broker or Redis down: the outbox keeps the events
                failures += 1
                log.warning("publishing delivery outcomes failed (%s); will retry", type(e).__name__)
                n = 0
                if stop.is_set() and failures >= 3:
                    return
                await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
                continue
            if n:
                continue
            if stop.is_set():
                return
            try:
                async with asyncio.timeout(self.settings.poll_interval_s * 4):
                    await _first(self._outbox_wake.wait(), stop.wait())
            except TimeoutError:
                pass

    async def publish_outbox(self) -> int:
        """Publish one batch of outcome events to `pantau.notifications.v1`; returns how many
        (0 when empty, when there is no producer, or when another worker holds the publisher lock)."""
        if self.producer is None:
            return 0
        if not await self._outbox_lease.hold():
            return 0
        items = await self.redis.lrange(OUTBOX_KEY, 0, OUTBOX_BATCH - 1)
        if not items:
            return 0
        raw = [i if isinstance(i, bytes) else i.encode() for i in items]
        futures = []
        for v in raw:
            incident = orjson.loads(v).get("incident_id") or ""
            futures.append(await self.producer.send(topics.NOTIFICATIONS_V1, value=v, key=incident.encode()))
        await asyncio.gather(*futures)
        digest = hashlib.sha1(b"\n".join(raw)).hexdigest()
        await self._ack(keys=[OUTBOX_KEY], args=[len(raw), digest])
        return len(raw)

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


async def read_timeline(redis: aioredis.Redis, incident_id: str) -> list[dict[str, Any]]:
    """Every entry of an incident's timeline, oldest first."""
    return [orjson.loads(x) for x in await redis.lrange(timeline_key(incident_id), 0, -1)]


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _settings_of(config: Any) -> DeliverySettings:
    notify = getattr(config, "notify", None)
    raw = notify.get("delivery") if isinstance(notify, dict) else getattr(notify, "delivery", None)
    if isinstance(raw, DeliverySettings):
        return raw
    return DeliverySettings.model_validate(raw or {})


def contacts_by_id(items: Iterable[Any]) -> dict[str, ContactConfig]:
    return {c.id: c for c in contact_configs(items)}
