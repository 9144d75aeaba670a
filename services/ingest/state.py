"""Idempotency claims and per-source rate limits in Redis.

A gateway claim on (source, event_id) is in one of three states, each a string value:

- *pending* `p:<ingest_id>|<partition>|<claimed_ms>|<lease_until_ms>` while one request
  produces it. The lease bounds that request's produce; once it has run out (the request died,
  or Redis failed after the broker acknowledged), the claim is *resolvable*.
- *uncertain* `u:<ingest_id>|<partition>|<claimed_ms>` after a produce that may or may not
  have reached the broker (a timeout after sending). Resolvable at once.
- *accepted* `a:<ingest_id>` once the report is known to be on `pantau.reports.v1`.

A claim that may have produced is never deleted: it carries the ingest_id, the partition and
the time, so the next request for that report can look for it on the topic (intake.py) instead
of producing a second copy. Only a claim whose produce never started is released. Claims are
kept for the dedup window in every state, so that is how long a report can be resolved.

The raw-topic validator claims with `p:raw-<p>-<o>` (no lease: its own checkpoint recovery
resolves those) and a short TTL. The first claim and the rate limit run in one Lua script, so
two identical requests arriving at the same instant cannot both claim the report; every later
change is a compare-and-swap on the whole value, so two requests resolving the same claim
cannot both win it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from shared.script_batch import ScriptBatch

PENDING = "p:"
UNCERTAIN = "u:"
ACCEPTED = "a:"
PENDING_TTL_MS = 60_000


def claim_lease_s(send_timeout_s: float) -> float:
    """How long a gateway request may hold a claim: a produce (send_timeout_s), a search of the
    topic if it resolves one (send_timeout_s at most), and slack for Redis round trips."""
    return 2 * send_timeout_s + 5


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a gateway claim says about the copy it may have written: where to look for it."""

    ingest_id: str
    partition: int
    claimed_ms: int  # before the first produce of this report; every copy is written after it

    def pending(self, lease_until_ms: int) -> str:
        return f"{PENDING}{self.ingest_id}|{self.partition}|{self.claimed_ms}|{lease_until_ms}"

    def uncertain(self) -> str:
        return f"{UNCERTAIN}{self.ingest_id}|{self.partition}|{self.claimed_ms}"

    def accepted(self) -> str:
        return ACCEPTED + self.ingest_id

    @staticmethod
    def resolvable(value: str, now_ms: int) -> "Attempt | None":
        """The attempt a claim value describes if the claim may be resolved now: uncertain, or
        pending past its lease. None for accepted claims, live leases and validator claims."""
        if not value.startswith((PENDING, UNCERTAIN)) or "|" not in value:
            return None
        fields = value[2:].split("|")
        try:
            attempt = Attempt(fields[0], int(fields[1]), int(fields[2]))
            if value.startswith(PENDING) and int(fields[3]) > now_ms:
                return None
        except (IndexError, ValueError):
            return None
        return attempt


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

# Compare-and-swap: KEYS[1] from ARGV[1] to ARGV[2] (deleted when ARGV[2] is ""), TTL ARGV[3] ms.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def redis_full(e: Exception) -> bool:
    """Redis refused a write because it reached its maxmemory (it never evicts: noeviction).
    A script's refusal comes as a plain error reply, so the words are checked too."""
    return isinstance(e, OutOfMemoryError) or "OOM command not allowed" in str(e)


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
    """The Redis side of ingest: claims, accept marks, swaps, rate limits."""

    def __init__(self, client: aioredis.Redis, dedup_ttl_s: int, pending_ttl_ms: int = PENDING_TTL_MS):
        self.r = client
        self.dedup_ttl_ms = dedup_ttl_s * 1000
        # The validator's pending claims expire after this: its own recovery resolves them,
        # and an HTTP request for the same report waits for them until then.
        self.pending_ttl_ms = pending_ttl_ms
        self._claim = client.register_script(_CLAIM)
        self._swap = client.register_script(_SWAP)
        self._accept = client.register_script(_ACCEPT)
        # Concurrent requests' claims and accept marks share pipelines (shared/script_batch.py).
        self.batch = ScriptBatch(client)

    async def claim(
        self, source: str | None, rate_per_minute: int | None, keys: list[str], values: list[str], now_ms: int,
        ttl_ms: int | None = None,
    ) -> Claim:
        """Charge `len(keys)` against the source's rate limit and claim each key as pending,
        kept `ttl_ms` (default: the short validator TTL).

        The limit allows a burst of one minute's worth, then `rate_per_minute` (GCRA)."""
        interval = 60_000 / rate_per_minute if rate_per_minute else 0
        burst = 60_000 if rate_per_minute else 0
        res = await self.batch.call(self._claim, [rate_key(source or "-"), *keys],
                                    [now_ms, interval, burst, len(keys), ttl_ms or self.pending_ttl_ms, *values])
        if int(res[0]) > 0:
            return Claim(int(res[0]), ())
        return Claim(0, tuple(v.decode() if isinstance(v, bytes) else v for v in res[1:]))

    async def accept(self, keys: list[str], values: list[str]) -> None:
        """Mark claims accepted for the dedup window: one round trip for any number."""
        if keys:
            await self.batch.call(self._accept, keys, [self.dedup_ttl_ms, *values])

    async def swap(self, key: str, expected: str, new: str, ttl_ms: int | None = None) -> bool:
        """Replace the claim `expected` by `new` ("" deletes it) if it is still `expected`;
        False when another request changed it first. Kept for the dedup window by default."""
        return bool(await self._swap(keys=[key], args=[expected, new, ttl_ms or self.dedup_ttl_ms]))

    async def release(self, keys: list[str], values: list[str]) -> None:
        """Free claims whose produce never started, but only if they are still ours."""
        for k, v in zip(keys, values):
            await self.swap(k, v, "")

    async def get(self, key: str) -> str | None:
        v = await self.r.get(key)
        return v.decode() if isinstance(v, bytes) else v
