"""The Redis record of a delivery: its id, its keys, and the Lua scripts that create, claim
and finish it, each appending the attempt's outcome to the incident timeline and the outbox
in the same atomic step (services/notify/delivery.py explains the life of a delivery)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import redis.asyncio as aioredis

PREFIX = "pantau:delivery:"
DUE_KEY = "pantau:delivery:due"
OUTBOX_KEY = "pantau:delivery:outbox"
OUTBOX_LOCK_KEY = "pantau:delivery:outbox:lock"
DEAD_KEY = "pantau:delivery:dead"
TIMELINE_KEY = "pantau:incident:{}:timeline"


def delivery_id(incident_id: str, event_key: str, contact_id: str | None, channel_id: str) -> str:
    """The deterministic id of one delivery (32 hex characters)."""
    raw = "\x1f".join((incident_id, event_key, contact_id or "", channel_id))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def record_key(did: str) -> str:
    return PREFIX + did


def timeline_key(incident_id: str) -> str:
    return TIMELINE_KEY.format(incident_id)


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
SUBMIT_LUA = _LIB + """
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
CLAIM_LUA = _LIB + """
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
FINISH_LUA = _LIB + """
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

def e2e_key(incident_id: str) -> str:
    """When the report that opened an incident was received by ingest (epoch seconds), kept
    until the incident's first page is delivered: pantau_end_to_end_seconds."""
    return f"pantau:notify:e2e:{incident_id}"


async def read_timeline(redis: aioredis.Redis, incident_id: str) -> list[dict[str, Any]]:
    """Every entry of an incident's timeline, oldest first."""
    return [orjson.loads(x) for x in await redis.lrange(timeline_key(incident_id), 0, -1)]
