"""The console's report decisions against a real Redis holding ingest's index: each open
incident lists the reports that raised it with Verifikasi / Tolak; a click sends a decision
naming the logged-in operator (the producer is the far edge here; tests/notify/
test_console_verify_stack.py has the real broker and scorer); forms without the session or its
CSRF token change nothing; a repeat is "unchanged", an unknown report 404."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from shared.config import Operator
from shared.verifications import VerificationEvent, index_key
from services.notify.api import ApiContext, create_app
from services.notify.console_reports import ReportDesk
from services.notify.links import LinkMaker
from services.notify.store import IncidentStore
from services.notify.transitions import open_incident
from services.notify.incident import incident_key
from tests.notify.test_api import NOW, POLICY, SECRET, TOKEN, Clock, assert_problem
from tests.notify.test_console import csrf_of
from shared.scores import ScoreUpdate


class Producer:
    """Records what would go to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))


FACTS = {"region_code": "65.01.05", "category": "mass_mobilization", "occurred_at": "2024-11-27T06:00:00Z",
         "verified": False}


async def _index(r: aioredis.Redis, source: str, event_id: str, **facts: Any) -> None:
    await r.set(index_key(source, event_id), orjson.dumps({**FACTS, **facts}))


async def _incident(store: IncidentStore, ids: list[str]) -> str:
    u = ScoreUpdate.model_validate({"region_code": "65.01", "category": "mass_mobilization",
                                    "bucket_start": "2024-11-27T00:00:00+08:00", "level": "siaga",
                                    "reasons": ["severity 4 report"], "report_ids": ids})
    inc, _ = await store.upsert(incident_key("65.01", "mass_mobilization"),
                                lambda _closed: open_incident("inc-reports", u, [POLICY], NOW), lambda inc: None)
    return inc.id


def with_console(test, redis_url: str) -> Any:
    async def main() -> Any:
        r = aioredis.from_url(redis_url)
        producer = Producer()
        store = IncidentStore(r)
        app = create_app(ApiContext(store=store, links=LinkMaker(SECRET, "http://pantau.test", ttl_s=3600),
                                    operators=[Operator(id="op1", name="Piket Kesbangpol", token=TOKEN)],
                                    clock=Clock(NOW), reports=ReportDesk(producer, ["fkdm-kaltara", "sms-fkdm"],
                                                                         8 * 86_400_000)))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                         base_url="http://pantau.test") as c:
                return await test(c, r, store, producer)
        finally:
            await r.aclose()

    return asyncio.run(main())


def shown(page: str) -> dict[str, str]:
    """source/event_id → the state the console shows for it."""
    return dict(re.findall(r'data-report="([^"]+)">.*?<span class="decision">([^<]+)</span>', page))


def test_an_incident_lists_its_reports_with_verify_and_reject(fresh_redis):
    async def t(c, r, store, producer):
        await _index(r, "fkdm-kaltara", "ev-1")
        await _index(r, "sms-fkdm", "ev-2", verified=True)
        await _index(r, "fkdm-kaltara", "ev-2", region_code="65.02")  # same id, another region: not this incident's
        await _index(r, "unconfigured", "ev-3")
        inc = await _incident(store, ["ev-1", "ev-2", "ev-3", "ev-gone"])
        assert (await c.post("/console/login", data={"token": TOKEN})).status_code == 303
        page = (await c.get("/console")).text
        assert shown(page) == {"fkdm-kaltara/ev-1": "belum diverifikasi", "sms-fkdm/ev-2": "terverifikasi oleh sumber"}
        card = page[page.index(f'data-incident="{inc}"'):]
        assert "Verifikasi" in card and "Tolak" in card and 'action="/console/reports/fkdm-kaltara/ev-1"' in card
        en = (await c.get("/console", params={"lang": "en"})).text
        assert "Verify" in en and "Reject" in en and shown(en)["fkdm-kaltara/ev-1"] == "unverified"

    with_console(t, fresh_redis)


def test_a_click_sends_a_decision_naming_the_operator(fresh_redis):
    async def t(c, r, store, producer):
        await _index(r, "fkdm-kaltara", "ev-1")
        await _incident(store, ["ev-1"])
        url = "/console/reports/fkdm-kaltara/ev-1"
        # No session at all, then a session without (or with a forged) CSRF token: refused, nothing sent.
        assert_problem(await c.post(url, data={"decision": "verify", "csrf": "x"}), 403)
        assert (await c.post("/console/login", data={"token": TOKEN})).status_code == 303
        token = csrf_of((await c.get("/console")).text)
        for data in ({"decision": "verify"}, {"decision": "verify", "csrf": "forged"}):
            assert_problem(await c.post(url, data=data), 403)
        assert producer.sent == []

        done = await c.post(url, data={"decision": "verify", "csrf": token, "note": "dicek lewat telepon",
                                       "back": "/console?region=65"})
        assert done.status_code == 303 and done.headers["location"] == "/console?region=65&done=verify"
        [(topic, value, key)] = producer.sent
        event = VerificationEvent.model_validate_json(value)
        assert topic == "pantau.verifications.v1" and key == b"65.01"
        assert (event.decision, event.by, event.by_name, event.note, event.region_code) == \
            ("verified", "operator:op1", "Piket Kesbangpol", "dicek lewat telepon", "65.01.05")
        page = (await c.get(done.headers["location"])).text
        assert "Laporan diverifikasi" in page and shown(page) == {"fkdm-kaltara/ev-1": "diverifikasi"}

        again = await c.post(url, data={"decision": "verify", "csrf": token})
        assert again.headers["location"] == "/console?done=unchanged" and len(producer.sent) == 1
        rejected = await c.post(url, data={"decision": "reject", "csrf": token})
        assert rejected.headers["location"] == "/console?done=reject" and len(producer.sent) == 2
        assert shown((await c.get("/console")).text) == {"fkdm-kaltara/ev-1": "ditolak"}

        assert_problem(await c.post("/console/reports/fkdm-kaltara/never", data={"decision": "verify",
                                                                                "csrf": token}), 404)
        bad = assert_problem(await c.post(url, data={"decision": "maybe", "csrf": token, "note": "x" * 1001}), 422)
        assert {e["field"] for e in bad["errors"]} == {"decision", "note"}
        assert len(producer.sent) == 2

    with_console(t, fresh_redis)
