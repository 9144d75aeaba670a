"""The escalation clock: fires every due step exactly once, even across kill -9.

Timers live in a Redis sorted set (incident id → when it next needs attention). A scheduler
claims due timers in one Lua call that also pushes each one `timer_lease_s` into the future
(the lease); then, per incident:

  1. hands pending acknowledged/resolved notices to delivery, for everyone paged;
  2. asks `policy.next_action` what is due; if a silence covers the incident, the firing
     waits for the silence to end; if an open province incident of the same category holds
     it back (`inhibit.inhibitor`), it waits until that no longer holds (re-checked every
     `notify.inhibit.recheck_s`, woken at once when the province incident resolves) and then
     resumes at the step it was on; else it resolves the step's recipients as of the time
     the step was due, submits one delivery per (contact, channel) with the firing's
     deterministic event key (`step:<n>:<cycle>.<repeat>:e<epoch>`), and
  3. saves the advanced escalation with its timeline entry, lifecycle event and next timer
     in one atomic, version-checked write.

A process killed after claiming leaves the timer to come due again when the lease runs out;
killed after submitting, the re-fire submits the same keys, which `Deliverer.submit` treats as
the same deliveries: every due step fires, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from shared import metrics
from shared.notify_config import InhibitSettings, Override, Policy, Rotation
from shared.regions import registry
from services.notify.store import IncidentStore, OpenPair, SaveConflict, kabkota_of_province
from services.notify.transitions import broadcast_done, deferred, fired, inhibited, released
from services.notify.incident import Incident
from shared.times import rfc3339
from services.notify.inhibit import inhibitor, province_pair, release_reason
from services.notify.links import LinkMaker
from services.notify.messages import Notice
from services.notify.policy import (
    Fire,
    Idle,
    Reach,
    Wait,
    as_datetime,
    firing_recipients,
    next_action,
    silenced_by,
)
from services.notify.rotations import OverrideStore
from services.notify import silences as silence_store

log = logging.getLogger("pantau.notify.scheduler")

class Submitter(Protocol):
    """The one thing the scheduler needs from delivery (services.notify.delivery.Deliverer)."""

    def submit(self, incident_id: str, event_key: str, contact_id: str, channel_id: str, notice: Notice,
               fallback_channel_id: str | None = None) -> Any: ...


@dataclass
class Paging:
    """The config the scheduler pages by."""

    policies: Sequence[Policy]
    rotations: Sequence[Rotation]
    reaches: dict[str, Reach]
    operator_contacts: Sequence[str]
    shared_channels: Sequence[str] = ()
    watchdog_policy: Policy | None = None
    extra_policies: dict[str, Policy] = field(default_factory=dict)
    inhibit: InhibitSettings = field(default_factory=InhibitSettings)
    # (contact, channel) pairs that reach a room rather than a person (a Telegram group chat).
    group_pairs: frozenset[tuple[str, str]] = frozenset()

    def is_shared(self, contact: str, channel: str) -> bool:
        """Whether a page to `contact` on `channel` lands where others can read it: a shared
        channel the contact has no personal address on (Slack, a webhook's own url), or a group chat."""
        if (contact, channel) in self.group_pairs:
            return True
        reach = self.reaches.get(contact)
        return channel in self.shared_channels and (reach is None or channel not in reach.usable)

    def policy(self, policy_id: str | None) -> Policy | None:
        if policy_id is None:
            return None
        for p in self.policies:
            if p.id == policy_id:
                return p
        return self.extra_policies.get(policy_id)


def notice_for(inc: Incident, status: str, step: int, ack_url: str) -> Notice:
    return Notice(incident_id=inc.id, status=status, level=inc.level, region_code=inc.region_code,
                  region_name=inc.region_name, category=inc.category, step=step, summary=inc.summary,
                  reasons=tuple(inc.reasons), report_ids=tuple(inc.report_ids), ack_url=ack_url,
                  opened_at=rfc3339(inc.opened_at), updated_at=rfc3339(inc.updated_at))


async def _call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    out = fn(*args, **kw)
    return await out if inspect.isawaitable(out) else out


class Scheduler:
    """Claims due timers and fires what is due; `wake()` brings a look forward.

    Due incidents are processed side by side (`concurrency` at a time): each
    waits mostly on Redis and on delivery submits, and they touch different incidents, whose
    saves are version-checked anyway (as between several notify processes)."""

    def __init__(self, store: IncidentStore, deliverer: Submitter, paging: Paging, links: LinkMaker,
                 overrides: OverrideStore | None = None, lease_s: float = 30.0, poll_s: float = 0.5,
                 clock: Callable[[], float] = time.time, concurrency: int = 64):
        self.store = store
        self.deliverer = deliverer
        self.paging = paging
        self.links = links
        self.overrides = overrides
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.clock = clock
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._overdue_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim due timers whenever a slot is free, until `stop`. No tick waits for the
        slowest incident of the one before: a new incident is claimed as soon as it is saved
        (its wake()) and a slot is free."""
        inflight: set[asyncio.Task] = set()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # Cleared before the look, not after: a wake() that comes while claiming (a
                # new incident saved meanwhile) then ends the wait below at once, not lost.
                self._wake.clear()
                free = self.concurrency - len(inflight)
                claimed = 0
                if free > 0:
                    try:
                        claimed = await self._start(free, inflight)
                    except Exception:
                        log.exception("scheduler claim failed; retrying")
                if free <= 0 or claimed >= free:
                    # Every slot is busy and more may be due: go on as soon as one frees; the
                    # overdue gauge still moves, once a second.
                    if time.monotonic() - self._overdue_at >= 1.0:
                        with contextlib.suppress(Exception):
                            await self._report_overdue()
                    await self._half_free(inflight, stopper)
                    continue
                nxt = None
                with contextlib.suppress(Exception):
                    nxt = await self._report_overdue()
                delay = self.poll_s if nxt is None else max(0.0, min(self.poll_s, nxt - self.clock()))
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if inflight:  # stopping: let the incidents being processed finish (each is short)
                await asyncio.gather(*inflight, return_exceptions=True)
        finally:
            stopper.cancel()
            for t in list(inflight):  # cancelled instead: their leases run out and they fire again
                t.cancel()

    async def _half_free(self, inflight: set[asyncio.Task], stopper: asyncio.Future) -> None:
        """Wait until half the slots are free (or stopping): claiming again as soon as one
        frees took due incidents one at a time, a claim and two reads each, where a claim of
        many shares those round trips and the firings' writes share pipelines."""
        while len(inflight) > self.concurrency // 2 and not stopper.done():
            await asyncio.wait({stopper, *inflight}, return_when=asyncio.FIRST_COMPLETED)

    async def tick(self) -> int:
        """Process every timer due now (up to `concurrency` of them) and wait for them;
        returns how many incidents were looked at. (`run` does the same without waiting.)"""
        inflight: set[asyncio.Task] = set()
        n = await self._start(self.concurrency, inflight)
        await asyncio.gather(*inflight)
        return n

    async def _start(self, limit: int, inflight: set[asyncio.Task]) -> int:
        """Claim up to `limit` due timers and start processing each in a task of `inflight`."""
        ids = await self.store.claim_due(self.clock(), self.lease_s, limit=limit)
        if not ids:
            return 0
        # One round trip for all the claimed incidents and one for the silences, instead of
        # one each per incident: a silence added now counts from the next claim.
        first = await self.store.get_many(ids)
        silences = await silence_store.all_of(self.store.r)
        for incident_id, inc in zip(ids, first):
            t = asyncio.create_task(self._process_safely(incident_id, inc, silences), name=f"notify-fire-{incident_id}")
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        return len(ids)

    async def _process_safely(self, incident_id: str, inc: Incident | None, silences: list[dict]) -> None:
        try:
            await self.process(incident_id, first=inc, silences=silences)
        except Exception:
            # The lease stays: the timer comes due again after `lease_s`.
            log.exception("incident %s: processing failed; retrying after the lease", incident_id)

    async def _report_overdue(self) -> float | None:
        """Set the overdue gauge; returns the earliest timer (None: none)."""
        nxt = await self.store.next_timer()
        self._overdue_at = time.monotonic()
        metrics.ESCALATION_OVERDUE.set(0.0 if nxt is None else max(0.0, self.clock() - nxt))
        return nxt

    async def process(self, incident_id: str, max_rounds: int = 50, *, first: Incident | None = None,
                      silences: list[dict] | None = None) -> None:
        """Bring one incident up to date: pending notices, then every firing now due.

        `first` is the incident as just read (the tick reads all it claimed at once) and
        `silences` the silences as read for the tick; without them both are read here."""
        known = first
        # True while `known` is what this loop itself just saved with its timer set from
        # `wakeup()` (Change.timer "auto"): then a Wait or Idle finds that timer already in place.
        timer_saved = False
        for _ in range(max_rounds):
            now = self.clock()
            inc = known if known is not None else await self.store.get(incident_id)
            fresh, known, timer_saved = timer_saved and known is not None, None, False
            if inc is None:
                await self.store.set_timer(incident_id, None)
                return
            try:
                if inc.broadcasts:
                    known, timer_saved = await self._broadcast(inc, now), True
                    continue
                policy = self.paging.policy(inc.escalation.policy_id)
                action = next_action(inc.escalation, policy, now) if inc.is_open else Idle("not open")
                if isinstance(action, Wait):
                    if not (fresh and inc.wakeup() == action.until):
                        await self.store.set_timer(incident_id, action.until)
                    return
                if isinstance(action, Idle):
                    if not fresh:
                        await self.store.set_timer(incident_id, inc.wakeup())
                    return
                if silences is None:
                    silences = await silence_store.all_of(self.store.r)
                silence = silenced_by(silences, inc.region_code, inc.category, now)
                if silence is not None:
                    await self.store.save(deferred(inc, silence, now), inc.version)
                    return
                holder, others = await self._province_of(inc)
                rule = self.paging.inhibit
                held = inhibitor(inc, holder, others, rule.province_over_kabupaten, rule.min_kabkota,
                                 rule.while_acknowledged)
                if held is not None:
                    await self._hold(inc, held, now)  # type: ignore[arg-type]
                    return
                if inc.inhibited_by is not None:
                    why = release_reason(inc, holder if holder is not None and holder.id == inc.inhibited_by
                                         else None, others, rule.province_over_kabupaten, rule.min_kabkota,
                                         rule.while_acknowledged)
                    known, timer_saved = await self.store.save(released(inc, now, why), inc.version), True
                    log.info("incident %s: pages resume (%s)", inc.id, why)
                    continue  # the resumed step is due now: fire it in the next round
                known, timer_saved = await self._fire(inc, policy, action, now), True  # type: ignore[arg-type]
            except SaveConflict:
                continue  # someone changed it meanwhile: look again
        await self.store.set_timer(incident_id, self.clock())

    async def _province_of(self, inc: Incident) -> tuple[Incident | None, list[OpenPair]]:
        """The open incident of the province and category above `inc`, if there is one, and
        the open kabupaten/kota incidents of that province and category (all `inhibit` needs
        of the others). Nothing is read while inhibition is switched off."""
        pair = province_pair(inc.region_code, inc.category)
        if pair is None or inc.kind != "score" or not self.paging.inhibit.province_over_kabupaten:
            return None, []
        return await self.store.province_view(pair[0], pair[1], kabkota_of_province(pair[0]))

    async def _hold(self, inc: Incident, province: Incident, now: float) -> None:
        """Keep the due step pending; the timeline and the metric hear of it once per holder."""
        recheck = now + self.paging.inhibit.recheck_s
        if inc.inhibited_by == province.id:
            await self.store.set_timer(inc.id, recheck)
            return
        await self.store.save(inhibited(inc, province, now, recheck), inc.version)
        metrics.NOTIFY_INHIBITED.inc()
        log.info("incident %s: step %d held back by province incident %s (%s)", inc.id, inc.escalation.step,
                 province.id, province.level)

    async def _submit(self, inc: Incident, event_key: str, contact: str, channel: str, notice: Notice,
                      fallback: str | None, notes: list[str]) -> str | None:
        """Hand one delivery over; a configuration mistake (a channel or contact gone from the
        config) is noted on the timeline instead of stalling the escalation."""
        try:
            return str(await _call(self.deliverer.submit, inc.id, event_key, contact, channel, notice, fallback))
        except ValueError as e:
            log.error("incident %s: %s on %s not submitted: %s", inc.id, contact, channel, e)
            notes.append(f"{contact} on {channel}: not sent ({e})")
            return None

    def _link(self, inc: Incident, now: float, contact: str, channel: str) -> str:
        """The ack link for one page: bound to the incident's epoch, and naming the channel
        rather than the person when anyone in a shared room (Slack, a webhook) can open it."""
        holder = f"channel:{channel}" if self.paging.is_shared(contact, channel) else contact
        return self.links.url(inc.id, now, holder, epoch=inc.rises)

    async def _broadcast(self, inc: Incident, now: float) -> Incident:
        sent: list[tuple[str, str, str, str]] = []
        notes: list[str] = []
        step = inc.escalation.last_step if inc.escalation.last_step is not None else inc.escalation.step
        for b in inc.broadcasts:
            for contact, channel in inc.paged:
                notice = notice_for(inc, b.status, step, self._link(inc, now, contact, channel))
                did = await self._submit(inc, b.key, contact, channel, notice, None, notes)
                if did is not None:
                    sent.append((b.key, contact, channel, did))
        change = broadcast_done(inc, [b.key for b in inc.broadcasts], sent, now)
        if notes:
            change.timeline[-1]["notes"] = notes
        return await self.store.save(change, inc.version)

    async def _fire(self, inc: Incident, policy: Policy, fire: Fire, now: float) -> Incident:
        at = as_datetime(fire.at)
        extra: dict[str, list[Override]] = {}
        if self.overrides is not None:
            # Only the incident's own kabupaten/kota and province rotations can be asked
            # (policy.resolve_targets): reading every rotation's overrides cost a round trip each.
            mine = {registry().kabkota_of(inc.region_code), registry().province_of(inc.region_code)}
            for r in self.paging.rotations:
                if r.region in mine:
                    extra[r.region] = await self.overrides.overrides(r.region, at)
        recips, notes = firing_recipients(policy, fire, inc.region_code, self.paging.rotations,
                                          self.paging.operator_contacts, at, self.paging.reaches,
                                          self.paging.shared_channels, extra)
        shown = inc.model_copy(update={"updated_at": now})
        sent = []
        for r in recips:
            notice = notice_for(shown, fire.status, fire.step, self._link(inc, now, r.contact, r.channel))
            did = await self._submit(inc, fire.event_key, r.contact, r.channel, notice, r.fallback, notes)
            if did is not None:
                sent.append((r, did))
        change = fired(inc, fire, sent, notes, now)
        for d in change.timeline[0]["deliveries"]:
            if self.paging.is_shared(d["contact"], d["channel"]):
                # The timeline says whose link a room got: whoever acks with it is this channel.
                d["link_for"] = f"channel:{d['channel']}"
        saved = await self.store.save(change, inc.version)
        metrics.ESCALATION_STEPS.inc()
        log.info("incident %s: step %d fired (%s, %s) to %d deliveries", inc.id, fire.step, fire.status,
                 fire.event_key, len(sent))
        if not sent:
            log.warning("incident %s: step %d reached nobody: %s", inc.id, fire.step, "; ".join(notes))
        return saved

