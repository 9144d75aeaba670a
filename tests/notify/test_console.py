"""The region map and the operators' console against a real Redis: the map's regions and levels
per province and for the country, its 401 and 422 answers; console login (cookie flags), CSRF
on every change, acknowledge and resolve from the console, language choice, logout."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import redis.asyncio as aioredis

from shared.config import Operator
from shared.regions import registry
from services.notify.api import ApiContext, create_app
from services.notify.links import LinkMaker
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge, resolve
from tests.notify.test_api import AUTH, NOW, SECRET, TOKEN, Clock, assert_problem, seed, with_api

KALTARA = ["65.01", "65.02", "65.03", "65.04", "65.71"]


def levels(svg: str) -> dict[str, str]:
    """data-region → data-level of every <path> in the map."""
    return dict(re.findall(r'<path data-region="([0-9.]+)" data-level="(\w+)"', svg))


def test_map_colours_each_kabupaten_by_its_highest_open_level(fresh_redis):
    async def t(c, store, clock, woken):
        r = await c.get("/console/map.svg", params={"region": "65"}, headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert levels(r.text) == {code: "normal" for code in KALTARA}
        assert "Kabupaten Bulungan" in r.text and "Kota Tarakan" in r.text and "Digambar" in r.text

        await seed(store, "65.01.02", "communal_clash")  # siaga, in a kecamatan of Bulungan
        await seed(store, "65.71", "election_dispute", then=lambda i: acknowledge(i, "operator:op1", NOW))
        await seed(store, "65.03", "other", then=lambda i: resolve(i, "operator:op1", NOW))
        got = levels((await c.get("/console/map.svg", params={"region": "65"}, headers=AUTH)).text)
        # Acknowledged is still open; resolved is not.
        assert got == {"65.01": "siaga", "65.02": "normal", "65.03": "normal", "65.04": "normal", "65.71": "siaga"}

        # An incident of the province itself colours no kabupaten/kota; the subtitle names it.
        await seed(store, "65", "hoax_disinformation")
        svg = (await c.get("/console/map.svg", params={"region": "65"}, headers=AUTH)).text
        assert levels(svg)["65.02"] == "normal" and "tingkat provinsi: SIAGA" in svg

        # One category: only its incidents count.
        one = levels((await c.get("/console/map.svg", params={"region": "65", "category": "communal_clash"},
                                  headers=AUTH)).text)
        assert one["65.01"] == "siaga" and one["65.71"] == "normal"

        # The country: one path per province, Kalimantan Utara at the level of its worst region.
        country = await c.get("/console/map.svg", headers=AUTH, params={"lang": "en"})
        got = levels(country.text)
        assert set(got) == set(registry().codes(1)) and len(got) == 38
        assert got["65"] == "siaga" and got["32"] == "normal" and "Alert level map" in country.text

    with_api(t, fresh_redis)


def test_map_needs_a_token_or_session_and_names_bad_fields(fresh_redis):
    async def t(c, store, clock, woken):
        r = await c.get("/console/map.svg", params={"region": "65"})
        assert_problem(r, 401)
        assert "<path" not in r.text
        assert_problem(await c.get("/console/map.svg", headers={"Authorization": "Bearer nope"}), 401)
        # Unauthenticated callers learn nothing about the query.
        assert_problem(await c.get("/console/map.svg", params={"region": "xx"}), 401)
        body = assert_problem(await c.get("/console/map.svg", params={"region": "65.01", "category": "riot",
                                                                      "lang": "null"}, headers=AUTH), 422)
        assert {e["field"] for e in body["errors"]} == {"region", "category", "lang"}

    with_api(t, fresh_redis)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field in the page"
    return m.group(1)


def test_console_login_ack_resolve_logout(fresh_redis):
    async def t(c, store, clock, woken):
        inc = await seed(store, "65.01", "mass_mobilization")
        first = await c.get("/console")
        assert first.status_code == 200 and 'name="token"' in first.text and "Masuk" in first.text
        assert "mass_mobilization" not in first.text and "<svg" not in first.text

        bad = await c.post("/console/login", data={"token": "nope"})
        assert bad.status_code == 401 and "Token tidak dikenal" in bad.text and "set-cookie" not in bad.headers

        ok = await c.post("/console/login", data={"token": TOKEN})
        assert ok.status_code == 303 and ok.headers["location"] == "/console"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # public_url is http here

        page = (await c.get("/console", params={"region": "65"})).text
        assert "Piket Kesbangpol" in page and "Kabupaten Bulungan" in page and "severity 4 report" in page
        assert levels(page)["65.01"] == "siaga" and "Konfirmasi" in page
        # The map answers the session too, without a bearer token.
        assert levels((await c.get("/console/map.svg", params={"region": "65"})).text)["65.01"] == "siaga"
        token = csrf_of(page)

        # Without the session's CSRF token nothing changes.
        for data in ({}, {"csrf": "forged"}):
            assert_problem(await c.post(f"/console/incidents/{inc}/ack", data=data), 403)
        assert (await store.get(inc)).status == "triggered"

        acked = await c.post(f"/console/incidents/{inc}/ack", data={"csrf": token, "back": "/console?region=65"})
        assert acked.status_code == 303 and acked.headers["location"] == "/console?region=65&done=ack"
        assert (await store.get(inc)).acknowledged_by == "operator:op1" and woken
        page = (await c.get(acked.headers["location"])).text
        # The timeline in words: who acknowledged it, and how.
        assert "Insiden dikonfirmasi" in page and "<b>dikonfirmasi</b> — by: operator:op1, via: console" in page

        # An offsite `back` is ignored.
        done = await c.post(f"/console/incidents/{inc}/resolve", data={"csrf": token, "back": "//evil.example/x"})
        assert done.headers["location"] == "/console?done=resolve"
        assert (await store.get(inc)).status == "resolved"
        page = (await c.get("/console", params={"region": "65", "lang": "en"})).text
        assert "No open incidents" in page and levels(page)["65.01"] == "normal"

        # The language choice sticks to the session.
        assert "Log out" in (await c.get("/console")).text

        assert_problem(await c.post("/console/logout", data={"csrf": "forged"}), 403)
        out = await c.post("/console/logout", data={"csrf": token})
        assert out.status_code == 303 and 'pantau_console=""' in out.headers["set-cookie"]
        assert 'name="token"' in (await c.get("/console")).text
        assert_problem(await c.get("/console/map.svg", params={"region": "65"}), 401)

    with_api(t, fresh_redis)


def test_session_cookie_is_secure_behind_https(fresh_redis):
    async def main() -> Any:
        r = aioredis.from_url(fresh_redis)
        try:
            links = LinkMaker(SECRET, "https://pantau.example.go.id", ttl_s=3600)
            app = create_app(ApiContext(store=IncidentStore(r), links=links, clock=Clock(NOW),
                                        operators=[Operator(id="op1", name="Piket", token=TOKEN)]))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://pantau.test") as c:
                ok = await c.post("/console/login", data={"token": TOKEN})
                assert ok.status_code == 303 and "Secure" in ok.headers["set-cookie"]
        finally:
            await r.aclose()

    asyncio.run(main())


def test_console_shows_the_worst_incidents_first_up_to_a_cap(fresh_redis, monkeypatch):
    from services.notify import console

    monkeypatch.setattr(console, "MAX_SHOWN", 2)

    async def t(c, store, clock, woken):
        for region in ("65.01", "65.02", "65.03"):
            await seed(store, region, "other")
        awas = await seed(store, "65.04", "other")
        await store.mutate(awas, lambda i: _raised(i))
        assert (await c.post("/console/login", data={"token": TOKEN})).status_code == 303
        page = (await c.get("/console", params={"region": "65"})).text
        shown = re.findall(r'<article class="inc" data-incident="([^"]+)"', page)
        assert len(shown) == 2 and shown[0] == awas and "(2 / 4)" in page

    with_api(t, fresh_redis)


def _raised(inc):
    from services.notify.incident import Change

    new = inc.model_copy(deep=True)
    new.level = "awas"
    return Change(new)
