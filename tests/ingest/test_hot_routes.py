"""The publishing routes' front (services/ingest/hot_routes.py), in-process with a stand-in
Intake: a publisher gets from it exactly the answer the FastAPI routes behind it give (status,
headers, body), an unexpected error is a logged 500 problem without the trace, and its
requests are timed. The session stack's tests (test_http*.py) cover the rest through it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from services.ingest.api import create_app
from services.ingest.intake import Outcome, RateLimited, Unavailable
from shared.config import parse
from shared.config import sha256_hex
from tests.utils import JABAR_KEY, KALTARA_KEY, auth, report

CONFIG = f"""
sources:
  - {{id: fkdm-kaltara, api_key_sha256: "{sha256_hex(KALTARA_KEY)}", regions: ["65"]}}
  - {{id: bawaslu-jabar, api_key: "{JABAR_KEY}", regions: ["32.73"]}}
"""
SECRET_WORDS = "the intake's private state"


class _Intake:
    """Takes every report with one outcome, or raises one exception."""

    def __init__(self, result: str | Exception):
        self.result = result

    async def take(self, source: str, rate_per_minute: int | None, reports: list) -> list[Outcome]:
        if isinstance(self.result, Exception):
            raise self.result
        return [Outcome(r.event_id, self.result) for r in reports]


def _front(result: str | Exception):
    front = create_app(parse(CONFIG, env={}))
    front.app.state.gateway.intake = _Intake(result)
    return front


def _ask(asgi: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            return await c.request(method, path, content=body, headers=headers)
    return asyncio.run(go())


def _batch(*items: Any) -> bytes:
    return orjson.dumps({"reports": list(items)})


ONE = orjson.dumps(report())
CASES = {
    "accepted": ("accepted", "POST", "/v1/reports", ONE, auth()),
    "duplicate": ("duplicate", "POST", "/v1/reports", ONE, auth()),
    "no key": ("accepted", "POST", "/v1/reports", ONE, {"Content-Type": "application/json"}),
    "unknown key": ("accepted", "POST", "/v1/reports", ONE, auth("nope")),
    "not json": ("accepted", "POST", "/v1/reports", ONE, {**auth(), "Content-Type": "text/plain"}),
    "too large": ("accepted", "POST", "/v1/reports", b" " * 70_000 + ONE, auth()),
    "invalid json": ("accepted", "POST", "/v1/reports", b"{", auth()),
    "invalid report": ("accepted", "POST", "/v1/reports", orjson.dumps(report(severity=9, title=...)), auth()),
    "out of scope": ("accepted", "POST", "/v1/reports", ONE, auth(JABAR_KEY)),
    "rate limited": (RateLimited(17), "POST", "/v1/reports", ONE, auth()),
    "unavailable": (Unavailable("broker unreachable", True), "POST", "/v1/reports", ONE, auth()),
    "crash": (RuntimeError(SECRET_WORDS), "POST", "/v1/reports", ONE, auth()),
    "batch": ("accepted", "POST", "/v1/reports:batch", _batch(report(), report(region_code="32.73")), auth()),
    "batch duplicate": ("duplicate", "POST", "/v1/reports:batch", _batch(report()), auth()),
    "batch shape": ("accepted", "POST", "/v1/reports:batch", orjson.dumps([report()]), auth()),
    "batch empty": ("accepted", "POST", "/v1/reports:batch", _batch(), auth()),
    "batch unavailable": (Unavailable("state store unreachable", False), "POST", "/v1/reports:batch",
                          _batch(report()), auth()),
    "batch crash": (RuntimeError(SECRET_WORDS), "POST", "/v1/reports:batch", _batch(report()), auth()),
    "GET": ("accepted", "GET", "/v1/reports", b"", auth()),
    "PUT batch": ("accepted", "PUT", "/v1/reports:batch", ONE, auth()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_front_answers_exactly_as_the_fastapi_routes_behind_it(case):
    result, method, path, body, headers = CASES[case]
    front = _front(result)
    got = _ask(front, method, path, body, headers)
    want = _ask(front.app, method, path, body, headers)
    assert (got.status_code, got.headers.multi_items(), got.content) == \
        (want.status_code, want.headers.multi_items(), want.content)


def test_an_unexpected_error_is_a_logged_500_problem_without_the_trace(caplog):
    with caplog.at_level(logging.ERROR, logger="pantau.ingest"):
        resp = _ask(_front(RuntimeError(SECRET_WORDS)), "POST", "/v1/reports", ONE, auth())
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/problem+json"
    assert resp.json() == {"type": "urn:pantau:problem:internal", "title": "Internal error", "status": 500,
                           "detail": "internal error; the report was not accepted", "errors": []}
    assert SECRET_WORDS not in resp.text and "Traceback" not in resp.text
    (record,) = [r for r in caplog.records if r.name == "pantau.ingest"]
    assert "/v1/reports" in record.getMessage() and record.exc_info and SECRET_WORDS in str(record.exc_info[1])


@pytest.mark.parametrize("result, path, body, headers, code", [
    ("accepted", "/v1/reports", ONE, auth(), "202"),
    ("duplicate", "/v1/reports", ONE, auth(), "200"),
    ("accepted", "/v1/reports", ONE, auth("nope"), "401"),
    (RuntimeError(SECRET_WORDS), "/v1/reports", ONE, auth(), "500"),
    ("accepted", "/v1/reports:batch", _batch(report()), auth(), "200"),
])
def test_each_publishing_request_is_timed_by_endpoint_and_status(result, path, body, headers, code):
    labels = {"endpoint": path, "code": code}

    def count() -> float:
        return REGISTRY.get_sample_value("pantau_ingest_request_duration_seconds_count", labels) or 0.0

    before = count()
    _ask(_front(result), "POST", path, body, headers)
    assert count() == before + 1
