"""A lease in Redis: one notify process at a time does a job that must not run twice at once
(publishing an outbox, long-polling Telegram), and another takes over when the holder stops
renewing it.

Taking and renewing are one Lua call, one round trip: the holder renews on every round of its
loop, and a lease nobody holds (expired, or never taken) goes to whoever asks first.
"""

from __future__ import annotations

from typing import Any, Callable

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

# KEYS: the lease. ARGV: owner, ttl in ms. 1 when `owner` holds the lease afterwards.
_TAKE_OR_RENEW = """
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

# KEYS: the lease. ARGV: owner. Let it go only if `owner` holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """The lease at `key`, asked for by `owner` for `ttl_s` at a time."""

    def __init__(self, r: aioredis.Redis, key: str, owner: str, ttl_s: float):
        self.r = r
        self.key = key
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self._take = r.register_script(_TAKE_OR_RENEW)
        self._release = r.register_script(_RELEASE)

    async def hold(self) -> bool:
        """Take the lease if it is free, renew it if it is ours; True when it is ours."""
        return bool(int(await self._take(keys=[self.key], args=[self.owner, self.ttl_ms])))

    async def hold_with(self, queue: Callable[[Any], Any]) -> tuple[bool, list[Any]]:
        """`hold`, and the commands `queue` adds to a pipeline, in one round trip: whether the
        lease is ours, and those commands' replies (to be used only when it is)."""
        async with self.r.pipeline(transaction=False) as p:
            p.evalsha(self._take.sha, 1, self.key, self.owner, self.ttl_ms)
            queue(p)
            replies = await p.execute(raise_on_error=False)
        held, rest = replies[0], replies[1:]
        if isinstance(held, NoScriptError):  # Redis restarted without its scripts: hold() loads it
            return await self.hold(), rest
        for x in replies:
            if isinstance(x, Exception):
                raise x
        return bool(int(held)), rest

    async def release(self) -> None:
        """Give the lease up now, if it is ours, instead of letting the next holder wait out its ttl."""
        await self._release(keys=[self.key], args=[self.owner])
