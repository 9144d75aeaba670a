"""Incidents. First the state transitions as pure functions: open on waspada and above, one
incident per (region, category) updated in place, level up → escalated (even after an ack),
ack stops the timers, resolve tells everyone paged on every channel, auto-resolve after N
normal buckets, and the watchdog's decision about silent sources. Then the same machinery on a
real Redis with a fake clock: the scheduler fires each due step once (also after a crash
between submit and save), silences hold steps back, writers never lose updates, and the
watchdog pages the operators."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
import redis.asyncio as aioredis

from shared.channels_config import ContactConfig, channel_config
from shared.notify_config import Policy, Rotation
from services.notify.consumer import ScoreHandler
from services.notify.store import K_OUTBOX, K_TIMERS, IncidentStore, SaveConflict
from services.notify.transitions import acknowledge, apply_update, broadcast_done, fired, open_incident, resolve
from services.notify.incident import Conflict, lifecycle_event
from shared.scores import ScoreUpdate
from services.notify.links import LinkMaker
from services.notify.policy import Fire, Recipient, Wait, next_action, reach
from services.notify.scheduler import Paging, Scheduler
from services.notify.watchdog import K_LAST_SEEN, K_STARTED, Watchdog, builtin_policy, silent_sources
from services.notify import silences
from services.notify.wakeups import wake_matching

POLICY = Policy.model_validate({
    "id": "kaltara",
    "match": {"region": "65"},
    "steps": [{"notify": ["oncall:kabkota"], "wait_minutes": 10},
              {"notify": ["oncall:province"], "wait_minutes": 10}],
    "level_steps": {"siaga": 1},
})
POLICIES = [POLICY]
DAY0 = datetime(2024, 11, 27, tzinfo=timezone(timedelta(hours=8)))


def update(level: str, day: int = 0, region: str = "65.71.02", category: str = "election_dispute",
           reasons=("7 reports today vs expected 1.7",), report_ids=("r1",)) -> ScoreUpdate:
    start = DAY0 + timedelta(days=day)
    return ScoreUpdate.model_validate({
        "region_code": region, "category": category, "bucket_start": start.isoformat(),
        "bucket_end": (start + timedelta(days=1)).isoformat(), "observed": 7, "weighted": 7.0, "expected": 1.7,
        "upper": 3.3, "method": "ears-c2", "alarm": True, "level": level, "reasons": list(reasons),
        "report_ids": list(report_ids), "computed_at": start.isoformat(),
    })


def opened(level: str = "waspada", now: float = 1000.0):
    ch = open_incident("inc-1", update(level), POLICIES, now)
    assert ch is not None
    return ch


def fire_due(inc, now: float):
    a = next_action(inc.escalation, POLICY, now)
    assert isinstance(a, Fire), a
    return fired(inc, a, [(Recipient("budi", "tg"), "d1"), (Recipient("budi", "sms"), "d2")], [], now).incident


def test_normal_opens_nothing_and_waspada_opens_a_triggered_incident():
    assert open_incident("x", update("normal"), POLICIES, 0.0) is None
    ch = opened()
    inc = ch.incident
    assert (inc.status, inc.level, inc.region_code, inc.category) == ("triggered", "waspada", "65.71", "election_dispute")
    assert inc.region_name and inc.reasons == ["7 reports today vs expected 1.7"] and inc.report_ids == ["r1"]
    assert ch.events == [("triggered", 0)] and ch.opened
    assert inc.escalation.policy_id == "kaltara" and inc.escalation.due == 1000.0
    assert inc.wakeup() == 1000.0


def test_kabkota_and_province_updates_are_separate_pairs():
    assert open_incident("x", update("siaga", region="65"), POLICIES, 0.0).incident.region_code == "65"
    assert open_incident("y", update("siaga", region="65.71.02.1001"), POLICIES, 0.0).incident.region_code == "65.71"


def test_no_policy_is_recorded_and_nothing_is_due():
    ch = open_incident("x", update("waspada", region="32.73"), POLICIES, 0.0)
    assert ch.incident.escalation.policy_id is None and ch.incident.wakeup() is None
    assert any(e["kind"] == "no_policy" for e in ch.timeline)


def test_later_updates_change_the_incident_and_replays_change_nothing():
    inc = opened().incident
    ch = apply_update(inc, update("waspada", report_ids=["r1", "r2"], reasons=["9 reports"]), POLICIES, 2, 1100.0)
    assert ch is not None and ch.events == []
    assert ch.incident.report_ids == ["r1", "r2"] and ch.incident.reasons == ["9 reports"]
    assert ch.incident.status == "triggered"
    assert apply_update(ch.incident, update("waspada", report_ids=["r1", "r2"], reasons=["9 reports"]),
                        POLICIES, 2, 1200.0) is None


def test_step_firing_records_who_was_paged_and_advances():
    inc = fire_due(opened().incident, 1000.0)
    assert inc.paged == [("budi", "tg"), ("budi", "sms")]
    assert inc.escalation.due == 1600.0 and inc.escalation.step == 1
    assert next_action(inc.escalation, POLICY, 1599.0) == Wait(1600.0)
    inc2 = fire_due(inc, 1600.0)
    assert inc2.status == "escalated"
    assert inc2.paged == [("budi", "tg"), ("budi", "sms")]  # not repeated


def test_first_firing_does_not_announce_twice_but_later_ones_do():
    inc = opened().incident
    a = next_action(inc.escalation, POLICY, 1000.0)
    assert fired(inc, a, [], [], 1000.0).events == []  # "triggered" went out when it opened
    inc = fired(inc, a, [], [], 1000.0).incident
    b = next_action(inc.escalation, POLICY, 1600.0)
    assert fired(inc, b, [], [], 1600.0).events == [("escalated", 1)]


def test_ack_stops_timers_and_tells_everyone_paged():
    inc = fire_due(opened().incident, 1000.0)
    ch = acknowledge(inc, "operator:op1", 1300.0)
    assert ch.incident.status == "acknowledged" and ch.incident.acknowledged_by == "operator:op1"
    assert ch.incident.escalation.due is None
    assert [(b.status, b.key) for b in ch.incident.broadcasts] == [("acknowledged", "ack:1")]
    assert ch.events == [("acknowledged", 0)] and ch.acknowledged
    assert acknowledge(ch.incident, "operator:op2", 1400.0) is None  # idempotent
    done = broadcast_done(ch.incident, ["ack:1"], [("ack:1", "budi", "tg", "d9")], 1301.0).incident
    assert done.broadcasts == [] and done.wakeup() is None


def test_level_rise_after_ack_escalates_at_once_to_the_levels_step():
    inc = fire_due(opened().incident, 1000.0)
    inc = acknowledge(inc, "operator:op1", 1300.0).incident
    ch = apply_update(inc, update("siaga", report_ids=["r1", "r3"]), POLICIES, 2, 1400.0)
    assert ch.incident.status == "escalated" and ch.incident.level == "siaga"
    assert ch.events == [("escalated", 1)]
    assert ch.incident.escalation.due == 1400.0 and ch.incident.escalation.step == 1
    assert ch.incident.triggered_at == 1400.0
    assert any(e["kind"] == "unacknowledged" for e in ch.timeline)
    a = next_action(ch.incident.escalation, POLICY, 1400.0)
    assert isinstance(a, Fire) and a.step == 1 and a.event_key.endswith(":e1")


def test_level_fall_is_recorded_without_paging():
    inc = opened("siaga").incident
    ch = apply_update(inc, update("waspada"), POLICIES, 2, 1100.0)
    assert ch.incident.level == "waspada" and ch.events == [] and ch.incident.escalation == inc.escalation


def test_resolve_tells_everyone_paged_on_every_channel_and_is_final():
    inc = fire_due(opened().incident, 1000.0)
    ch = resolve(inc, "operator:op1", 2000.0, note="aman")
    assert ch.incident.status == "resolved" and ch.incident.note == "aman" and ch.resolved == "manual"
    assert [(b.status, b.key) for b in ch.incident.broadcasts] == [("resolved", "resolved")]
    assert ch.incident.paged == [("budi", "tg"), ("budi", "sms")]
    assert ch.events == [("resolved", 0)]
    with pytest.raises(Conflict):
        resolve(ch.incident, "operator:op1", 2001.0)
    with pytest.raises(Conflict):
        acknowledge(ch.incident, "operator:op1", 2001.0)
    assert apply_update(ch.incident, update("awas"), POLICIES, 2, 2002.0) is None


def test_auto_resolve_after_n_consecutive_normal_buckets():
    inc = opened().incident
    ch1 = apply_update(inc, update("normal", day=1), POLICIES, 2, 1100.0)
    assert ch1.incident.status == "triggered" and len(ch1.incident.quiet_buckets) == 1
    assert apply_update(ch1.incident, update("normal", day=1), POLICIES, 2, 1150.0) is None  # same bucket again
    ch2 = apply_update(ch1.incident, update("normal", day=2), POLICIES, 2, 1200.0)
    assert ch2.incident.status == "resolved" and ch2.resolved == "auto" and ch2.incident.resolved_by == "pantau"


def test_an_alert_between_normal_buckets_restarts_the_count():
    inc = opened().incident
    inc = apply_update(inc, update("normal", day=1), POLICIES, 2, 1100.0).incident
    inc = apply_update(inc, update("waspada", day=2, report_ids=["r5"]), POLICIES, 2, 1200.0).incident
    assert inc.quiet_buckets == []
    inc = apply_update(inc, update("normal", day=3), POLICIES, 2, 1300.0).incident
    assert inc.status == "triggered"
    # a normal update for a bucket older than the last alert does not count
    assert apply_update(inc, update("normal", day=1), POLICIES, 2, 1400.0) is None


def test_lifecycle_event_has_exactly_the_contract_fields():
    inc = opened().incident
    ev = lifecycle_event(inc, "triggered", 0, "http://x/ack/t")
    assert list(ev) == ["version", "incident_id", "status", "level", "region_code", "region_name", "category",
                        "step", "summary", "reasons", "report_ids", "ack_url", "opened_at", "updated_at"]
    assert ev["version"] == "1" and ev["opened_at"].endswith("Z")


def test_bad_score_updates_are_refused():
    good = update("waspada").model_dump()
    for bad in ({"level": "merah"}, {"category": "weather"}, {"region_code": "65.99"}, {"bucket_start": "yesterday"},
                {"bucket_start": "2024-11-27T00:00:00"}):
        with pytest.raises(ValueError):
            ScoreUpdate.model_validate({**good, **bad})


def test_silent_sources_counts_from_the_last_report_or_the_watchdog_start():
    sources = [("a", 600.0), ("b", 600.0), ("c", 60.0)]
    got = silent_sources(sources, {"a": 1000.0, "c": 1500.0}, started=900.0, now=1550.0)
    assert got == {"b": None}  # never heard from, and 650 s since the watchdog started
    got = silent_sources(sources, {"a": 1000.0, "c": 1500.0}, started=900.0, now=1601.0)
    assert got == {"a": 1000.0, "b": None, "c": 1500.0}
    assert silent_sources(sources[:2], {"a": 100.0}, started=1000.0, now=1500.0) == {}  # grace from start


def test_a_resolved_pair_does_not_reopen_for_the_same_bucket_unless_the_level_is_higher():
    inc = opened("siaga").incident
    closed = {"id": inc.id, "level": "siaga", "bucket": inc.last_alert_bucket}
    assert open_incident("x", update("siaga"), POLICIES, 2000.0, closed=closed) is None  # same bucket: replay
    assert open_incident("x", update("waspada"), POLICIES, 2000.0, closed=closed) is None
    assert open_incident("x", update("awas"), POLICIES, 2000.0, closed=closed) is not None  # worse: new incident
    assert open_incident("x", update("waspada", day=1), POLICIES, 2000.0, closed=closed) is not None  # new bucket


# --- the store, the scheduler and the watchdog on a real Redis, with a fake clock ------------------
T0 = DAY0.timestamp() + 3600
CHAIN = Policy.model_validate({
    "id": "kaltara", "match": {"region": "65"},
    "steps": [{"notify": ["oncall:kabkota"], "wait_minutes": 10}, {"notify": ["oncall:province"], "wait_minutes": 10},
              {"notify": ["operators"], "wait_minutes": 10}],
})
CONTACTS = [ContactConfig(id=c, name=c, webhook=f"http://127.0.0.1:9/{c}") for c in ("kab", "prov", "ops")]
CHANNELS = [channel_config({"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/", "secret": "incidents-test-webhook-secret-0123456789"})]


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeDeliverer:
    """Deliverer.submit's contract: idempotent per (incident, event key, contact, channel)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, str]] = []
        self.ids: dict[tuple[str, str, str, str], str] = {}
        self.links: list[tuple[str, str, str]] = []  # (contact, channel, ack url) per submit

    async def submit(self, incident_id, event_key, contact_id, channel_id, notice, fallback_channel_id=None) -> str:
        key = (incident_id, event_key, contact_id, channel_id)
        self.calls.append((*key, notice.status))
        self.links.append((contact_id, channel_id, notice.ack_url))
        return self.ids.setdefault(key, f"d{len(self.ids)}")

    def pages(self) -> list[tuple[str, str, str]]:
        """(event key, contact, status) of every distinct delivery, in first-submit order."""
        seen, out = set(), []
        for inc, ek, c, ch, st in self.calls:
            if (inc, ek, c, ch) not in seen:
                seen.add((inc, ek, c, ch))
                out.append((ek, c, st))
        return out


def with_scheduler(test, redis_url: str):
    async def main():
        r = aioredis.from_url(redis_url)
        clock = Clock(T0)
        store = IncidentStore(r)
        rotations = [Rotation(region="65.71", members=["kab"], start=date(2024, 11, 4)),
                     Rotation(region="65", members=["prov"], start=date(2024, 11, 4))]
        paging = Paging([CHAIN], rotations, reach(CONTACTS, CHANNELS), ["ops"], ["hook"],
                        extra_policies={"_watchdog": builtin_policy(60)})
        d = FakeDeliverer()
        sched = Scheduler(store, d, paging, LinkMaker(b"s" * 32, "http://p", 3600), lease_s=30, clock=clock)
        handler = ScoreHandler(store, [CHAIN], 2, clock=clock)
        try:
            return await test(store, sched, handler, d, clock)
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_each_due_step_fires_once_and_an_ack_stops_the_rest(fresh_redis):
    async def t(store, sched, handler, d, clock):
        inc = (await handler.handle(update("siaga"))).incident
        await sched.tick()
        await sched.tick()  # nothing more is due
        assert d.pages() == [("step:0:0.0:e0", "kab", "triggered")]
        clock.t += 599
        await sched.tick()
        assert len(d.pages()) == 1
        clock.t += 1
        await sched.tick()
        assert d.pages()[-1] == ("step:1:0.0:e0", "prov", "escalated")
        await store.mutate(inc.id, lambda i: acknowledge(i, "operator:op1", clock()))
        await sched.tick()
        assert d.pages()[-2:] == [("ack:1", "kab", "acknowledged"), ("ack:1", "prov", "acknowledged")]
        clock.t += 86400
        await sched.tick()
        assert len(d.pages()) == 4 and await store.r.zscore(K_TIMERS, inc.id) is None
        saved = await store.get(inc.id)
        assert saved.status == "acknowledged" and saved.paged == [("kab", "hook"), ("prov", "hook")]

    with_scheduler(t, fresh_redis)


def test_a_crash_between_submit_and_save_refires_with_the_same_keys(fresh_redis):
    async def t(store, sched, handler, d, clock):
        inc = (await handler.handle(update("siaga"))).incident
        real_save = store.save
        crashed = []

        async def crash_once(change, version):
            if change.steps_fired and not crashed:
                crashed.append(1)
                raise ConnectionError("process died here")
            return await real_save(change, version)

        store.save = crash_once
        await sched.tick()  # submitted, then "died" before saving: the lease holds the timer
        assert crashed and len(d.calls) == 1
        await sched.tick()
        assert len(d.calls) == 1, "nobody re-fires while the lease holds"
        clock.t += 30  # the lease runs out
        await sched.tick()
        assert len(d.calls) == 2 and len(d.pages()) == 1, "the re-fire submitted the same delivery"
        saved = await store.get(inc.id)
        assert saved.escalation.step == 1 and saved.paged == [("kab", "hook")]
        assert [e["kind"] for e in await store.timeline(inc.id)].count("step") == 1

    with_scheduler(t, fresh_redis)


def test_concurrent_writers_never_lose_an_update(fresh_redis):
    async def t(store, sched, handler, d, clock):
        inc = (await handler.handle(update("siaga"))).incident
        stale = await store.get(inc.id)
        await store.mutate(inc.id, lambda i: acknowledge(i, "operator:op1", clock()))
        with pytest.raises(SaveConflict):
            await store.save(resolve(stale, "operator:op2", clock()), stale.version)
        # and one open incident per pair, whoever opens it
        results = await asyncio.gather(*(handler.handle(update("waspada", category="other", report_ids=[f"r{i}"]))
                                         for i in range(5)))
        opened_ = [c for c in results if c is not None and c.opened]
        assert len(opened_) == 1
        assert len(await store.list(status="open", category="other")) == 1

    with_scheduler(t, fresh_redis)


def test_a_batch_changes_incidents_as_one_update_at_a_time_would(fresh_redis):
    async def t(store, sched, handler, d, clock):
        batch = [update("siaga", report_ids=["a1"]), update("waspada", category="other", report_ids=["b1"]),
                 update("awas", report_ids=["a2"]), update("awas", report_ids=["a2"]),  # a replay changes nothing
                 update("waspada", category="other", report_ids=["b2"])]
        changes = await handler.handle_batch(batch)
        assert [c is not None and c.opened for c in changes] == [True, True, False, False, False]
        assert changes[3] is None
        (a,) = await store.list(status="open", category="election_dispute")
        (b,) = await store.list(status="open", category="other")
        assert (a.level, a.status, a.report_ids) == ("awas", "escalated", ["a1", "a2"])
        assert b.report_ids == ["b1", "b2"]
        assert [e["kind"] for e in await store.timeline(a.id)] == ["opened", "level"]
        events = [orjson.loads(e) for e in await store.r.lrange(K_OUTBOX, 0, -1)]
        assert [(e["incident_id"], e["status"], e["level"]) for e in events] == [
            (a.id, "triggered", "siaga"), (b.id, "triggered", "waspada"), (a.id, "escalated", "awas")]
        # Batches racing with single updates (another process) still lose nothing and open one
        # incident per pair: a save that meets a newer version is redone alone.
        ids = [f"r{i}" for i in range(12)]
        await asyncio.gather(
            handler.handle_batch([update("waspada", category="land_resource_conflict", report_ids=[r]) for r in ids[:6]]),
            *(handler.handle(update("waspada", category="land_resource_conflict", report_ids=[r])) for r in ids[6:]))
        (c,) = await store.list(status="open", category="land_resource_conflict")
        assert sorted(c.report_ids) == sorted(ids)

    with_scheduler(t, fresh_redis)

def test_open_counts_per_level_read_a_chunk_at_a_time_match_the_open_incidents(fresh_redis):
    # /metrics counts open incidents with open_counts, not by loading them all (notify's RSS grew
    # with the number of open incidents during a soak); it must count what open_incidents holds.
    async def t(store, sched, handler, d, clock):
        levels = ["waspada", "siaga", "awas", "siaga", "waspada"]
        for n, (lv, cat) in enumerate(zip(levels, ["election_dispute", "other", "land_resource_conflict",
                                                   "mass_mobilization", "sara_incitement"])):
            await handler.handle(update(lv, category=cat, report_ids=[f"r{n}"]))
        (acked,) = await store.list(status="open", category="other")
        await store.mutate(acked.id, lambda i: acknowledge(i, "operator:op1", clock()))
        (gone,) = await store.list(status="open", category="sara_incitement")
        await store.mutate(gone.id, lambda i: resolve(i, "operator:op1", clock()))
        expected = {"normal": 0, "waspada": 0, "siaga": 0, "awas": 0}
        for inc in await store.open_incidents():
            if inc.status != "resolved":
                expected[inc.level] += 1
        assert expected == {"normal": 0, "waspada": 1, "siaga": 2, "awas": 1}
        assert await store.open_counts(chunk=2) == expected == await store.open_counts()

    with_scheduler(t, fresh_redis)



def test_a_silence_holds_a_due_step_until_it_ends_or_is_deleted(fresh_redis):
    async def t(store, sched, handler, d, clock):
        s = await silences.add(store.r, {"region": "65.71"}, clock() + 3600, "pemeliharaan", "operator:op1", clock())
        inc = (await handler.handle(update("siaga"))).incident
        await sched.tick()
        assert d.pages() == []
        assert await store.r.zscore(K_TIMERS, inc.id) == s["ends_at"]
        assert (await store.timeline(inc.id))[-1]["kind"] == "silenced"
        clock.t += 60
        await silences.delete(store.r, s["id"], "operator:op1", clock())
        assert await wake_matching(store, s["matchers"], clock()) == 1
        await sched.tick()
        assert d.pages() == [("step:0:0.0:e0", "kab", "triggered")]

    with_scheduler(t, fresh_redis)


def test_watchdog_pages_operators_for_a_silent_source_and_resolves_when_it_speaks(fresh_redis):
    async def t(store, sched, handler, d, clock):
        wd = Watchdog(store.r, store, "unused:1", "g", [("fkdm-kaltara", 600.0, "65")], builtin_policy(60), 30,
                      clock=clock)
        await store.r.set(K_STARTED, repr(clock()))
        await wd.check()
        assert await store.list(status="open") == []  # within its grace period
        clock.t += 601
        await wd.check()
        await wd.check()  # still silent: still one incident
        (inc,) = await store.list(status="open")
        assert (inc.kind, inc.source, inc.region_code) == ("source_silent", "fkdm-kaltara", "65")
        await sched.tick()
        assert d.pages() == [("step:0:0.0:e0", "ops", "triggered")]
        await store.r.hset(K_LAST_SEEN, "fkdm-kaltara", repr(clock() + 5))
        clock.t += 10
        await wd.check()
        saved = await store.get(inc.id)
        assert saved.status == "resolved" and saved.resolution == "auto"

    with_scheduler(t, fresh_redis)


def _claim(url: str):
    return LinkMaker(b"s" * 32, "http://p", 3600).verify(url.rsplit("/", 1)[1], T0)


def test_links_bind_the_epoch_and_name_a_shared_room_not_the_person(fresh_redis):
    async def t(store, sched, handler, d, clock):
        # kab has no personal address: it is paged in the webhook channel's shared room.
        roomed = [ContactConfig(id="kab", name="kab"), *CONTACTS[1:]]
        in_room = CHAIN.model_copy(update={"steps": [CHAIN.steps[0].model_copy(update={"channels": ["hook"]}),
                                                     *CHAIN.steps[1:]]})
        sched.paging = Paging([in_room], sched.paging.rotations, reach(roomed, CHANNELS), ["ops"], ["hook"])
        inc = (await handler.handle(update("siaga"))).incident
        await sched.tick()
        (contact, channel, url) = d.links[-1]
        claim = _claim(url)
        assert (contact, channel) == ("kab", "hook")
        assert (claim.contact, claim.epoch) == ("channel:hook", 0)
        (step,) = [e for e in await store.timeline(inc.id) if e["kind"] == "step"]
        assert step["deliveries"][0]["link_for"] == "channel:hook"
        clock.t += 600
        await sched.tick()  # step 1 to prov, who has a personal webhook: a personal link
        (contact, _, url) = d.links[-1]
        assert contact == "prov" and _claim(url).contact == "prov"
        await handler.handle(update("awas"))  # a rise: a new epoch, and pages carry it
        await sched.tick()
        assert _claim(d.links[-1][2]).epoch == 1 == (await store.get(inc.id)).rises

    with_scheduler(t, fresh_redis)


def test_a_telegram_group_chat_is_a_shared_room_a_private_chat_is_not():
    from shared.config import parse
    from shared.notify_config import NotifyConfig
    from services.notify.service import paging_of

    nc = NotifyConfig.of(parse("""
contacts:
  - {id: budi, name: Budi, telegram_chat_id: 123456789}
  - {id: posko, name: Posko Tarakan, telegram_chat_id: -1001234567890, telegram_user_ids: [555001]}
  - {id: kanal, name: Kanal Siaga, telegram_chat_id: "@kanal_siaga"}
channels:
  - {id: tg, type: telegram, bot_token: "123456:ABCdefGhIJKlmnOPQ"}
  - {id: room, type: slack, webhook_url: "https://hooks.slack.com/services/T0/B0/x"}
""", env={}))
    paging = paging_of(nc)
    assert not paging.is_shared("budi", "tg")
    assert paging.is_shared("posko", "tg") and paging.is_shared("kanal", "tg")
    assert paging.is_shared("budi", "room")  # Slack is a room whoever it pages
