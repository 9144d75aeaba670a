"""Incidents: one open escalation per (kabupaten/kota or province, category), its state
transitions as pure functions, and its home in Redis.

Transitions (pure; each returns a `Change` or None when nothing changes):
  `open_incident`   a score update at waspada or above with no open incident → triggered
  `apply_update`    later updates: level up → escalated (a new epoch at the level's step,
                    even after an ack); level down; reasons and report ids; normal for
                    `auto_resolve_buckets` buckets → resolved (auto)
  `acknowledge`     → acknowledged; timers stop; everyone paged hears who took it
  `resolve`         → resolved; everyone paged hears it, on every channel they were paged on
  `fired`           a step went out: record who, advance the escalation
  `broadcast_done`  acknowledged/resolved notices handed to delivery
  `inhibited` / `released`  a due step held back by a province incident, and let go again

`IncidentStore` keeps incidents, timelines, the open index, step timers and the outbox of
lifecycle events in Redis, and saves each Change atomically with a version check (Lua), so
concurrent writers (consumer, scheduler, API, several processes) never lose an update.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Sequence

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from shared.levels import LEVEL_RANK, LEVELS
from shared.notify_config import Policy
from shared.scores import ScoreUpdate
from shared.times import rfc3339
from shared.regions import in_scope, registry
from services.notify.messages import category_name
from services.notify.policy import Escalation, Fire, Recipient, on_level_rise, route, start, stop

log = logging.getLogger("pantau.notify.incidents")

Status = Literal["triggered", "escalated", "acknowledged", "resolved"]
OPEN_STATUSES = ("triggered", "escalated")
MAX_REPORT_IDS = 500
MAX_REASONS = 20


class Conflict(Exception):
    """The action does not fit the incident's state (e.g. acknowledging a resolved one)."""


# --- data ---------------------------------------------------------------------------------------
class Broadcast(BaseModel):
    """A notice to everyone paged so far (acknowledged / resolved), not yet handed over."""

    status: Literal["acknowledged", "resolved"]
    key: str
    at: float


class Incident(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    kind: Literal["score", "source_silent"] = "score"
    key: str
    region_code: str
    region_name: str
    category: str
    source: str | None = None
    level: str
    status: Status = "triggered"
    summary: str = ""
    reasons: list[str] = Field(default_factory=list)
    report_ids: list[str] = Field(default_factory=list)
    opened_at: float
    updated_at: float
    triggered_at: float  # start of the current wait for an acknowledgement (open or last rise)
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: Literal["manual", "auto"] | None = None
    note: str | None = None
    escalation: Escalation = Escalation()
    paged: list[tuple[str, str]] = Field(default_factory=list)  # (contact, channel), in paging order
    broadcasts: list[Broadcast] = Field(default_factory=list)
    last_alert_bucket: float | None = None
    quiet_buckets: list[float] = Field(default_factory=list)
    acks: int = 0
    rises: int = 0
    # The province incident holding this one's pages back (services.notify.inhibit), if any.
    inhibited_by: str | None = None
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def wakeup(self) -> float | None:
        """When the scheduler must next look at this incident."""
        times = [b.at for b in self.broadcasts]
        if self.escalation.due is not None and self.status in OPEN_STATUSES:
            times.append(self.escalation.due)
        return min(times) if times else None

    def view(self) -> dict[str, Any]:
        """The API's picture of the incident (times as RFC 3339)."""
        d = self.model_dump(exclude={"version", "broadcasts", "quiet_buckets", "last_alert_bucket", "key"})
        for k in ("opened_at", "updated_at", "triggered_at", "acknowledged_at", "resolved_at"):
            d[k] = rfc3339(d[k]) if d[k] is not None else None
        esc = self.escalation
        d["escalation"] = {"policy": esc.policy_id, "step": esc.last_step, "next_step": esc.step if esc.due else None,
                           "next_at": rfc3339(esc.due) if esc.due is not None and self.is_open else None,
                           "cycle": esc.cycle}
        d["paged"] = [{"contact": c, "channel": ch} for c, ch in self.paged]
        return d


def incident_key(region: str, category: str) -> str:
    return f"{region}|{category}"


def source_key(source: str) -> str:
    return f"source|{source}"


@dataclass
class Change:
    """A transition's result: the new state, what to write to the timeline, lifecycle
    events to publish as (status, step), and what the metrics count."""

    incident: Incident
    timeline: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, int]] = field(default_factory=list)
    opened: bool = False
    acknowledged: bool = False
    resolved: str | None = None  # "manual" | "auto"
    steps_fired: int = 0
    timer: float | None | Literal["auto"] = "auto"  # "auto": incident.wakeup()


def _entry(now: float, kind: str, **kw: Any) -> dict[str, Any]:
    return {"at": rfc3339(now), "kind": kind, **{k: v for k, v in kw.items() if v is not None}}


def summarize(category: str, region_name: str, level: str, language: str = "id") -> str:
    cat = category_name(category, "en" if language == "en" else "id")
    if language == "en":
        return f"{cat} in {region_name}: level {level.upper()}"
    return f"{cat} di {region_name}: level {level.upper()}"


def _merge_ids(old: list[str], new: Sequence[str]) -> list[str]:
    seen = set(old)
    out = list(old)
    for r in new:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out[-MAX_REPORT_IDS:]


# --- transitions (pure) -----------------------------------------------------------------------
def open_incident(incident_id: str, u: ScoreUpdate, policies: Sequence[Policy], now: float,
                  language: str = "id", closed: dict | None = None) -> Change | None:
    """A score update for a pair with no open incident: open one at waspada or above.

    `closed` is what the pair's last incident was resolved at ({"level", "bucket"}): an
    update for that bucket or an older one, at that level or lower, is the same situation
    someone already resolved (or a replay), not a new incident."""
    if LEVEL_RANK[u.level] < LEVEL_RANK["waspada"]:
        return None
    if closed is not None and closed.get("bucket") is not None and u.bucket_ts <= closed["bucket"] \
            and LEVEL_RANK[u.level] <= LEVEL_RANK.get(closed.get("level", "awas"), 3):
        return None
    region = u.incident_region
    name = registry().name(region) or region
    inc = Incident(id=incident_id, key=incident_key(region, u.category), region_code=region, region_name=name,
                   category=u.category, level=u.level, summary=summarize(u.category, name, u.level, language),
                   reasons=list(u.reasons[:MAX_REASONS]), report_ids=_merge_ids([], u.report_ids),
                   opened_at=now, updated_at=now, triggered_at=now, last_alert_bucket=u.bucket_ts)
    policy = route(inc, policies)
    inc.escalation = start(policy, inc.level, now)
    tl = [_entry(now, "opened", level=u.level, reasons=inc.reasons, report_ids=list(u.report_ids),
                 policy=policy.id if policy else None)]
    if policy is None:
        tl.append(_entry(now, "no_policy", message="no policy matches this region, category and level; "
                                                   "nobody is paged"))
    return Change(inc, tl, [("triggered", inc.escalation.step)], opened=True)


def open_source_incident(incident_id: str, source: str, region: str, last_seen: float | None,
                         silent_after_s: float, policy: Policy, now: float, language: str = "id") -> Change:
    """A source silent for longer than its `silent_after_minutes`: an incident of its own."""
    name = registry().name(region) or region
    minutes = round(silent_after_s / 60)
    if language == "en":
        summary = f"Source {source} has sent no report for over {minutes} minutes"
    else:
        summary = f"Sumber {source} tidak mengirim laporan lebih dari {minutes} menit"
    reason = (f"last report received at {rfc3339(last_seen)}" if last_seen is not None
              else "no report received since the watchdog started")
    inc = Incident(id=incident_id, kind="source_silent", key=source_key(source), region_code=region,
                   region_name=name, category="other", source=source, level="waspada", summary=summary,
                   reasons=[reason], opened_at=now, updated_at=now, triggered_at=now)
    inc.escalation = start(policy, inc.level, now)
    tl = [_entry(now, "opened", level=inc.level, reasons=inc.reasons, policy=policy.id, source=source)]
    return Change(inc, tl, [("triggered", inc.escalation.step)], opened=True)


def apply_update(inc: Incident, u: ScoreUpdate, policies: Sequence[Policy], auto_resolve_buckets: int,
                 now: float, language: str = "id") -> Change | None:
    """A later score update for an open incident's pair. Replaying the same update changes
    nothing (so a consumer restart that re-reads it is harmless)."""
    if not inc.is_open and inc.status != "acknowledged":
        return None
    rank = LEVEL_RANK[u.level]
    b = u.bucket_ts
    new = inc.model_copy(deep=True)
    tl: list[dict[str, Any]] = []
    events: list[tuple[str, int]] = []
    if rank == 0:
        if b in new.quiet_buckets or (new.last_alert_bucket is not None and b < new.last_alert_bucket):
            return None
        new.quiet_buckets.append(b)
        tl.append(_entry(now, "quiet", bucket_start=u.bucket_start, count=len(new.quiet_buckets),
                         needed=auto_resolve_buckets))
        new.updated_at = now
        if len(new.quiet_buckets) >= auto_resolve_buckets:
            ch = resolve(new, "pantau", now, how="auto",
                         note=f"normal for {len(new.quiet_buckets)} consecutive buckets")
            ch.timeline = tl + ch.timeline
            return ch
        return Change(new, tl)

    if new.last_alert_bucket is not None and b < new.last_alert_bucket:
        # A late update for an older bucket: its report ids still belong to the incident.
        ids = _merge_ids(new.report_ids, u.report_ids)
        if ids == new.report_ids and rank <= LEVEL_RANK[new.level]:
            return None
    else:
        new.last_alert_bucket = b
        new.quiet_buckets = []
    changed = bool(inc.quiet_buckets) != bool(new.quiet_buckets) or new.last_alert_bucket != inc.last_alert_bucket
    ids = _merge_ids(new.report_ids, u.report_ids)
    if ids != new.report_ids:
        new.report_ids, changed = ids, True
    if u.reasons and list(u.reasons[:MAX_REASONS]) != new.reasons:
        new.reasons, changed = list(u.reasons[:MAX_REASONS]), True

    old_rank = LEVEL_RANK[inc.level]
    if rank > old_rank:
        old_policy = _policy(policies, inc.escalation.policy_id)
        new.level = u.level
        policy = route(new, policies)
        new.escalation = on_level_rise(inc.escalation, old_policy, policy, u.level, now)
        if inc.status == "acknowledged":
            tl.append(_entry(now, "unacknowledged", message=f"level rose to {u.level}: the acknowledgement "
                                                            f"by {inc.acknowledged_by} no longer holds"))
        new.status = "escalated"
        new.triggered_at = now
        new.rises += 1
        tl.append(_entry(now, "level", previous=inc.level, level=u.level, reasons=new.reasons,
                         policy=policy.id if policy else None,
                         step=new.escalation.step if policy else None))
        events.append(("escalated", new.escalation.step))
        changed = True
    elif rank < old_rank and b >= (inc.last_alert_bucket or b):
        new.level = u.level
        tl.append(_entry(now, "level", previous=inc.level, level=u.level, reasons=new.reasons))
        changed = True
    if not changed:
        return None
    new.summary = summarize(new.category, new.region_name, new.level, language)
    new.updated_at = now
    return Change(new, tl, events)


def _policy(policies: Sequence[Policy], pid: str | None) -> Policy | None:
    return next((p for p in policies if p.id == pid), None)


def acknowledge(inc: Incident, by: str, now: float, via: str = "api", note: str | None = None) -> Change | None:
    """Acknowledged: timers stop and everyone paged hears who took it. Acknowledging again
    changes nothing; a resolved incident cannot be acknowledged."""
    if inc.status == "resolved":
        raise Conflict("the incident is already resolved")
    if inc.status == "acknowledged":
        return None
    new = inc.model_copy(deep=True)
    new.status = "acknowledged"
    new.acknowledged_at, new.acknowledged_by = now, by
    new.inhibited_by = None  # nothing is pending any more; a later rise asks again
    new.escalation = stop(inc.escalation)
    new.acks += 1
    new.updated_at = now
    if new.paged:
        new.broadcasts.append(Broadcast(status="acknowledged", key=f"ack:{new.acks}", at=now))
    step = _shown_step(new)
    return Change(new, [_entry(now, "acknowledged", by=by, via=via, note=note)], [("acknowledged", step)],
                  acknowledged=True)


def resolve(inc: Incident, by: str, now: float, how: Literal["manual", "auto"] = "manual",
            note: str | None = None) -> Change:
    """Resolved: timers stop; everyone who was paged is told, on every channel they were paged on."""
    if inc.status == "resolved":
        raise Conflict("the incident is already resolved")
    new = inc.model_copy(deep=True)
    new.status = "resolved"
    new.resolved_at, new.resolved_by, new.resolution = now, by, how
    new.inhibited_by = None
    new.note = note if note is not None else new.note
    new.escalation = stop(inc.escalation)
    new.updated_at = now
    if new.paged:
        new.broadcasts.append(Broadcast(status="resolved", key="resolved", at=now))
    return Change(new, [_entry(now, "resolved", by=by, how=how, note=note)], [("resolved", _shown_step(new))],
                  resolved=how)


def _shown_step(inc: Incident) -> int:
    esc = inc.escalation
    return esc.last_step if esc.last_step is not None else esc.step


def fired(inc: Incident, fire: Fire, sent: Sequence[tuple[Recipient, str]], notes: Sequence[str],
          now: float) -> Change:
    """Step `fire.step` was handed to delivery (`sent`: recipient and delivery id)."""
    new = inc.model_copy(deep=True)
    new.escalation = fire.then
    for r, _ in sent:
        if (r.contact, r.channel) not in new.paged:
            new.paged.append((r.contact, r.channel))
    if fire.status == "escalated" and new.status == "triggered":
        new.status = "escalated"
    new.updated_at = now
    tl = [_entry(now, "step", step=fire.step, status=fire.status, event_key=fire.event_key,
                 due_at=rfc3339(fire.at), cycle=fire.escalation.cycle, repeat=fire.escalation.rep,
                 with_steps=list(fire.steps[:-1]) or None,
                 deliveries=[{"contact": r.contact, "channel": r.channel, "fallback": r.fallback, "delivery_id": d}
                             for r, d in sent],
                 notes=list(notes) or None)]
    if fire.then.due is None:
        tl.append(_entry(now, "exhausted", message="every step has fired and nobody has acknowledged"))
    events = [] if fire.escalation.announced else [(fire.status, fire.step)]
    return Change(new, tl, events, steps_fired=1)


def deferred(inc: Incident, silence: dict, now: float) -> Change:
    """A due firing held back by a silence: it fires when the silence ends."""
    new = inc.model_copy(deep=True)
    return Change(new, [_entry(now, "silenced", silence_id=silence["id"], until=rfc3339(silence["ends_at"]),
                               step=inc.escalation.step, reason=silence.get("reason"))],
                  timer=silence["ends_at"])


def inhibited(inc: Incident, province: Incident, now: float, recheck_at: float) -> Change:
    """A due step held back by an open province incident (services.notify.inhibit): recorded
    once per holder; the step stays pending and is looked at again by `recheck_at`."""
    new = inc.model_copy(deep=True)
    new.inhibited_by = province.id
    new.updated_at = now
    return Change(new, [_entry(now, "inhibited", by=province.id, province_level=province.level,
                               province_status=province.status, level=inc.level, step=inc.escalation.step,
                               message=f"pages held back while province incident {province.id} is open")],
                  timer=recheck_at)


def released(inc: Incident, now: float, reason: str) -> Change:
    """The holder no longer holds: the escalation resumes at the step it was on, due now, and
    the waits after it count from now (chaining from the old due time would fire every step
    of a long hold in one burst)."""
    new = inc.model_copy(deep=True)
    held_by, new.inhibited_by = new.inhibited_by, None
    if new.escalation.due is not None:
        new.escalation = new.escalation.model_copy(update={"due": now})
    new.updated_at = now
    return Change(new, [_entry(now, "resumed", by=held_by, reason=reason, step=new.escalation.step)])


def broadcast_done(inc: Incident, keys: Sequence[str], sent: Sequence[tuple[str, str, str, str]],
                   now: float) -> Change:
    """Acknowledged/resolved notices handed to delivery: (key, contact, channel, delivery id)."""
    new = inc.model_copy(deep=True)
    new.broadcasts = [b for b in new.broadcasts if b.key not in keys]
    tl = [_entry(now, "notified", event_key=k,
                 deliveries=[{"contact": c, "channel": ch, "delivery_id": d} for kk, c, ch, d in sent if kk == k])
          for k in keys]
    return Change(new, tl)


def lifecycle_event(inc: Incident, status: str, step: int, ack_url: str) -> dict[str, Any]:
    """The contract body of `pantau.escalations.v1` and of webhooks."""
    return {
        "version": "1", "incident_id": inc.id, "status": status, "level": inc.level, "region_code": inc.region_code,
        "region_name": inc.region_name, "category": inc.category, "step": step, "summary": inc.summary,
        "reasons": list(inc.reasons), "report_ids": list(inc.report_ids), "ack_url": ack_url,
        "opened_at": rfc3339(inc.opened_at), "updated_at": rfc3339(inc.updated_at),
    }


def new_incident_id(region: str, category: str, now: float) -> str:
    """Readable and unique: `65.71-election_dispute-20241127T061500-3f9a`."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{region}-{category}-{stamp}-{uuid.uuid4().hex[:4]}"


# --- Redis ----------------------------------------------------------------------------------------
K_INCIDENT = "pantau:incident:{}"
K_TIMELINE = "pantau:incident:{}:timeline"
K_OPEN = "pantau:incidents:open"
K_CLOSED = "pantau:incidents:closed"  # pair → {"id", "level", "bucket"} of its last resolved incident
K_ALL = "pantau:incidents"
K_TIMERS = "pantau:notify:timers"
K_OUTBOX = "pantau:notify:outbox"
K_SILENCES = "pantau:silences"
K_AUDIT = "pantau:audit"

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
    """Incidents, timelines, the open index, step timers, the outbox and silences, in Redis."""

    def __init__(self, r: aioredis.Redis, ack_url: Callable[["Incident"], str] = lambda _inc: "",
                 retention_days: int = 90):
        self.r = r
        self.ack_url = ack_url
        self.retention_s = retention_days * 86400
        self._save = r.register_script(_SAVE)
        self._claim = r.register_script(_CLAIM)
        self._load = r.register_script(_LOAD)
        self._province = r.register_script(_PROVINCE)

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
        only their level and status. /metrics used to load every open incident at once, so each
        scrape's transient peak grew with the number open: in a soak (100 reports/s, ~10
        incidents opening a second, a scrape every 10 s) glibc's heap grew +2 MB/min with live
        data flat (free-but-retained 0.5 → 10 MB in 5 min), pymalloc went from 47 to 54 arenas,
        and notify's RSS rose +2.2 to +4 MB/min. Counted this way: 107 MB, flat from minute 4
        to 12 (+0.08 MB/min over the second half)."""
        counts = {lv: 0 for lv in LEVELS}
        ids = [_str(v) for v in await self.r.hvals(K_OPEN)]
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
        if not ids:
            return []
        async with self.r.pipeline(transaction=False) as p:
            for i in ids:
                p.hget(K_INCIDENT.format(i), "doc")
            docs = await p.execute()
        gone = [i for i, d in zip(ids, docs) if d is None]
        if gone:
            await self.r.zrem(K_ALL, *gone)  # expired after the retention period
        return [None if d is None else Incident.model_validate_json(d) for d in docs]

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
        if int(await self._save(keys=keys, args=args)) != 1:
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

    # silences (audited: who, when; deleting keeps the record)
    async def add_silence(self, matchers: dict, ends_at: float, reason: str, by: str, now: float) -> dict:
        s = {"id": uuid.uuid4().hex[:12], "matchers": matchers, "starts_at": now, "ends_at": ends_at,
             "reason": reason, "created_by": by, "created_at": now}
        async with self.r.pipeline(transaction=True) as p:
            p.hset(K_SILENCES, s["id"], orjson.dumps(s))
            p.rpush(K_AUDIT, orjson.dumps({"at": rfc3339(now), "by": by, "action": "silence.create",
                                           "silence_id": s["id"], "matchers": matchers, "reason": reason,
                                           "ends_at": rfc3339(ends_at)}))
            await p.execute()
        return s

    async def silences(self) -> list[dict]:
        return [orjson.loads(v) for v in (await self.r.hgetall(K_SILENCES)).values()]

    async def delete_silence(self, silence_id: str, by: str, now: float) -> dict | None:
        raw = await self.r.hget(K_SILENCES, silence_id)
        if raw is None:
            return None
        s = orjson.loads(raw)
        if s.get("deleted_at"):
            return None
        s["deleted_at"], s["deleted_by"] = now, by
        async with self.r.pipeline(transaction=True) as p:
            p.hset(K_SILENCES, silence_id, orjson.dumps(s))
            p.rpush(K_AUDIT, orjson.dumps({"at": rfc3339(now), "by": by, "action": "silence.delete",
                                           "silence_id": silence_id}))
            await p.execute()
        return s

    async def wake_held(self, province_id: str, now: float, region: str | None = None,
                        category: str | None = None) -> int:
        """Bring forward the timers of open incidents held back by `province_id` (it resolved
        or its level fell), so they resume at once rather than at their next recheck. With the
        province's `region` and `category`, only its kabupaten/kota incidents are read, not
        every open incident."""
        if region is not None and category is not None:
            _, pairs = await self.province_view(region, category, kabkota_of_province(region))
            ids = [i for i in await self.r.hmget(K_OPEN, [incident_key(p.region_code, p.category) for p in pairs])
                   if i is not None] if pairs else []
            candidates = [i for i in await self.get_many([_str(i) for i in ids]) if i is not None]
        else:
            candidates = await self.open_incidents()
        n = 0
        for inc in candidates:
            if inc.is_open and inc.inhibited_by == province_id:
                await self.set_timer(inc.id, now)
                n += 1
        return n

    async def wake_matching(self, matchers: dict, now: float) -> int:
        """Bring forward the timers of open incidents a lifted silence was holding back."""
        from services.notify.policy import silence_matches

        n = 0
        for inc in await self.open_incidents():
            if inc.is_open and silence_matches(matchers, inc.region_code, inc.category):
                due = inc.wakeup()
                if due is not None:
                    await self.set_timer(inc.id, min(due, now))
                    n += 1
        return n


@functools.lru_cache(maxsize=64)
def kabkota_of_province(province: str) -> tuple[str, ...]:
    """The kabupaten/kota codes of a province (the registry scans every code to find them)."""
    return tuple(registry().children(province))


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _loaded(doc: Any, closed: Any) -> tuple[Incident | None, dict | None]:
    inc = Incident.model_validate_json(doc) if doc else None
    return inc, (orjson.loads(closed) if not inc and closed else None)


def silence_view(s: dict, now: float) -> dict:
    out = dict(s)
    for k in ("starts_at", "ends_at", "created_at", "deleted_at"):
        if out.get(k) is not None:
            out[k] = rfc3339(out[k])
    out["active"] = not s.get("deleted_at") and s["starts_at"] <= now < s["ends_at"]
    return out

