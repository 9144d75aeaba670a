"""The state changes of an incident, as pure functions (no I/O, the clock passed in).

Each returns a `Change` (services/notify/incident.py) or None when nothing changes:
  `open_incident`   a score update at waspada or above with no open incident → triggered
  `apply_update`    later updates: level up → escalated (a new epoch at the level's step,
                    even after an ack); level down; reasons and report ids; normal for
                    `auto_resolve_buckets` buckets → resolved (auto); normal after a
                    rejected report → resolved (auto) at once
  `acknowledge`     → acknowledged; timers stop; everyone paged hears who took it
  `resolve`         → resolved; everyone paged hears it, on every channel they were paged on
  `fired`           a step went out: record who, advance the escalation
  `broadcast_done`  acknowledged/resolved notices handed to delivery
  `inhibited` / `released`  a due step held back by a province incident, and let go again
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from shared.levels import LEVEL_RANK
from shared.notify_config import Policy
from shared.regions import registry
from shared.scores import ScoreUpdate
from shared.times import rfc3339
from shared.verifications import decision_reasons
from services.notify.incident import (
    MAX_REASONS, Broadcast, Change, Conflict, Incident, _entry, _merge_ids, incident_key, source_key, summarize,
)
from services.notify.policy import Fire, Recipient, on_level_rise, route, start, stop


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
        rejected = decision_reasons([r for r in u.reasons if r not in inc.reasons])
        if rejected:
            # Normal because an operator rejected a report: scoring lowered the level at once
            # (nothing else holds it), so nobody is paged over a report declared false.
            # Resolved at normal, so the pair's closed marker lets a genuine report of the same
            # bucket open a new incident (open_incident's `closed`).
            tl = [_entry(now, "verification", message=why) for why in rejected]
            tl.append(_entry(now, "level", previous=inc.level, level=u.level, reasons=list(u.reasons[:MAX_REASONS])))
            new.reasons, new.level = list(u.reasons[:MAX_REASONS]), u.level
            new.summary = summarize(new.category, new.region_name, new.level, language)
            ch = resolve(new, "pantau", now, how="auto", note="normal after a rejected report")
            ch.timeline = tl + ch.timeline
            return ch
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
    for why in decision_reasons([r for r in u.reasons if r not in inc.reasons]):  # a report verified or rejected
        tl.append(_entry(now, "verification", message=why))
        changed = True

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
