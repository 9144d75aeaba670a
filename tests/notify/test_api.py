"""The notify HTTP API against a real Redis: operator auth, incident filters, ack and
resolve, silences (audited), the signed one-tap ack page, health and metrics, and JSON
errors without tracebacks."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import httpx
import orjson
import redis.asyncio as aioredis

from shared.config import Operator, sha256_hex
from shared.notify_config import Policy, Rotation
from services.notify.api import ApiContext, create_app
from services.notify.silences import K_AUDIT
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge, apply_update, open_incident, resolve
from services.notify.incident import incident_key
from shared.scores import ScoreUpdate
from services.notify.metrics_app import create_metrics_app
from services.notify.links import LinkMaker, make_token
from services.notify.rotations import OverrideStore

TOKEN = "op-token-kesbangpol-kaltara"
HASHED_TOKEN = "op-token-second-operator"
SECRET = b"link-secret-for-tests-0123456789"
NOW = 1_732_690_000.0  # 27 Nov 2024, Pilkada day
POLICY = Policy.model_validate({"id": "all", "steps": [{"notify": ["contact:budi"], "wait_minutes": 10}]})
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def update(region: str, category: str, level: str = "siaga") -> ScoreUpdate:
    return ScoreUpdate.model_validate({
        "region_code": region, "category": category, "bucket_start": "2024-11-27T00:00:00+08:00",
        "bucket_end": "2024-11-28T00:00:00+08:00", "level": level, "reasons": ["severity 4 report"],
        "report_ids": ["fkdm-kaltara:ev-1"],
    })


async def seed(store: IncidentStore, region: str, category: str, then: Callable | None = None) -> str:
    u = update(region, category)
    inc, _ = await store.upsert(incident_key(u.incident_region, category),
                                lambda _closed: open_incident(f"inc-{region}-{category}", u, [POLICY], NOW),
                                lambda inc: None)
    if then is not None:
        inc, _ = await store.mutate(inc.id, then)
    return inc.id


def with_api(test: Callable[[httpx.AsyncClient, IncidentStore, Clock, list], Awaitable[Any]], redis_url: str) -> Any:
    async def main() -> Any:
        r = aioredis.from_url(redis_url)
        clock = Clock(NOW)
        woken: list[int] = []
        links = LinkMaker(SECRET, "http://pantau.test", ttl_s=3600)
        store = IncidentStore(r, ack_url=lambda i: links.url(i.id, clock(), epoch=i.rises))
        ops = [Operator(id="op1", name="Piket Kesbangpol", token=TOKEN),
               Operator(id="op2", name="Piket dua", token_sha256=sha256_hex(HASHED_TOKEN))]
        rotations = [Rotation(region="65.71", members=["budi", "sari"], handover="daily", start=date(2024, 11, 1))]
        app = create_app(ApiContext(store=store, links=links, operators=ops, wake=lambda: woken.append(1),
                                    clock=clock, contact_ids=["budi", "sari", "andi"], rotations=rotations,
                                    overrides=OverrideStore(r)))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                         base_url="http://pantau.test") as c:
                return await test(c, store, clock, woken)
        finally:
            await r.aclose()

    return asyncio.run(main())


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert "Traceback" not in resp.text and body["status"] == status and body["detail"] and body["title"]
    return body


# --- auth --------------------------------------------------------------------------------------
def test_operator_auth(fresh_redis):
    async def t(c, store, clock, woken):
        r = await c.get("/v1/incidents")
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        assert_problem(await c.get("/v1/incidents", headers={"Authorization": "Bearer nope"}), 401)
        assert_problem(await c.get("/v1/incidents", headers={"Authorization": f"Basic {TOKEN}"}), 401)
        assert (await c.get("/v1/incidents", headers=AUTH)).status_code == 200
        assert (await c.get("/v1/incidents", headers={"Authorization": f"Bearer {HASHED_TOKEN}"})).status_code == 200
        for path in ("/v1/incidents/x", "/v1/silences"):
            assert_problem(await c.get(path), 401)
        assert_problem(await c.post("/v1/incidents/x/ack"), 401)
        assert_problem(await c.delete("/v1/silences/x"), 401)

    with_api(t, fresh_redis)


# --- incidents ---------------------------------------------------------------------------------
def test_list_filters_by_status_region_prefix_and_category(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        b = await seed(store, "65.01", "mass_mobilization", lambda i: acknowledge(i, "operator:op1", NOW + 5))
        d = await seed(store, "32.73", "election_dispute", lambda i: resolve(i, "operator:op1", NOW + 5))
        p = await seed(store, "65", "communal_clash")

        async def ids(**params) -> set[str]:
            r = await c.get("/v1/incidents", params=params, headers=AUTH)
            assert r.status_code == 200, r.text
            return {i["id"] for i in r.json()["incidents"]}

        assert await ids() == {a, b, d, p}
        assert await ids(status="open") == {a, p}
        assert await ids(status="acknowledged") == {b}
        assert await ids(status="resolved") == {d}
        assert await ids(region="65") == {a, b, p}
        assert await ids(region="65.71") == {a}
        assert await ids(category="election_dispute") == {a, d}
        assert await ids(status="open", region="65", category="communal_clash") == {p}
        for bad in ({"status": "closed"}, {"category": "weather"}, {"region": "6-5"}, {"limit": "0"}):
            body = assert_problem(await c.get("/v1/incidents", params=bad, headers=AUTH), 422)
            assert body["errors"]

    with_api(t, fresh_redis)


def test_get_incident_with_its_timeline_and_404(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        r = await c.get(f"/v1/incidents/{a}", headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["id"] == a and body["status"] == "triggered" and body["level"] == "siaga"
        assert body["region_name"] and body["opened_at"].endswith("Z")
        assert [e["kind"] for e in body["timeline"]] == ["opened"]
        assert_problem(await c.get("/v1/incidents/nope", headers=AUTH), 404)

    with_api(t, fresh_redis)


def test_ack_then_resolve_and_conflicts(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        clock.t = NOW + 90
        r = await c.post(f"/v1/incidents/{a}/ack", headers=AUTH, json={"note": "meluncur ke lokasi"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "operator:op1"
        assert woken
        again = await c.post(f"/v1/incidents/{a}/ack", headers=AUTH)
        assert again.status_code == 200 and again.json()["acknowledged_at"] == r.json()["acknowledged_at"]
        assert_problem(await c.post(f"/v1/incidents/{a}/resolve", headers=AUTH, json={"nota": "x"}), 422)
        assert_problem(await c.post(f"/v1/incidents/{a}/resolve", headers={**AUTH, "Content-Type": "application/json"},
                                    content=b"{not json"), 422)
        assert_problem(await c.post(f"/v1/incidents/{a}/resolve", headers=AUTH, json=["note"]), 422)
        r = await c.post(f"/v1/incidents/{a}/resolve", headers=AUTH, json={"note": "situasi kondusif"})
        assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["note"] == "situasi kondusif"
        assert r.json()["resolution"] == "manual"
        assert_problem(await c.post(f"/v1/incidents/{a}/resolve", headers=AUTH), 409)
        assert_problem(await c.post(f"/v1/incidents/{a}/ack", headers=AUTH), 409)
        assert_problem(await c.post("/v1/incidents/nope/ack", headers=AUTH), 404)
        timeline = (await c.get(f"/v1/incidents/{a}", headers=AUTH)).json()["timeline"]
        assert [e["kind"] for e in timeline] == ["opened", "acknowledged", "resolved"]
        assert timeline[1]["by"] == "operator:op1" and timeline[1]["note"] == "meluncur ke lokasi"

    with_api(t, fresh_redis)


# --- silences ----------------------------------------------------------------------------------
def test_silences_are_validated_listed_deleted_and_audited(fresh_redis):
    async def t(c, store, clock, woken):
        ends = datetime.fromtimestamp(NOW + 3600, timezone(timedelta(hours=8))).isoformat()
        body = {"matchers": {"region": "65.71", "category": "hoax_disinformation"}, "ends_at": ends,
                "reason": "klarifikasi hoaks sudah dirilis"}
        r = await c.post("/v1/silences", headers=AUTH, json=body)
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["created_by"] == "operator:op1" and s["active"] and s["matchers"] == body["matchers"]
        sid = s["id"]

        bad = [
            {**body, "matchers": {}},
            {**body, "ends_at": datetime.fromtimestamp(NOW - 1, timezone.utc).isoformat()},
            {**body, "ends_at": "tomorrow"},
            {**body, "matchers": {"region": "65.99"}},
            {**body, "matchers": {"category": "weather"}},
            {**body, "reason": ""},
            {**body, "extra": 1},
            {k: v for k, v in body.items() if k != "reason"},
        ]
        for b in bad:
            assert assert_problem(await c.post("/v1/silences", headers=AUTH, json=b), 422)["errors"], b

        listed = (await c.get("/v1/silences", headers=AUTH)).json()["silences"]
        assert [x["id"] for x in listed] == [sid]
        r = await c.delete(f"/v1/silences/{sid}", headers={"Authorization": f"Bearer {HASHED_TOKEN}"})
        assert r.status_code == 200 and r.json()["deleted_by"] == "operator:op2" and not r.json()["active"]
        assert_problem(await c.delete(f"/v1/silences/{sid}", headers=AUTH), 404)
        assert (await c.get("/v1/silences", headers=AUTH)).json()["silences"] == []
        everything = (await c.get("/v1/silences", params={"all": "true"}, headers=AUTH)).json()["silences"]
        assert [x["id"] for x in everything] == [sid]
        audit = [orjson.loads(x) for x in await store.r.lrange(K_AUDIT, 0, -1)]
        assert [(a["action"], a["by"]) for a in audit] == [("silence.create", "operator:op1"),
                                                          ("silence.delete", "operator:op2")]

    with_api(t, fresh_redis)


# --- the signed ack page -------------------------------------------------------------------------
def test_ack_link_page_and_button(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        token = make_token(SECRET, a, NOW + 600, contact="budi")
        page = await c.get(f"/ack/{token}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text and "SIAGA" in page.text
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        assert (await store.get(a)).status == "triggered"  # opening the page acknowledges nothing
        r = await c.post(f"/ack/{token}", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        inc = await store.get(a)
        assert inc.status == "acknowledged" and inc.acknowledged_by == "contact:budi"
        timeline = await store.timeline(a)
        assert timeline[-1]["via"] == "link"
        page = await c.get(f"/ack/{token}", headers={"Accept": "text/html"})
        assert "<form" not in page.text and "contact:budi" in page.text
        r = await c.post(f"/ack/{token}")  # a script's POST gets JSON
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"

    with_api(t, fresh_redis)


def test_ack_link_expiry_wrong_incident_and_forgery(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        b = await seed(store, "65.01", "election_dispute")
        token_a = make_token(SECRET, a, NOW + 600, contact="budi")
        clock.t = NOW + 600
        expired = await c.post(f"/ack/{token_a}")
        assert assert_problem(expired, 403)["type"] == "urn:pantau:problem:expired"
        page = await c.get(f"/ack/{token_a}", headers={"Accept": "text/html"})
        assert page.status_code == 403 and "expired" in page.text and "Traceback" not in page.text
        clock.t = NOW
        # a token for A, its payload rewritten to name B: the signature no longer holds
        payload, mac = token_a.split(".")
        import base64

        raw = base64.urlsafe_b64decode(payload + "==").replace(a.encode(), b.encode())
        forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + mac
        assert assert_problem(await c.post(f"/ack/{forged}"), 403)["type"] == "urn:pantau:problem:bad_signature"
        other_key = make_token(b"another-secret-entirely-000000000", b, NOW + 600)
        assert assert_problem(await c.post(f"/ack/{other_key}"), 403)["type"] == "urn:pantau:problem:bad_signature"
        assert assert_problem(await c.post("/ack/garbage"), 403)["type"] == "urn:pantau:problem:malformed"
        # A's genuine token acknowledges A and only A
        assert (await c.post(f"/ack/{token_a}")).status_code == 200
        assert (await store.get(a)).status == "acknowledged" and (await store.get(b)).status == "triggered"
        gone = make_token(SECRET, "no-such-incident", NOW + 600)
        assert_problem(await c.post(f"/ack/{gone}"), 404)

    with_api(t, fresh_redis)


def test_ack_link_on_a_resolved_incident_is_a_conflict(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute", lambda i: resolve(i, "operator:op1", NOW))
        token = make_token(SECRET, a, NOW + 600)
        page = await c.get(f"/ack/{token}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "<form" not in page.text
        assert_problem(await c.post(f"/ack/{token}"), 409)

    with_api(t, fresh_redis)


def test_a_link_from_before_a_level_rise_acknowledges_nothing(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        old = make_token(SECRET, a, NOW + 600, contact="budi", epoch=0)
        await store.mutate(a, lambda i: apply_update(i, update("65.71", "election_dispute", "awas"), [POLICY], 2, NOW))
        page = await c.get(f"/ack/{old}", headers={"Accept": "text/html"})
        assert page.status_code == 410 and "<form" not in page.text
        assert "rose to AWAS" in page.text and "AWAS" in page.text and "escalated" in page.text  # why, and the state
        assert assert_problem(await c.post(f"/ack/{old}"), 410)["type"] == "urn:pantau:problem:stale_link"
        assert (await store.get(a)).status == "escalated"
        new = make_token(SECRET, a, NOW + 600, contact="budi", epoch=1)
        assert (await c.post(f"/ack/{new}")).json()["acknowledged_by"] == "contact:budi"

    with_api(t, fresh_redis)


def test_a_rise_after_an_ack_reopens_and_voids_the_earlier_links(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute", lambda i: acknowledge(i, "contact:budi", NOW))
        old = make_token(SECRET, a, NOW + 600, contact="sari", epoch=0)
        await store.mutate(a, lambda i: apply_update(i, update("65.71", "election_dispute", "awas"), [POLICY], 2, NOW))
        assert (await store.get(a)).status == "escalated"  # re-opened by the rise
        r = await c.post(f"/ack/{old}", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 410 and "AWAS" in r.text
        assert (await store.get(a)).status == "escalated" and (await store.get(a)).acks == 1

    with_api(t, fresh_redis)


def test_a_link_after_resolve_says_so_and_shows_the_state(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute", lambda i: resolve(i, "operator:op1", NOW))
        token = make_token(SECRET, a, NOW + 600, contact="budi")
        r = await c.post(f"/ack/{token}", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 409 and "resolved" in r.text and "SIAGA" in r.text

    with_api(t, fresh_redis)


def test_a_link_from_a_shared_room_acknowledges_as_the_channel(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        token = make_token(SECRET, a, NOW + 600, contact="channel:kaltara-slack")
        assert (await c.post(f"/ack/{token}")).json()["acknowledged_by"] == "channel:kaltara-slack"
        assert (await store.timeline(a))[-1]["by"] == "channel:kaltara-slack"

    with_api(t, fresh_redis)


def test_an_oversized_body_is_refused_before_it_is_read_whole(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.71", "election_dispute")
        declared = await c.post(f"/v1/incidents/{a}/ack", headers={**AUTH, "Content-Length": str(10**9)},
                                content=b"{}")
        assert assert_problem(declared, 413)["type"] == "urn:pantau:problem:too_large"
        sent = []

        async def endless():  # no declared length: chunked, far past the limit
            for _ in range(1000):
                sent.append(1)
                yield b"x" * 8192

        streamed = await c.post(f"/v1/incidents/{a}/ack", headers=AUTH, content=endless())
        assert assert_problem(streamed, 413)["type"] == "urn:pantau:problem:too_large"
        assert len(sent) < 20, f"read {len(sent)} chunks of 8 KiB before refusing"
        assert (await store.get(a)).status == "triggered"

    with_api(t, fresh_redis)


def test_ack_requests_are_rate_limited_per_client_address(fresh_redis):
    async def t(c, store, clock, woken):
        app = c._transport.app  # the same app, reached from other client addresses
        a = await seed(store, "65.71", "election_dispute")
        token = make_token(SECRET, a, NOW + 600, contact="budi")
        stranger = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 4000)),
                                     base_url="http://pantau.test")
        neighbour = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.10", 4000)),
                                      base_url="http://pantau.test")
        async with stranger, neighbour:
            answers = [(await stranger.get(f"/ack/x{i}.y")).status_code for i in range(30)]
            assert set(answers) == {403}
            limited = await stranger.get(f"/ack/{token}")
            assert assert_problem(limited, 429)["type"] == "urn:pantau:problem:rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            page = await stranger.get(f"/ack/{token}", headers={"Accept": "text/html"})
            assert page.status_code == 429 and "text/html" in page.headers["content-type"]
            assert (await stranger.post(f"/ack/{token}")).status_code == 429
            assert (await store.get(a)).status == "triggered"  # a limited POST acknowledges nothing
            assert (await neighbour.get(f"/ack/{token}")).status_code == 200  # another address is not held

    with_api(t, fresh_redis)


# --- health, metrics, errors -----------------------------------------------------------------
def test_health_ready_metrics_and_no_tracebacks(fresh_redis, caplog):
    async def t(c, store, clock, woken):
        await seed(store, "65.71", "election_dispute")
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).status_code == 200
        # The public port the ack pages face the internet from never serves metrics.
        assert_problem(await c.get("/metrics"), 404)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_metrics_app(store)),
                                     base_url="http://metrics.test") as mc:
            m = (await mc.get("/metrics")).text
            assert_problem(await mc.get("/v1/incidents"), 404)
        assert re.search(r'^pantau_open_incidents\{level="siaga"\} 1\.0$', m, re.M)
        assert "pantau_incidents_opened_total" in m and "pantau_time_to_acknowledge_seconds_bucket" in m
        assert_problem(await c.get("/nothing-here"), 404)

        async def boom(_id: str):
            raise RuntimeError("secret internals")

        store.get = boom  # type: ignore[method-assign]
        r = await c.get("/v1/incidents/x", headers=AUTH)
        body = assert_problem(r, 500)
        assert "secret internals" not in r.text and body["type"] == "urn:pantau:problem:internal"
        # A crash under /ack/ logs neither the path (the token) nor the exception's message.
        token = make_token(SECRET, "inc-x", NOW + 600, contact="budi")
        with caplog.at_level(logging.DEBUG):
            assert_problem(await c.post(f"/ack/{token}"), 500)
        logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records if r.name.startswith("pantau"))
        assert "RuntimeError" in logged and token not in logged and token.split(".")[1] not in logged
        assert "secret internals" not in logged

    with_api(t, fresh_redis)


# --- on-call --------------------------------------------------------------------------------------
def test_oncall_and_runtime_overrides(fresh_redis):
    async def t(c, store, clock, woken):
        r = await c.get("/v1/oncall", headers=AUTH)
        assert r.status_code == 200
        (now,) = r.json()["oncall"]
        assert now["region"] == "65.71" and now["contact"] in ("budi", "sari") and now["next_handover"]
        wita = timezone(timedelta(hours=8))
        start = datetime.fromtimestamp(NOW - 60, wita).isoformat()
        end = datetime.fromtimestamp(NOW + 3600, wita).isoformat()
        r = await c.post("/v1/rotations/65.71/overrides", headers=AUTH,
                         json={"contact": "andi", "start": start, "end": end, "reason": "tukar jaga"})
        assert r.status_code == 201 and r.json()["created_by"] == "operator:op1"
        assert (await c.get("/v1/oncall", headers=AUTH)).json()["oncall"][0]["contact"] == "andi"
        clock.t = NOW + 3600
        assert (await c.get("/v1/oncall", headers=AUTH)).json()["oncall"][0]["contact"] != "andi"
        bad = {"contact": "andi", "start": end, "end": start}
        assert_problem(await c.post("/v1/rotations/65.71/overrides", headers=AUTH, json=bad), 422)
        assert_problem(await c.post("/v1/rotations/65.71/overrides", headers=AUTH,
                                    json={"contact": "nobody", "start": start, "end": end}), 422)
        assert_problem(await c.post("/v1/rotations/65.71/overrides", headers=AUTH,
                                    json={"contact": "andi", "start": "2024-11-27T10:00:00", "end": end}), 422)
        assert_problem(await c.post("/v1/rotations/65.01/overrides", headers=AUTH,
                                    json={"contact": "andi", "start": start, "end": end}), 404)
        assert_problem(await c.post("/v1/rotations/65.71/overrides", json={}), 401)

    with_api(t, fresh_redis)
