"""Idempotency claims and per-source rate limits in Redis.

A (source, event_id) goes through two states: *pending* while its produce is in flight
(short TTL, so a crashed gateway frees it) and *accepted* once the broker acknowledged it
(kept for the dedup window). Both checks run in one Lua script, so two identical requests
arriving at the same instant cannot both claim the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

PENDING = "p:"
ACCEPTED = "a:"
PENDING_TTL_MS = 60_000

# KEYS[1] rate-limit key, KEYS[2..] dedup keys.
# ARGV: now_ms, emission_interval_ms, burst_ms, cost, pending_ttl_ms, then one claim value per dedup key.
# Returns {retry_after_ms} when limited, else {0, existing_or_empty...}: "" means claimed now.
_CLAIM = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if interval > 0 and cost > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  if new_tat - now > burst then
    return {math.max(1, math.ceil(new_tat - now - burst))}
  end
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
end
local out = {0}
for i = 2, #KEYS do
  local ok = redis.call('SET', KEYS[i], ARGV[4 + i], 'NX', 'PX', ARGV[5])
  if ok then
    out[#out + 1] = ''
  else
    out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  end
end
return out
"""


# KEYS: dedup keys; ARGV[1] TTL in ms, then one value per key.
_ACCEPT = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
end
return #KEYS
"""

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def dedup_key(source: str, event_id: str) -> str:
    return f"pantau:dedup:{source}:{event_id}"


def rate_key(source: str) -> str:
    return f"pantau:rl:{source}"


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of claiming: `limited_ms` > 0 means over the rate limit (nothing claimed);
    otherwise `existing[i]` is "" when key i was claimed now, or the value already there."""

    limited_ms: int
    existing: tuple[str, ...]


class IntakeState:
    """The Redis side of ingest: claims, accept marks, releases, rate limits."""

    def __init__(self, client: aioredis.Redis, dedup_ttl_s: int, pending_ttl_ms: int = PENDING_TTL_MS):
        self.r = client
        self.dedup_ttl_ms = dedup_ttl_s * 1000
        # A pending claim must outlive the slowest produce, and no more: a claim whose
        # request already gave up (a Redis stall, a killed gateway) blocks retries until then.
        self.pending_ttl_ms = pending_ttl_ms
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._accept = client.register_script(_ACCEPT)

    async def claim(
        self, source: str | None, rate_per_minute: int | None, keys: list[str], values: list[str], now_ms: int
    ) -> Claim:
        """Charge `len(keys)` against the source's rate limit and claim each key as pending.

        The limit allows a burst of one minute's worth, then `rate_per_minute` (GCRA)."""
        interval = 60_000 / rate_per_minute if rate_per_minute else 0
        burst = 60_000 if rate_per_minute else 0
        res = await self._claim(
            keys=[rate_key(source or "-"), *keys],
            args=[now_ms, interval, burst, len(keys), self.pending_ttl_ms, *values],
        )
        if int(res[0]) > 0:
            return Claim(int(res[0]), ())
        return Claim(0, tuple(v.decode() if isinstance(v, bytes) else v for v in res[1:]))

    async def accept(self, keys: list[str], values: list[str]) -> None:
        """Mark claims accepted for the dedup window: one round trip for any number."""
        if keys:
            await self._accept(keys=keys, args=[self.dedup_ttl_ms, *values])

    async def release(self, keys: list[str], values: list[str]) -> None:
        """Free pending claims whose produce failed, but only if they are still ours."""
        for k, v in zip(keys, values):
            await self._release(keys=[k], args=[v])

    async def get(self, key: str) -> str | None:
        v = await self.r.get(key)
        return v.decode() if isinstance(v, bytes) else v
