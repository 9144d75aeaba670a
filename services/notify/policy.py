"""Policy decisions, as pure functions over plain data: which policy takes an incident
(`route`), where its escalation stands and what fires next (`Escalation`, `next_action`,
`on_level_rise`), who a step reaches (`recipients`), and whether a silence holds it back
(`silenced_by`).

Nothing here reads a clock, Redis or Kafka: callers pass `now`, so tests control time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, Sequence

from pydantic import BaseModel, ConfigDict

from shared.levels import LEVEL_RANK
from shared.notify_config import Override, Policy, Rotation, Step
from shared.regions import in_scope, registry
from services.notify.rotations import on_call

Status = Literal["triggered", "escalated", "reminder"]


class Routable(Protocol):
    """What routing reads of an incident: where, what, and how bad."""

    region_code: str
    category: str
    level: str


# --- routing ---------------------------------------------------------------------------------
def matches(policy: Policy, region_code: str, category: str, level: str) -> bool:
    m = policy.match
    if m.region is not None and not in_scope(region_code, [m.region]):
        return False
    if m.categories is not None and category not in {c.value if hasattr(c, "value") else c for c in m.categories}:
        return False
    return LEVEL_RANK.get(level, 0) >= LEVEL_RANK[m.min_level]


def specificity(policy: Policy) -> tuple[int, int, int]:
    """Deeper region prefix first, then a category list (shorter first), then a higher
    minimum level. Ties keep the order of the config file."""
    m = policy.match
    depth = registry().level(m.region) if m.region else 0
    cats = -len(m.categories) if m.categories is not None else -1000
    return (depth, cats, LEVEL_RANK[m.min_level])


def route(incident: Routable, policies: Sequence[Policy]) -> Policy | None:
    """The most specific policy that takes this incident at its current level, or None."""
    best: Policy | None = None
    for p in policies:
        if matches(p, incident.region_code, incident.category, incident.level):
            if best is None or specificity(p) > specificity(best):
                best = p
    return best


# --- escalation position and what fires next ---------------------------------------------------
class Escalation(BaseModel):
    """Where an incident stands on its policy: the pending firing (step, cycle, rep) and
    when it is due. `due` None means nothing is pending (acknowledged, resolved, exhausted
    or no policy). `epoch` grows at every (re)start, so every firing has its own key."""

    model_config = ConfigDict(frozen=True)

    policy_id: str | None = None
    epoch: int = 0
    step: int = 0
    cycle: int = 0  # passes through the whole policy (`policy.repeat`)
    rep: int = 0  # repeats of this step (`step.repeat`)
    due: float | None = None
    status: Status = "triggered"  # what the pending firing will announce
    announced: bool = False  # its lifecycle event has already been published
    last_step: int | None = None  # the step fired last
    # Set when a start jumps past steps (`level_steps`): the first step whose people have not
    # been paged on this policy. They are paged with `step`, so an incident that opens at
    # `awas` still reaches its kabupaten/kota coordinator, not only the province.
    from_step: int | None = None

    @property
    def event_key(self) -> str:
        """Deterministic per firing: a firing replayed after a crash has the same key."""
        return f"step:{self.step}:{self.cycle}.{self.rep}:e{self.epoch}"


@dataclass(frozen=True)
class Fire:
    """Fire step `escalation.step` now; afterwards the escalation is `then`."""

    escalation: Escalation
    then: Escalation

    @property
    def step(self) -> int:
        return self.escalation.step

    @property
    def status(self) -> Status:
        return self.escalation.status

    @property
    def event_key(self) -> str:
        return self.escalation.event_key

    @property
    def steps(self) -> tuple[int, ...]:
        """The steps whose targets this firing pages: `step`, and the steps a jump passed
        over that nobody was paged for (in order, `step` last)."""
        first = self.escalation.from_step
        return tuple(range(first, self.step + 1)) if first is not None and first < self.step else (self.step,)

    @property
    def at(self) -> float:
        """The moment the firing was due (recipients are resolved as of then)."""
        return self.escalation.due  # type: ignore[return-value]


@dataclass(frozen=True)
class Wait:
    """Nothing to fire until `until` (epoch seconds)."""

    until: float


@dataclass(frozen=True)
class Idle:
    """Nothing to fire, ever, for `reason` (acknowledged, resolved, no policy, ...)."""

    reason: str


Action = Fire | Wait | Idle


def level_step(policy: Policy, level: str) -> int:
    """The step a rise to `level` jumps to: the configured step of the highest level at or
    below it, else step 0."""
    best = 0
    for name in ("siaga", "awas"):
        i = getattr(policy.level_steps, name)
        if i is not None and LEVEL_RANK[name] <= LEVEL_RANK.get(level, 0):
            best = i
    return best


def start(policy: Policy | None, level: str, now: float, epoch: int = 0, status: Status = "triggered",
          floor_step: int | None = None, announced: bool = True) -> Escalation:
    """A fresh escalation whose first firing is due now: the level's step (or `floor_step`
    when that is further along, so a rise never walks an escalation back down). Steps it
    jumps past are fired with it unless they had fired already (up to `floor_step`)."""
    if policy is None:
        return Escalation(epoch=epoch, status=status, announced=announced)
    step = level_step(policy, level)
    unpaged = 0
    if floor_step is not None:
        step = max(step, min(floor_step, len(policy.steps) - 1))
        unpaged = floor_step + 1
    return Escalation(policy_id=policy.id, epoch=epoch, step=step, due=now, status=status, announced=announced,
                      last_step=None, from_step=unpaged if unpaged < step else None)


def advance(esc: Escalation, policy: Policy) -> Escalation:
    """The escalation after its pending firing: a reminder of the same step (`step.repeat`),
    else the next step, else the policy again from step 0 (`policy.repeat`), else nothing."""
    step: Step = policy.steps[esc.step]
    base = dict(policy_id=esc.policy_id, epoch=esc.epoch, last_step=esc.step, announced=False)
    due = (esc.due or 0.0) + step.wait_s
    if esc.rep < step.repeat:
        return Escalation(step=esc.step, cycle=esc.cycle, rep=esc.rep + 1, due=due, status="reminder", **base)
    if esc.step + 1 < len(policy.steps):
        return Escalation(step=esc.step + 1, cycle=esc.cycle, rep=0, due=due, status="escalated", **base)
    if esc.cycle < policy.repeat:
        return Escalation(step=0, cycle=esc.cycle + 1, rep=0, due=due, status="reminder", **base)
    return Escalation(step=esc.step, cycle=esc.cycle, rep=esc.rep, due=None, status="reminder", **base)


def next_action(esc: Escalation, policy: Policy | None, now: float) -> Action:
    """What the scheduler does with this escalation at `now`."""
    if policy is None or esc.policy_id != policy.id:
        return Idle("no policy")
    if esc.due is None:
        return Idle("nothing pending")
    if esc.step >= len(policy.steps):
        return Idle("step no longer in the policy")
    if esc.due > now:
        return Wait(esc.due)
    return Fire(esc, advance(esc, policy))


def stop(esc: Escalation) -> Escalation:
    """Timers stop (acknowledged or resolved); the position is kept for a later rise."""
    return esc.model_copy(update={"due": None})


def on_level_rise(esc: Escalation, old: Policy | None, new: Policy | None, level: str, now: float) -> Escalation:
    """A higher level: start a new epoch at once, even after an acknowledgement, at the
    level's step of the policy that now takes the incident (`new`, re-routed by the
    caller), but never below the step already reached on the same policy."""
    floor = None
    if old is not None and new is not None and old.id == new.id:
        floor = esc.last_step
    return start(new, level, now, epoch=esc.epoch + 1, status="escalated", floor_step=floor)


# --- who a step reaches -------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipient:
    """One page of a firing: a contact over a channel, and the channel to try if that fails."""

    contact: str
    channel: str
    fallback: str | None = None


def firing_recipients(policy: Policy, fire: Fire, region_code: str, rotations: Sequence[Rotation],
                      operator_contacts: Sequence[str], at: datetime, reaches: dict[str, Reach],
                      shared_channels: Sequence[str] = (),
                      extra_overrides: dict[str, list[Override]] | None = None) -> tuple[list[Recipient], list[str]]:
    """Everyone a firing pages, over each of its steps (`Fire.steps`), each (contact, channel)
    once, plus notes in words: targets that reached nobody or a stand-in, and a jump."""
    out: list[Recipient] = []
    seen: set[tuple[str, str]] = set()
    notes: list[str] = []
    for i in fire.steps:
        step = policy.steps[i]
        contacts, more = resolve_targets(step, region_code, rotations, operator_contacts, at, extra_overrides)
        found, more2 = recipients(step, contacts, reaches, shared_channels)
        for n in (*more, *more2):
            if n not in notes:
                notes.append(n)
        for r in found:
            if (r.contact, r.channel) not in seen:
                seen.add((r.contact, r.channel))
                out.append(r)
    if len(fire.steps) > 1:
        passed = ", ".join(str(i) for i in fire.steps[:-1])
        noun = "step" if len(fire.steps) == 2 else "steps"
        notes.append(f"jumped to step {fire.step} for its level; {noun} {passed}, not paged yet, paged with it")
    return out, notes


def resolve_targets(step: Step, region_code: str, rotations: Sequence[Rotation], operator_contacts: Sequence[str],
                    at: datetime, extra_overrides: dict[str, list[Override]] | None = None) -> tuple[list[str], list[str]]:
    """Contact ids a step's targets name at `at`, in order, without repeats, plus notes."""
    reg = registry()
    by_region = {r.region: r for r in rotations}
    extra = extra_overrides or {}
    out: list[str] = []
    notes: list[str] = []

    def oncall(region: str) -> str | None:
        r = by_region.get(region)
        return None if r is None else on_call(r, at, extra.get(region, ()))

    for t in step.notify:
        if t.startswith("contact:"):
            found = [t[8:]]
        elif t == "operators":
            found = list(operator_contacts)
            if not found:
                notes.append("operators: no operator contacts configured")
        elif t == "oncall:province":
            c = oncall(reg.province_of(region_code))
            found = [c] if c else []
            if not c:
                notes.append(f"oncall:province: no rotation for {reg.province_of(region_code)}")
        else:  # oncall:kabkota; a province incident, or a kabupaten/kota without a rotation, goes up
            kab = reg.kabkota_of(region_code)
            c = oncall(kab) if kab != reg.province_of(region_code) else None
            if c is None:
                c = oncall(reg.province_of(region_code))
                if c is not None and kab != reg.province_of(region_code):
                    notes.append(f"oncall:kabkota: no rotation for {kab}; the province's on-call stands in")
            found = [c] if c else []
            if not c:
                notes.append(f"oncall:kabkota: no rotation for {kab} or its province")
        for c in found:
            if c not in out:
                out.append(c)
    return out, notes


def reach(contacts: Sequence[Any], channels: Sequence[Any]) -> dict[str, Reach]:
    """How each contact can be reached, from the addresses it has: a channel type is usable
    when the contact has that type's address (a personal `webhook` endpoint for webhook
    channels). Defaults are every usable channel except SMS, which stands by as the fallback
    (it costs money and is what still arrives on a weak connection); a contact with only a
    phone is paged by SMS."""
    address = {"telegram": "telegram_chat_id", "email": "email", "sms": "phone", "webhook": "webhook"}
    out: dict[str, Reach] = {}
    for c in contacts:
        usable = tuple(ch.id for ch in channels
                       if ch.type in address and getattr(c, address[ch.type], None) not in (None, ""))
        types = {ch.id: ch.type for ch in channels}
        defaults = tuple(ch for ch in usable if types[ch] != "sms") or usable[:1]
        spare = [ch for ch in usable if ch not in defaults]
        sms = [ch for ch in spare if types[ch] == "sms"]
        out[c.id] = Reach(defaults, usable, (sms or spare or [None])[0])
    return out


@dataclass(frozen=True)
class Reach:
    """The channels a contact is paged on by default, those it can be paged on at all, and
    the fallback for a contact paged on a single channel."""

    defaults: tuple[str, ...]
    usable: tuple[str, ...]
    fallback: str | None = None


def recipients(step: Step, contact_ids: Sequence[str], reaches: dict[str, Reach],
               shared_channels: Sequence[str] = ()) -> tuple[list[Recipient], list[str]]:
    """(contact, channel, fallback) for a step: the step's channels where the contact can be
    reached on them (a channel in `shared_channels`, such as a webhook with its own url or a
    Slack room, reaches anyone), else the contact's defaults."""
    out: list[Recipient] = []
    notes: list[str] = []
    for c in contact_ids:
        r = reaches.get(c)
        if r is None:
            notes.append(f"contact {c!r} is not configured")
            continue
        chans = list(r.defaults)
        if step.channels:
            usable = [ch for ch in step.channels if ch in r.usable or ch in shared_channels]
            if usable:
                chans = usable
            else:
                notes.append(f"contact {c!r} has no address for {', '.join(step.channels)}; paged on their own channels")
        if not chans:
            notes.append(f"contact {c!r} has no address for any channel")
        fb = None
        if len(chans) == 1:
            spare = [ch for ch in ((r.fallback,) if r.fallback else ()) + r.usable if ch not in chans]
            fb = spare[0] if spare else None
        for ch in chans:
            rc = Recipient(c, ch, fb)
            if rc not in out:
                out.append(rc)
    return out, notes


# --- silences -----------------------------------------------------------------------------------
def silence_matches(matchers: dict, region_code: str, category: str) -> bool:
    region = matchers.get("region")
    if region and not in_scope(region_code, [region]):
        return False
    cat = matchers.get("category")
    return not (cat and cat != category)


def silenced_by(silences: Sequence[dict], region_code: str, category: str, now: float) -> dict | None:
    """The active silence that holds this incident back longest, or None."""
    best = None
    for s in silences:
        if s.get("deleted_at") or not (s["starts_at"] <= now < s["ends_at"]):
            continue
        if silence_matches(s["matchers"], region_code, category) and (best is None or s["ends_at"] > best["ends_at"]):
            best = s
    return best


def as_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
