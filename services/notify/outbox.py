"""The one outbox publisher: moves events that were written to a Redis list atomically with
the change they describe (incident lifecycle events, delivery outcomes) to their Kafka topic,
keyed by incident id, in order.

One publisher per outbox at a time holds a lease, so several notify processes do not publish
the same events twice; the others stand by. A batch is trimmed from the list only after the
broker acknowledged it, and only if it is still the head of the list (a digest check), so a
crash between producing and trimming publishes it again: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared.retry import backoff_s
from shared.lease import Lease

log = logging.getLogger("pantau.notify.outbox")

# KEYS: outbox. ARGV: n, sha1 of the n items joined by newlines. Trims them only if they are
# still the head of the list (another publisher may have got there first).
_ACK = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == tonumber(ARGV[1]) and redis.sha1hex(table.concat(items, '\\n')) == ARGV[2] then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
  return 1
end
return 0
"""

# Failures in a row after which a stopping publisher leaves the rest in the outbox for the next start.
_GIVE_UP_WHEN_STOPPING = 3


class OutboxPublisher:
    """Publishes the Redis list `key` to `topic` (see the module docstring)."""

    def __init__(self, r: aioredis.Redis, producer: Any, *, key: str, lock_key: str, topic: str, what: str,
                 batch: int, lease_s: float, poll_s: float, owner: str | None = None):
        self.r = r
        self.producer = producer
        self.key, self.topic, self.what = key, topic, what
        self.batch = batch
        self.poll_s = poll_s
        self.published = 0
        self._ack = r.register_script(_ACK)
        self._lease = Lease(r, lock_key, owner or uuid.uuid4().hex, lease_s)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was written to the outbox here: publish it now rather than at the next poll."""
        self._wake.set()

    async def publish(self) -> int:
        """Publish one batch; returns how many events (0 when the outbox is empty, when there is
        no producer, or when another process holds the lease)."""
        if self.producer is None:
            return 0
        # The lease and the batch in one round trip: the outbox is read on every wake-up.
        held, (items,) = await self._lease.hold_with(lambda p: p.lrange(self.key, 0, self.batch - 1))
        if not held or not items:
            return 0
        raw = [i if isinstance(i, bytes) else i.encode() for i in items]
        futures = [await self.producer.send(self.topic, value=v, key=_incident_id(v)) for v in raw]
        await asyncio.gather(*futures)
        await self._ack(keys=[self.key], args=[len(raw), hashlib.sha1(b"\n".join(raw)).hexdigest()])
        self.published += len(raw)
        return len(raw)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set and the outbox is empty (or, with the broker or Redis
        away while stopping, a few failures in a row: the events stay for the next start)."""
        failures = 0
        while True:
            self._wake.clear()
            try:
                n = await self.publish()
                failures = 0
            except Exception as e:  # broker or Redis down: the outbox keeps the events
                failures += 1
                log.warning("publishing %s failed (%s); will retry", self.what, type(e).__name__)
                if stop.is_set() and failures >= _GIVE_UP_WHEN_STOPPING:
                    return
                await asyncio.sleep(backoff_s(failures + 1, 0.2, 5.0))
                continue
            if n:
                continue
            if stop.is_set():
                return
            await _first_of(self._wake.wait(), stop.wait(), timeout=self.poll_s)


def _incident_id(v: bytes) -> bytes | None:
    try:
        d: Any = orjson.loads(v)
        return str(d["incident_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


async def _first_of(*aws: Any, timeout: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


__all__ = ["OutboxPublisher"]
