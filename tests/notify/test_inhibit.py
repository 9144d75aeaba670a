"""Inhibition: a province incident holds back the pages of its kabupaten/kota incidents of the
same category. First the decision as a pure function (who holds, the awas exception, what never
holds) and its config; then on a real Redis, a real delivery worker and a webhook receiver: the
kabupaten page is held while the province incident is open and the dispute spans two kabupaten,
an awas kabupaten pages anyway, and resolving the province incident through the API lets the held
page go out."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from shared.channels_config import ContactConfig, DeliverySettings
from shared.config import ConfigError, Operator, parse
from shared.notify_config import InhibitSettings, NotifySettings, Policy, Rotation
from services.notify.api import ApiContext, create_app
from services.notify.channels import build_channels
from services.notify.consumer import ScoreHandler
from services.notify.delivery import Deliverer
from services.notify.store import K_TIMERS
from services.notify.transitions import acknowledge, inhibited, open_incident, released, resolve
from shared.scores import ScoreUpdate
from services.notify.inhibit import inhibitor, province_pair, release_reason
from services.notify.links import LinkMaker
from services.notify.policy import reach
from services.notify.scheduler import Paging, Scheduler
from tests.notify.conftest import WEBHOOK_SECRET
from tests.notify.peers import HttpReceiver, Request

POLICY = Policy.model_validate({
    "id": "kaltara", "match": {"region": "65"},
    "steps": [{"notify": ["oncall:kabkota"], "wait_minutes": 10},
              {"notify": ["oncall:province"], "wait_minutes": 10}],
})
DAY0 = datetime(2024, 11, 27, tzinfo=timezone(timedelta(hours=8)))
T0 = DAY0.timestamp() + 9 * 3600


def update(region: str, level: str, category: str = "election_dispute") -> ScoreUpdate:
    return ScoreUpdate.model_validate({
        "region_code": region, "category": category, "bucket_start": DAY0.isoformat(),
        "bucket_end": (DAY0 + timedelta(days=1)).isoformat(), "level": level,
        "reasons": ["7 reports today vs expected 1.7"], "report_ids": [f"r-{region}"],
    })


def incident(region: str, level: str, category: str = "election_dispute", policies=(POLICY,), iid: str | None = None):
    ch = open_incident(iid or f"inc-{region}-{category}", update(region, level, category), list(policies), T0)
    assert ch is not None
    return ch.incident


# --- the decision (pure) -------------------------------------------------------------------------
NUNUKAN = incident("65.03", "siaga")  # another kabupaten/kota of the province, same category: the spread


def test_an_open_province_incident_holds_its_kabupaten_at_the_same_or_a_lower_level():
    prov = incident("65", "siaga")
    assert inhibitor(incident("65.71", "siaga"), prov, [NUNUKAN]) is prov
    assert inhibitor(incident("65.01", "waspada"), prov, [NUNUKAN]) is prov
    assert inhibitor(incident("65.71", "siaga"), incident("65", "awas"), [NUNUKAN]) is not None


def test_awas_above_the_province_level_is_never_held():
    # Awas in Tarakan is news a province page at siaga does not carry.
    assert inhibitor(incident("65.71", "awas"), incident("65", "siaga"), [NUNUKAN]) is None
    assert inhibitor(incident("65.71", "siaga"), incident("65", "waspada"), [NUNUKAN]) is None
    assert "above the province" in release_reason(incident("65.71", "awas"), incident("65", "siaga"), [NUNUKAN])


def test_a_province_incident_that_only_echoes_one_kabupaten_holds_nothing():
    # One severity-5 clash in Tarakan raises 65.71 and 65 together: Tarakan's coordinator is paged.
    kab, prov = incident("65.71", "awas"), incident("65", "awas")
    assert inhibitor(kab, prov, [prov, kab]) is None
    assert inhibitor(kab, prov, [prov, kab], min_kabkota=1) is prov
    assert inhibitor(kab, prov, [prov, kab, incident("65.03", "waspada")]) is prov
    # the spread counts open kabupaten/kota incidents of this province and category only
    others = [incident("64.71", "siaga"), incident("65.03", "siaga", category="other"),
              resolve(incident("65.02", "siaga"), "operator:op1", T0).incident,
              incident("65.03", "siaga").model_copy(update={"kind": "source_silent"})]
    assert inhibitor(kab, prov, others) is None
    assert release_reason(kab, prov, others) == "no other kabupaten/kota incident of this category is open in the province"


def test_an_acknowledged_province_incident_holds_nothing_unless_configured_nor_a_resolved_one():
    prov = incident("65", "siaga")
    acked = acknowledge(prov, "operator:op1", T0 + 60).incident
    # One ack at the province must not silence every kabupaten/kota page of the category.
    assert inhibitor(incident("65.71", "siaga"), acked, [NUNUKAN]) is None
    assert "acknowledged" in release_reason(incident("65.71", "siaga"), acked, [NUNUKAN])
    assert inhibitor(incident("65.71", "siaga"), acked, [NUNUKAN], while_acknowledged=True) is acked
    assert inhibitor(incident("65.71", "siaga"), prov, [NUNUKAN]) is prov
    done = resolve(prov, "operator:op1", T0 + 60).incident
    assert inhibitor(incident("65.71", "siaga"), done, [NUNUKAN]) is None
    assert release_reason(incident("65.71", "siaga"), done, [NUNUKAN]) == "the province incident is resolved"


def test_what_never_holds():
    kab = incident("65.71", "siaga")
    assert inhibitor(kab, None, [NUNUKAN]) is None
    assert inhibitor(kab, incident("65", "siaga"), [NUNUKAN], enabled=False) is None
    assert inhibitor(kab, incident("65", "siaga", category="communal_clash"), [NUNUKAN]) is None  # another category
    assert inhibitor(kab, incident("64", "siaga"), [NUNUKAN]) is None  # another province
    # nothing sits above a province
    assert inhibitor(incident("65", "siaga", iid="p2"), incident("65", "siaga"), [NUNUKAN], min_kabkota=1) is None
    # a province incident nobody is paged about would leave both unheard
    assert inhibitor(kab, incident("65", "siaga", policies=()), [NUNUKAN]) is None
    silent = incident("65", "siaga").model_copy(update={"kind": "source_silent"})
    assert inhibitor(kab, silent, [NUNUKAN]) is None
    assert province_pair("65.71", "other") == ("65", "other") and province_pair("65", "other") is None


def test_held_then_released_resumes_at_the_same_step_with_waits_from_now():
    kab, prov = incident("65.71", "siaga"), incident("65", "siaga")
    ch = inhibited(kab, prov, T0 + 5, recheck_at=T0 + 65)
    assert ch.incident.inhibited_by == prov.id and ch.timer == T0 + 65
    (entry,) = ch.timeline
    assert (entry["kind"], entry["by"], entry["province_level"], entry["step"]) == ("inhibited", prov.id, "siaga", 0)
    later = T0 + 7200
    back = released(ch.incident, later, "the province incident is resolved")
    assert back.incident.inhibited_by is None
    assert back.incident.escalation.step == 0 and back.incident.escalation.due == later
    assert back.incident.escalation.event_key == kab.escalation.event_key  # the same firing, not a new one
    assert back.timeline[0]["kind"] == "resumed" and back.timeline[0]["by"] == prov.id
    assert acknowledge(ch.incident, "operator:op1", T0 + 9).incident.inhibited_by is None


def test_config_defaults_on_and_bad_values_name_the_key():
    assert NotifySettings().inhibit == InhibitSettings(province_over_kabupaten=True, min_kabkota=2, recheck_s=60.0,
                                                       while_acknowledged=False)
    cfg = parse("notify:\n  inhibit:\n    province_over_kabupaten: false\n    recheck_s: 5\n")
    assert cfg.notify.inhibit.province_over_kabupaten is False and cfg.notify.inhibit.recheck_s == 5
    for body, words in (("province_over_kabupaten: maybe", "notify.inhibit.province_over_kabupaten"),
                        ("recheck_s: 0", "notify.inhibit.recheck_s"),
                        ("min_kabkota: 0", "notify.inhibit.min_kabkota"),
                        ("province_over_kabupatn: true", "notify.inhibit.province_over_kabupatn: unknown key")):
        with pytest.raises(ConfigError) as e:
            parse(f"notify:\n  inhibit:\n    {body}\n")
        assert words in str(e.value)


# --- on Redis, the delivery worker and a webhook receiver ------------------------------------------
class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


TOKEN = "op-token-inhibit-test"


def _pages(reqs: list[Request], path: str) -> list[tuple[str, str]]:
    return [(r.json()["incident_id"], r.json()["status"]) for r in reqs if r.path == path and r.status == 200]


@pytest.mark.parametrize("action,reason", [
    ("resolve", "the province incident is resolved"),
    ("ack", "the province incident is acknowledged (notify.inhibit.while_acknowledged is off)"),
])
def test_province_incident_holds_the_kabupaten_page_until_it_is_acknowledged_or_resolved(
        fresh_redis, receiver: HttpReceiver, action: str, reason: str):
    before = REGISTRY.get_sample_value("pantau_notify_inhibited_total") or 0.0

    async def scenario() -> None:
        r = aioredis.from_url(fresh_redis)
        clock = Clock(T0)
        contacts = [ContactConfig(id="kab", name="Koordinator Tarakan", webhook=f"{receiver.url}/kab"),
                    ContactConfig(id="prov", name="Koordinator Kaltara", webhook=f"{receiver.url}/prov")]
        channels = build_channels([{"id": "hook", "type": "webhook", "url": f"{receiver.url}/default",
                                    "secret": WEBHOOK_SECRET, "timeout_s": 2, "backoff_initial_s": 0.01}])
        rotations = [Rotation(region="65.71", members=["kab"], start=date(2024, 11, 4)),
                     Rotation(region="65", members=["prov"], start=date(2024, 11, 4))]
        paging = Paging([POLICY], rotations, reach(contacts, list(channels.values())), [], ["hook"],
                        inhibit=InhibitSettings(recheck_s=30))
        links = LinkMaker(b"s" * 32, "http://pantau.test", 3600)
        deliverer = Deliverer(contacts, r, None, channels,
                              settings=DeliverySettings(poll_interval_s=0.05, lease_margin_s=0.5))
        from services.notify.store import IncidentStore

        store = IncidentStore(r, ack_url=lambda i: links.url(i.id, clock(), epoch=i.rises))
        sched = Scheduler(store, deliverer, paging, links, clock=clock)
        handler = ScoreHandler(store, [POLICY], 2, clock=clock)
        app = create_app(ApiContext(store=store, links=links, operators=[Operator(id="op1", name="Piket", token=TOKEN)],
                                    clock=clock))
        stop = asyncio.Event()
        worker = asyncio.create_task(deliverer.run(stop))
        try:
            prov = (await handler.handle(update("65", "siaga"))).incident
            await sched.tick()
            await asyncio.to_thread(receiver.wait_for, lambda rs: _pages(rs, "/prov") == [(prov.id, "triggered")])

            kab = (await handler.handle(update("65.71.02", "siaga"))).incident
            # Bulungan at awas (no rotation: the province's on-call takes it) makes the dispute wider
            # than Tarakan, so the province incident holds Tarakan back; Bulungan, above the
            # province's level, pages at once. Held means nothing was handed to delivery.
            awas = (await handler.handle(update("65.01", "awas"))).incident
            await sched.tick()
            await asyncio.to_thread(receiver.wait_for, lambda rs: (awas.id, "triggered") in _pages(rs, "/prov"))
            timeline = await store.timeline(kab.id)
            assert [e["kind"] for e in timeline] == ["opened", "inhibited"]
            assert timeline[-1]["by"] == prov.id and timeline[-1]["province_level"] == "siaga"
            assert "inhibited" not in [e["kind"] for e in await store.timeline(awas.id)]
            assert await r.zscore(K_TIMERS, kab.id) == T0 + 30  # looked at again at the recheck
            listed = await store.list(status="open")
            assert kab.id in {i.id for i in listed} and (await store.get(kab.id)).inhibited_by == prov.id

            clock.t += 30  # the recheck: still held, recorded once
            await sched.tick()
            assert [e["kind"] for e in await store.timeline(kab.id)] == ["opened", "inhibited"]

            clock.t += 60
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pantau.test") as c:
                resp = await c.post(f"/v1/incidents/{prov.id}/{action}", headers={"Authorization": f"Bearer {TOKEN}"})
                assert resp.status_code == 200, resp.text
            assert await r.zscore(K_TIMERS, kab.id) == clock.t  # woken now, not at the next recheck
            await sched.tick()
            await asyncio.to_thread(receiver.wait_for, lambda rs: _pages(rs, "/kab") == [(kab.id, "triggered")])
            saved = await store.get(kab.id)
            assert saved.inhibited_by is None and saved.paged == [("kab", "hook")]
            # Resumed at step 0, and step 1 waits its full 10 minutes from the resume.
            assert saved.escalation.step == 1 and saved.escalation.due == clock.t + 600
            kinds = [e["kind"] for e in await store.timeline(kab.id)]
            assert kinds[:4] == ["opened", "inhibited", "resumed", "step"]
            assert (await store.timeline(kab.id))[2]["reason"] == reason
        finally:
            stop.set()
            await asyncio.wait_for(worker, 10)
            await channels.aclose()
            await r.aclose()

    asyncio.run(scenario())
    assert (REGISTRY.get_sample_value("pantau_notify_inhibited_total") or 0.0) == before + 1
