"""The lease that keeps one notify process at a time publishing an outbox or polling Telegram,
on a real Redis: the first asker holds it, the others stand by, the holder's renewal keeps it,
and once it lapses the next asker takes over."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from shared.lease import Lease

KEY = "pantau:test:lease"


def test_one_holder_at_a_time_and_a_lapsed_lease_goes_to_the_next(fresh_redis: str) -> None:
    async def t() -> None:
        r = aioredis.Redis.from_url(fresh_redis)
        try:
            a, b = Lease(r, KEY, "worker-a", 10.0), Lease(r, KEY, "worker-b", 10.0)
            assert await a.hold()
            assert not await b.hold()  # a holds it: b stands by
            await r.pexpire(KEY, 50)
            assert await a.hold()  # renewing pushes the expiry out to the full ttl again
            assert 9_000 < await r.pttl(KEY) <= 10_000
            assert not await b.hold()
            await r.delete(KEY)  # what a lapse leaves behind: a holder that stopped renewing
            assert await b.hold()
            assert not await a.hold()
            assert (await r.get(KEY)) == b"worker-b"
        finally:
            await r.aclose()

    asyncio.run(t())
