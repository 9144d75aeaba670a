"""CAP 1.2 from the notify API against a real Redis: every state of an incident gives an alert
valid against the OASIS XSD (Alert, Update referencing the earlier ones, Cancel on resolve),
with the region's geocode and numeric-offset times; the Atom feed lists it; both need the
operator token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from services.notify.transitions import acknowledge, apply_update, resolve
from tests.notify.test_api import AUTH, NOW, POLICY, assert_problem, seed, update, with_api

CAP = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
ATOM = {"a": "http://www.w3.org/2005/Atom"}
XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "CAP-v1.2-schema.xsd")))
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def valid_cap(body: bytes) -> etree._Element:
    doc = etree.fromstring(body)
    assert XSD.validate(doc), XSD.error_log
    return doc


def text(doc: etree._Element, path: str) -> list[str]:
    return [e.text for e in doc.xpath(path, namespaces=CAP)]


def test_every_state_of_an_incident_is_a_valid_cap_alert(fresh_redis):
    async def t(c, store, clock, woken):
        inc_id = await seed(store, "65.01", "communal_clash")

        r = await c.get(f"/v1/cap/{inc_id}.xml", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
        alert = valid_cap(r.content)
        assert text(alert, "/c:alert/c:msgType") == ["Alert"]
        assert text(alert, "/c:alert/c:scope") == ["Restricted"] and text(alert, "/c:alert/c:restriction")[0]
        assert text(alert, "/c:alert/c:references") == []
        assert text(alert, "//c:info/c:language") == ["id-ID", "en-US"]
        assert set(text(alert, "//c:info/c:category")) == {"Security"}
        # siaga: Expected / Severe / Likely (the README's table)
        assert set(text(alert, "//c:info/c:urgency")) == {"Expected"}
        assert set(text(alert, "//c:info/c:severity")) == {"Severe"}
        assert set(text(alert, "//c:info/c:certainty")) == {"Likely"}
        assert set(text(alert, "//c:area/c:areaDesc")) == {"Kabupaten Bulungan"}
        assert set(text(alert, "//c:area/c:geocode/c:valueName")) == {"kemendagri"}
        assert set(text(alert, "//c:area/c:geocode/c:value")) == {"65.01"}
        sent = text(alert, "/c:alert/c:sent")[0]
        assert CAP_TIME.match(sent) and sent.endswith("+08:00")  # Kalimantan Utara is WITA
        first_id = text(alert, "/c:alert/c:identifier")[0]
        sender = text(alert, "/c:alert/c:sender")[0]

        again = await c.get(f"/v1/cap/{inc_id}.xml", headers=AUTH)
        assert again.content == r.content  # the same state is the same message

        clock.t = NOW + 60
        await store.mutate(inc_id, lambda inc: apply_update(inc, update("65.01", "communal_clash", "awas"),
                                                             [POLICY], 3, clock.t))
        rise = valid_cap((await c.get(f"/v1/cap/{inc_id}.xml", headers=AUTH)).content)
        assert text(rise, "/c:alert/c:msgType") == ["Update"]
        assert set(text(rise, "//c:info/c:severity")) == {"Extreme"}
        assert text(rise, "/c:alert/c:references") == [f"{sender},{first_id},{sent}"]
        rise_id = text(rise, "/c:alert/c:identifier")[0]
        assert rise_id != first_id

        clock.t = NOW + 120
        await store.mutate(inc_id, lambda inc: acknowledge(inc, "operator:op1", clock.t))
        acked = valid_cap((await c.get(f"/v1/cap/{inc_id}.xml", headers=AUTH)).content)
        assert text(acked, "/c:alert/c:msgType") == ["Update"]
        assert len(text(acked, "/c:alert/c:references")[0].split()) == 2

        clock.t = NOW + 180
        await store.mutate(inc_id, lambda inc: resolve(inc, "operator:op1", clock.t, "manual", None))
        cancel = valid_cap((await c.get(f"/v1/cap/{inc_id}.xml", headers=AUTH)).content)
        assert text(cancel, "/c:alert/c:msgType") == ["Cancel"]
        refs = text(cancel, "/c:alert/c:references")[0].split()
        assert [r.split(",")[1] for r in refs][:2] == [first_id, rise_id] and len(refs) == 3
        assert set(text(cancel, "//c:info/c:responseType")) == {"AllClear"}

        feed = etree.fromstring((await c.get("/v1/cap/feed.atom", headers=AUTH)).content)
        entry_ids = [e.text for e in feed.xpath("//a:entry/a:id", namespaces=ATOM)]
        assert entry_ids == [text(cancel, "/c:alert/c:identifier")[0]]
        link = feed.xpath("//a:entry/a:link[@rel='alternate']", namespaces=ATOM)[0]
        assert link.get("type") == "application/cap+xml" and link.get("href").endswith(f"/v1/cap/{inc_id}.xml")

    with_api(t, fresh_redis)


def test_feed_lists_open_incidents_and_both_routes_need_the_token(fresh_redis):
    async def t(c, store, clock, woken):
        a = await seed(store, "65.01", "communal_clash")
        b = await seed(store, "65.71", "election_dispute")
        r = await c.get("/v1/cap/feed.atom", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
        feed = etree.fromstring(r.content)
        hrefs = {e.get("href") for e in feed.xpath("//a:entry/a:link[@rel='alternate']", namespaces=ATOM)}
        assert hrefs == {f"http://pantau.test/v1/cap/{a}.xml", f"http://pantau.test/v1/cap/{b}.xml"}
        assert feed.xpath("/a:feed/a:id", namespaces=ATOM) and feed.xpath("/a:feed/a:updated", namespaces=ATOM)

        for path in ("/v1/cap/feed.atom", f"/v1/cap/{a}.xml"):
            assert_problem(await c.get(path), 401)
            assert_problem(await c.get(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert_problem(await c.get("/v1/cap/no-such-incident.xml", headers=AUTH), 404)

    with_api(t, fresh_redis)


def test_states_follow_the_timeline_and_stop_at_the_cancel():
    from services.notify.cap import State, states

    t0 = 1_764_640_800.0  # 2025-12-02T02:00:00Z
    tl = [{"at": "2025-12-02T02:00:00.000Z", "kind": "opened", "level": "waspada"},
          {"at": "2025-12-02T02:00:01.000Z", "kind": "delivery", "outcome": "delivered"},
          {"at": "2025-12-02T02:05:00.250Z", "kind": "level", "previous": "waspada", "level": "awas"},
          {"at": "2025-12-02T02:06:00.000Z", "kind": "acknowledged", "by": "operator:op1"},
          {"at": "2025-12-02T02:09:00.000Z", "kind": "resolved", "how": "manual"},
          {"at": "2025-12-02T02:10:00.000Z", "kind": "level", "previous": "awas", "level": "siaga"}]
    got = states(tl, t0, "awas", t0 + 540)
    assert [(s.msg_type, s.kind, s.level) for s in got] == [
        ("Alert", "alert", "waspada"), ("Update", "level", "awas"), ("Update", "ack", "awas"),
        ("Cancel", "cancel", "awas")]
    assert got[1].at == t0 + 300.25
    # A timeline that lost its opening still begins with the Alert, at the incident's opening.
    assert states(tl[2:3], t0, "awas")[0] == State("alert", t0, "waspada")


@pytest.mark.parametrize("region, offset", [("11.01", "+07:00"), ("65.71", "+08:00"), ("91.71", "+09:00")])
def test_cap_times_carry_the_regions_numeric_offset(region: str, offset: str):
    from services.notify.cap import cap_time

    stamp = cap_time(1_764_640_800.9, region)
    assert CAP_TIME.match(stamp) and stamp.endswith(offset) and "Z" not in stamp
