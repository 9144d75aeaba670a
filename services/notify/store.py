"""Incidents in Redis: documents, timelines, the open index, step timers and the outbox of
lifecycle events. Each Change is saved atomically with a version check (Lua), so concurrent
writers (consumer, scheduler, API, several processes) never lose an update.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson
import redis.asyncio as aioredis

from shared.levels import LEVELS
from shared.regions import in_scope, registry
from services.notify.incident import Change, Incident, incident_key, lifecycle_event
from shared.script_batch import ScriptBatch


K_INCIDENT = "pantau:incident:{}"
K_TIMELINE = "pantau:incident:{}:timeline"
K_OPEN = "pantau:incidents:open"
K_CLOSED = "pantau:incidents:closed"  # pair → {"id", "level", "bucket"} of its last resolved incident
K_ALL = "pantau:incidents"
K_TIMERS = "pantau:notify:timers"
K_OUTBOX = "pantau:notify:outbox"

# KEYS: incident, timeline, open index, all index, timers, outbox, closed index
# ARGV: 1 id, 2 expected version, 3 new version, 4 doc, 5 open field, 6 open action
#       (set|del|keep), 7 timer ("" = none), 8 opened_at, 9 ttl seconds (0 = keep),
#       10 closed marker (with del), 11 n timeline, then the timeline entries, then outbox events.
_SAVE = """
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[2] then return 0 end
if ARGV[6] == 'set' then
  local other = redis.call('HGET', KEYS[3], ARGV[5])
  if other and other ~= ARGV[1] then return -1 end
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[1])
elseif ARGV[6] == 'del' then
  if redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[1] then
    redis.call('HDEL', KEYS[3], ARGV[5])
    redis.call('HSET', KEYS[7], ARGV[5], ARGV[10])
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'doc', ARGV[4])
if ARGV[7] == '' then redis.call('ZREM', KEYS[5], ARGV[1]) else redis.call('ZADD', KEYS[5], ARGV[7], ARGV[1]) end
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
local n = tonumber(ARGV[11])
for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[11 + i]) end
for i = 12 + n, #ARGV do redis.call('RPUSH', KEYS[6], ARGV[i]) end
local ttl = tonumber(ARGV[9])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""

# Claim due timers with a lease: each claimed timer moves to now + lease, so no other
# scheduler takes it meanwhile; one that dies holding it has it come due again.
# KEYS: timers. ARGV: now, lease_until, limit. Returns the claimed ids.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


# The incident open for a pair, else how the pair's last one was resolved: one round trip
# instead of three (open index, document, closed index).
# KEYS: open index, closed index. ARGV: pair. Returns {doc or '', closed marker or ''}.
_LOAD = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
  local doc = redis.call('HGET', 'pantau:incident:' .. id, 'doc')
  if doc then return {doc, ''} end
end
return {'', redis.call('HGET', KEYS[2], ARGV[1]) or ''}
"""

# The open incident of a province and category, and which of the province's kabupaten/kota
# have an incident of that category in the open index (inhibition needs no more of them).
# KEYS: open index. ARGV: the province's pair, then the kabupaten/kota pairs.
# Returns {province doc or '', the open kabupaten/kota pairs}.
_PROVINCE = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
local doc = ''
if id then doc = redis.call('HGET', 'pantau:incident:' .. id, 'doc') or '' end
local open = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then open[#open + 1] = ARGV[i] end
end
return {doc, open}
"""


@dataclass(frozen=True)
class OpenPair:
    """An entry of the open index seen without its document: enough for `inhibit.spread`
    (the index holds only incidents not yet resolved; source incidents never match a pair)."""

    region_code: str
    category: str
    id: str = ""
    kind: str = "score"
    status: str = "triggered"


class SaveConflict(Exception):
    """Someone else changed the incident (or opened one for the same pair) first."""


class IncidentStore:
    """Incidents, timelines, the open index, step timers and the lifecycle-event outbox, in Redis."""

    def __init__(self, r: aioredis.Redis, ack_url: Callable[["Incident"], str] = lambda _inc: "",
                 retention_days: int = 90):
        self.r = r
        self.ack_url = ack_url
        self.retention_s = retention_days * 86400
        self._save = r.register_script(_SAVE)
        self._claim = r.register_script(_CLAIM)
        self._load = r.register_script(_LOAD)
        self._province = r.register_script(_PROVINCE)
        # Saves from concurrent firings (the scheduler) share one pipeline.
        self.batch = ScriptBatch(r)

    # reads
    async def get(self, incident_id: str) -> Incident | None:
        doc = await self.r.hget(K_INCIDENT.format(incident_id), "doc")
        return None if doc is None else Incident.model_validate_json(doc)

    async def get_many(self, ids: Sequence[str]) -> list[Incident | None]:
        """Several incidents in one round trip, in the order asked."""
        if not ids:
            return []
        async with self.r.pipeline(transaction=False) as p:
            for i in ids:
                p.hget(K_INCIDENT.format(i), "doc")
            docs = await p.execute()
        return [None if d is None else Incident.model_validate_json(d) for d in docs]

    async def load(self, key: str) -> tuple[Incident | None, dict | None]:
        """The open incident of a pair, else the pair's closed marker (see `closed`)."""
        doc, closed = await self._load(keys=[K_OPEN, K_CLOSED], args=[key])
        return _loaded(doc, closed)

    async def load_many(self, keys: Sequence[str]) -> list[tuple[Incident | None, dict | None]]:
        """`load` for several pairs in one round trip."""
        async with self.r.pipeline(transaction=False) as p:
            for k in keys:
                await self._load(keys=[K_OPEN, K_CLOSED], args=[k], client=p)
            got = await p.execute()
        return [_loaded(doc, closed) for doc, closed in got]

    async def province_view(self, province: str, category: str,
                            kabkota: Sequence[str]) -> tuple[Incident | None, list[OpenPair]]:
        """The open incident of (province, category), if any, and the open incidents of that
        category among `kabkota` (the province's kabupaten/kota), in one round trip."""
        doc, open_pairs = await self._province(
            keys=[K_OPEN], args=[incident_key(province, category), *(incident_key(k, category) for k in kabkota)])
        holder = Incident.model_validate_json(doc) if doc else None
        pairs = []
        for raw in open_pairs:
            region, _, cat = (raw.decode() if isinstance(raw, bytes) else raw).partition("|")
            pairs.append(OpenPair(region, cat))
        return holder, pairs

    async def open_id(self, key: str) -> str | None:
        v = await self.r.hget(K_OPEN, key)
        return v.decode() if isinstance(v, bytes) else v

    async def open_incidents(self) -> list[Incident]:
        ids = [v.decode() if isinstance(v, bytes) else v for v in (await self.r.hvals(K_OPEN))]
        return [i for i in await self._many(ids) if i is not None]

    async def open_counts(self, chunk: int = 500) -> dict[str, int]:
        """Unresolved open incidents per level (for /metrics), reading `chunk` docs at a time and
        only their level and status, so a scrape's transient peak does not grow with the number
        open: loading them all at once makes glibc's heap and pymalloc's arenas grow scrape after
        scrape while incidents keep opening, with live data flat (docs/history.md, soak runs)."""
        counts = {lv: 0 for lv in LEVELS}
        ids = [decoded(v) for v in await self.r.hvals(K_OPEN)]
        for first in range(0, len(ids), chunk):
            async with self.r.pipeline(transaction=False) as p:
                for i in ids[first:first + chunk]:
                    p.hget(K_INCIDENT.format(i), "doc")
                docs = await p.execute()
            for d in docs:
                if d is None:
                    continue
                doc = orjson.loads(d)
                if doc.get("status") != "resolved":
                    counts[doc["level"]] = counts.get(doc["level"], 0) + 1
        return counts

    async def list(self, status: str | None = None, region: str | None = None, category: str | None = None,
                   limit: int = 100) -> list[Incident]:
        """Newest first, filtered; status `open` means triggered or escalated."""
        if status in ("open", "acknowledged"):
            candidates = await self.open_incidents()
            candidates.sort(key=lambda i: i.opened_at, reverse=True)
        else:
            ids = [v.decode() if isinstance(v, bytes) else v for v in await self.r.zrevrange(K_ALL, 0, 4999)]
            candidates = [i for i in await self._many(ids) if i is not None]
        out = []
        for inc in candidates:
            if status == "open" and not inc.is_open or status in ("acknowledged", "resolved") and inc.status != status:
                continue
            if region and not in_scope(inc.region_code, [region]):
                continue
            if category and inc.category != category:
                continue
            out.append(inc)
            if len(out) >= limit:
                break
        return out

    async def _many(self, ids: list[str]) -> list[Incident | None]:
        """`get_many`, forgetting from the index of all incidents those that expired."""
        incs = await self.get_many(ids)
        gone = [i for i, inc in zip(ids, incs) if inc is None]
        if gone:
            await self.r.zrem(K_ALL, *gone)  # expired after the retention period
        return incs

    async def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        out = []
        for raw in await self.r.lrange(K_TIMELINE.format(incident_id), 0, -1):
            try:
                out.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                out.append({"kind": "unreadable"})
        return out

    # writes
    async def save(self, change: Change, expected_version: int) -> Incident:
        """Write the change if the incident is still at `expected_version`; else SaveConflict."""
        inc, keys, args = self._save_call(change, expected_version)
        if int(await self.batch.call(self._save, keys, args)) != 1:
            raise SaveConflict(inc.id)
        return inc

    async def save_many(self, saves: Sequence[tuple[Change, int]]) -> list[Incident | None]:
        """`save` for several incidents in one round trip (each checked on its own); None
        where that one's version had moved on (the caller retries it alone)."""
        if not saves:
            return []
        calls = [self._save_call(change, version) for change, version in saves]
        async with self.r.pipeline(transaction=False) as p:
            for _, keys, args in calls:
                await self._save(keys=keys, args=args, client=p)
            res = await p.execute()
        return [inc if int(r) == 1 else None for (inc, _, _), r in zip(calls, res)]

    def _save_call(self, change: Change, expected_version: int) -> tuple[Incident, list[str], list[Any]]:
        inc = change.incident.model_copy(update={"version": expected_version + 1})
        if expected_version == 0:
            open_action = "set"
        elif inc.status == "resolved":
            open_action = "del"
        else:
            open_action = "keep"
        timer = inc.wakeup() if change.timer == "auto" else change.timer
        events = [orjson.dumps(lifecycle_event(inc, status, step, self.ack_url(inc))) for status, step in change.events]
        ttl = self.retention_s if inc.status == "resolved" and not inc.broadcasts else 0
        closed = orjson.dumps({"id": inc.id, "level": inc.level, "bucket": inc.last_alert_bucket})
        keys = [K_INCIDENT.format(inc.id), K_TIMELINE.format(inc.id), K_OPEN, K_ALL, K_TIMERS, K_OUTBOX, K_CLOSED]
        args = [inc.id, str(expected_version), str(expected_version + 1), inc.model_dump_json(), inc.key,
                open_action, "" if timer is None else repr(float(timer)), repr(inc.opened_at), ttl, closed,
                len(change.timeline), *[orjson.dumps(e) for e in change.timeline], *events]
        return inc, keys, args

    async def mutate(self, incident_id: str, fn: Callable[[Incident], Change | None],
                     attempts: int = 20) -> tuple[Incident | None, Change | None]:
        """Apply `fn` to the stored incident and save, retrying on conflicts. Returns the
        incident as saved (or as found when `fn` changed nothing) and the change."""
        for _ in range(attempts):
            inc = await self.get(incident_id)
            if inc is None:
                return None, None
            change = fn(inc)
            if change is None:
                return inc, None
            try:
                return await self.save(change, inc.version), change
            except SaveConflict:
                continue
        raise RuntimeError(f"incident {incident_id} kept changing under {attempts} attempts")

    async def closed(self, key: str) -> dict | None:
        """How the pair's last incident was resolved: {"id", "level", "bucket"}, or None."""
        raw = await self.r.hget(K_CLOSED, key)
        return None if raw is None else orjson.loads(raw)

    async def upsert(self, key: str, on_new: Callable[[dict | None], Change | None],
                     on_open: Callable[[Incident], Change | None], attempts: int = 20) -> tuple[Incident | None, Change | None]:
        """Update the open incident for `key`, or open one (`on_new` gets the pair's closed
        marker); safe against a concurrent opener."""
        for _ in range(attempts):
            inc, closed = await self.load(key)
            change = on_open(inc) if inc is not None else on_new(closed)
            if change is None:
                return inc, None
            try:
                return await self.save(change, inc.version if inc is not None else 0), change
            except SaveConflict:
                continue
        raise RuntimeError(f"open incident for {key} kept changing under {attempts} attempts")

    async def set_timer(self, incident_id: str, due: float | None) -> None:
        if due is None:
            await self.r.zrem(K_TIMERS, incident_id)
        else:
            await self.r.zadd(K_TIMERS, {incident_id: due})

    async def claim_due(self, now: float, lease_s: float, limit: int = 100) -> list[str]:
        ids = await self._claim(keys=[K_TIMERS], args=[repr(now), repr(now + lease_s), limit])
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def next_timer(self) -> float | None:
        got = await self.r.zrange(K_TIMERS, 0, 0, withscores=True)
        return got[0][1] if got else None


@functools.lru_cache(maxsize=64)
def kabkota_of_province(province: str) -> tuple[str, ...]:
    """The kabupaten/kota codes of a province (the registry scans every code to find them)."""
    return tuple(registry().children(province))


def decoded(v: Any) -> str:
    """A Redis reply as text, whether or not the client decodes responses."""
    return v.decode() if isinstance(v, bytes) else v


def _loaded(doc: Any, closed: Any) -> tuple[Incident | None, dict | None]:
    inc = Incident.model_validate_json(doc) if doc else None
    return inc, (orjson.loads(closed) if not inc and closed else None)
