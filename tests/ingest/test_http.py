"""The ingest HTTP API (contract: Ingest HTTP API) against the session stack: what a
publisher sees in each answer, and what does or does not land on `pantau.reports.v1`."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.ingest.scan import read_to_high_watermark
from services.ingest.state import rate_key
from shared import topics
from tests.utils import JABAR_KEY, KALTARA_KEY, LIMITED_KEY, auth, collect, report, value

WITA = timezone(timedelta(hours=8))


# --- helpers (shared with test_http_faults.py and test_http_hostile.py) ----------------------
def check_json(resp: httpx.Response, status: int) -> Any:
    """The answer has `status`, a JSON body and no stack trace; returns the parsed body."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    # Errors are RFC 9457 problems (shared/problems.py); answers are plain JSON.
    ctype = "application/problem+json" if status >= 400 else "application/json"
    assert resp.headers["content-type"].startswith(ctype), resp.headers
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return resp.json()


def check_problem(resp: httpx.Response, status: int, error: str) -> dict:
    """A refusal of the whole request: a problem with code `error` and words in `detail`."""
    body = check_json(resp, status)
    assert body["type"] == f"urn:pantau:problem:{error}" and body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["errors"] == [], body
    return body


def check_invalid(resp: httpx.Response) -> dict[str, str]:
    """A 422 problem whose `errors` is `[{"field", "message"}, ...]`; returns field -> message."""
    body = check_json(resp, 422)
    assert set(body) == {"type", "title", "status", "detail", "errors"} and body["errors"], body
    assert body["type"] == "urn:pantau:problem:invalid" and body["status"] == 422, body
    for e in body["errors"]:
        assert set(e) == {"field", "message"} and isinstance(e["field"], str) and e["message"], e
    return {e["field"]: e["message"] for e in body["errors"]}


def retry_after(resp: httpx.Response) -> int:
    """The Retry-After header, which must be a whole number of seconds."""
    text = resp.headers["retry-after"]
    assert text.isdigit() and int(text) >= 1, text
    return int(text)


def _mine(ids: set[tuple[str, str]]):
    def where(m: Any) -> bool:
        v = value(m)
        return (v.get("source"), v.get("event_id")) in ids
    return where


def on_topic(bootstrap: str, *reports: dict) -> dict[str, Any]:
    """Wait until every report is on pantau.reports.v1; return event_id -> its message."""
    ids = {(r["source"], r["event_id"]) for r in reports}
    got = asyncio.run(collect(bootstrap, [topics.REPORTS_V1], timeout_s=30, where=_mine(ids),
                              done=lambda ms: {(value(m)["source"], value(m)["event_id"]) for m in ms} >= ids))
    return {value(m)["event_id"]: m for m in got}


async def _read_to_end(bootstrap: str, topic: str, timeout_s: float) -> list[Any]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        await c.topics()  # fetch metadata
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert parts, f"{topic} has no partitions"
        got: list[Any] = []
        # To the high watermark of the fetch responses: Tansu's end_offsets stops short of a
        # last batch of several records, where an extra copy would go unseen.
        await read_to_high_watermark(c, {tp: 0 for tp in parts}, got.append,
                                     deadline=time.monotonic() + timeout_s)
        return got
    finally:
        await c.stop()


def copies_on_topic(bootstrap: str, *reports: dict) -> dict[str, int]:
    """How many times each report is on pantau.reports.v1 right now (everything acknowledged
    before this call is below the end offsets it reads up to)."""
    ids = {(r["source"], r["event_id"]) for r in reports}
    counts = {r["event_id"]: 0 for r in reports}
    for m in asyncio.run(_read_to_end(bootstrap, topics.REPORTS_V1, 30)):
        if _mine(ids)(m):
            counts[value(m)["event_id"]] += 1
    return counts


def post(client: httpx.Client, body: Any, key: str = KALTARA_KEY, path: str = "/v1/reports") -> httpx.Response:
    return client.post(path, content=orjson.dumps(body), headers=auth(key))


@pytest.fixture
def bootstrap(stack) -> str:
    return stack.config.kafka.bootstrap_servers


# --- 202 accepted, 200 duplicate -------------------------------------------------------------
@pytest.mark.parametrize("region, key", [("65.71.02", b"65.71"), ("65.01.01.1001", b"65.01"), ("65", b"65")],
                         ids=["kecamatan", "desa", "province"])
def test_accepted_report_is_on_reports_v1_keyed_by_kabupaten_kota(ingest, bootstrap, region, key):
    r = report(region_code=region, description="Massa sekitar 300 orang", location={"lat": 3.3, "lon": 117.6},
               attributes={"channel": "fkdm-app"})
    resp = post(ingest, r)
    assert check_json(resp, 202) == {"event_id": r["event_id"], "status": "accepted"}

    msg = on_topic(bootstrap, r)[r["event_id"]]
    assert msg.key == key
    v = value(msg)
    assert {k: v[k] for k in r} == r  # the report as given ...
    assert v["verified"] is False and v["casualties"] == 0  # ... with the contract's defaults
    received = datetime.fromisoformat(v["received_at"].replace("Z", "+00:00"))
    assert received.tzinfo is not None
    assert isinstance(v["ingest_id"], str) and v["ingest_id"]
    assert set(v) == set(r) | {"verified", "casualties", "received_at", "ingest_id"}


def test_repeat_is_a_duplicate_and_is_not_published_again(ingest, bootstrap):
    r = report()
    first = post(ingest, r)
    again = post(ingest, r)
    changed = post(ingest, {**r, "title": "Judul lain, event_id sama", "severity": 5})
    assert check_json(first, 202) == {"event_id": r["event_id"], "status": "accepted"}
    assert check_json(again, 200) == {"event_id": r["event_id"], "status": "duplicate"}
    assert check_json(changed, 200) == {"event_id": r["event_id"], "status": "duplicate"}

    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}
    assert value(on_topic(bootstrap, r)[r["event_id"]])["title"] == r["title"]


def test_same_event_id_from_another_source_is_not_a_duplicate(ingest, bootstrap):
    eid = report()["event_id"]
    kaltara = report(event_id=eid)
    jabar = report(event_id=eid, source="bawaslu-jabar", region_code="32.73.01")
    assert check_json(post(ingest, kaltara), 202)["status"] == "accepted"
    assert check_json(post(ingest, jabar, JABAR_KEY), 202)["status"] == "accepted"
    msgs = asyncio.run(collect(bootstrap, [topics.REPORTS_V1], lambda ms: len(ms) >= 2, timeout_s=30,
                               where=lambda m: value(m).get("event_id") == eid))
    assert sorted((value(m)["source"], m.key) for m in msgs) == [("bawaslu-jabar", b"32.73"),
                                                                ("fkdm-kaltara", b"65.71")]


# --- 422 -------------------------------------------------------------------------------------
def test_invalid_report_names_every_bad_field_at_once(ingest, bootstrap):
    r = report(
        severity="5",  # a string is not a severity
        occurred_at="2024-11-27T09:30:00",  # no offset
        region_code="65.99",  # not in the registry
        title="x" * 201,
        location={"lat": 3.3, "lon": 150.0},  # east of the bounding box
        attributes={f"k{i}": "v" for i in range(33)},
        category="kerusuhan",
        casualties=-1,
        reporter="Pak Budi",  # unknown top-level fields
        nik="6571010101010001",
    )
    errors = check_invalid(post(ingest, r))
    assert set(errors) == {"severity", "occurred_at", "region_code", "title", "location.lon", "attributes",
                           "category", "casualties", "reporter", "nik"}
    assert errors["reporter"] == errors["nik"] == "unknown field"
    assert "6571010101010001" not in json.dumps(errors)  # the input is never echoed back
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 0}


def _in(minutes: float) -> str:
    return (datetime.now(WITA) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


@pytest.mark.parametrize("overrides, field, words", [
    ({"severity": "5"}, "severity", "integer"),
    ({"severity": 3.0}, "severity", "integer"),
    ({"severity": True}, "severity", "integer"),
    ({"severity": 0}, "severity", "greater than or equal to 1"),
    ({"severity": 6}, "severity", "less than or equal to 5"),
    ({"occurred_at": "2024-11-27T09:30:00"}, "occurred_at", "offset"),
    ({"occurred_at": "27/11/2024 09:30"}, "occurred_at", "RFC 3339"),
    ({"occurred_at": "2024-02-30T09:30:00+08:00"}, "occurred_at", "not a valid date"),
    ({"occurred_at": "FUTURE"}, "occurred_at", "future"),
    ({"region_code": "65.99"}, "region_code", "unknown region"),
    ({"region_code": "6571"}, "region_code", "dotted"),
    ({"region_code": 65}, "region_code", "string"),
    ({"location": {"lat": 20.0, "lon": 117.0}}, "location.lat", "6.5"),
    ({"location": {"lat": 3.0, "lon": 150.0}}, "location.lon", "141.5"),
    ({"location": {"lat": 3.0}}, "location.lon", "required"),
    ({"attributes": {f"k{i}": "v" for i in range(33)}}, "attributes", "32"),
    ({"attributes": {"k": "v" * 501}}, "attributes", "500"),
    ({"title": "x" * 201}, "title", "200"),
    ({"title": ""}, "title", "at least 1"),
    ({"title": ...}, "title", "required"),
    ({"description": "x" * 5001}, "description", "5000"),
    ({"category": "kerusuhan"}, "category", "election_dispute"),
    ({"event_id": "ada spasi"}, "event_id", "pattern"),
    ({"event_id": "x" * 129}, "event_id", "128"),
    ({"source": "FKDM"}, "source", "pattern"),
    ({"verified": "true"}, "verified", "boolean"),
    ({"casualties": -1}, "casualties", "greater than or equal to 0"),
    ({"participants": 1.5}, "participants", "integer"),
    ({"schema_version": 2}, "schema_version", "less than or equal to 1"),
    ({"reporter": "Pak Budi"}, "reporter", "unknown field"),
])
def test_each_bad_field_is_named(ingest, overrides, field, words):
    if overrides.get("occurred_at") == "FUTURE":
        overrides = {"occurred_at": _in(6)}
    errors = check_invalid(post(ingest, report(**overrides)))
    assert list(errors) == [field]
    assert words.lower() in errors[field].lower(), errors


@pytest.mark.parametrize("overrides", [
    {"occurred_at": "NEAR_FUTURE"},  # up to 5 minutes ahead is a clock skew, not an error
    {"attributes": {f"k{i}": "v" * 500 for i in range(32)}},
    {"title": "x" * 200, "description": "y" * 5000},
    {"location": {"lat": -11.0, "lon": 141.5}},
    {"location": {"lat": 6, "lon": 94}},  # integers are numbers too
    {"verified": True, "casualties": 2, "participants": 0, "schema_version": 1},
], ids=["4-min-ahead", "32-attributes", "max-lengths", "bbox-corner", "int-coords", "optionals"])
def test_values_at_the_limits_are_accepted(ingest, overrides):
    if overrides.get("occurred_at") == "NEAR_FUTURE":
        overrides = {"occurred_at": _in(4)}
    r = report(**overrides)
    assert check_json(post(ingest, r), 202) == {"event_id": r["event_id"], "status": "accepted"}


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"event_id": "a",}', b"\xef\xbb\xbf{}"],
                         ids=["garbage", "empty", "trailing-comma", "bom"])
def test_body_that_is_not_json_is_422(ingest, body):
    errors = check_invalid(ingest.post("/v1/reports", content=body, headers=auth()))
    assert list(errors) == ["(body)"] and "invalid JSON" in errors["(body)"]


@pytest.mark.parametrize("body", [b"[]", b'[{"event_id": "x"}]', b'"report"', b"42", b"null", b"true"])
def test_body_that_is_not_an_object_is_422(ingest, body):
    errors = check_invalid(ingest.post("/v1/reports", content=body, headers=auth()))
    assert errors == {"(body)": "must be a JSON object"}


# --- 401, 403 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, f"Basic {KALTARA_KEY}", "Bearer", KALTARA_KEY,
                                           "Bearer not-a-key", f"Bearer {KALTARA_KEY}x"],
                         ids=["missing", "basic", "no-key", "no-scheme", "unknown", "near-miss"])
def test_missing_or_unknown_key_is_401_and_nothing_is_taken(ingest, authorization):
    r = report()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    resp = ingest.post("/v1/reports", content=orjson.dumps(r), headers=headers)
    check_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert KALTARA_KEY not in resp.text
    # Nothing was claimed: the same report with the right key is new.
    assert check_json(post(ingest, r), 202)["status"] == "accepted"


def test_source_other_than_the_keys_own_is_403(ingest, bootstrap):
    r = report(source="bawaslu-jabar")  # kaltara's key, jabar's name
    body = check_problem(post(ingest, r), 403, "forbidden")
    assert "source" in body["detail"]
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 0}


def test_region_outside_the_keys_prefixes_is_403(ingest, bootstrap):
    outside = report(source="bawaslu-jabar", region_code="65.01")
    parent = report(source="bawaslu-jabar", region_code="32")  # the province holding its kabupaten
    inside = report(source="bawaslu-jabar", region_code="32.73.01")
    assert "region_code" in check_problem(post(ingest, outside, JABAR_KEY), 403, "forbidden")["detail"]
    assert "region_code" in check_problem(post(ingest, parent, JABAR_KEY), 403, "forbidden")["detail"]
    assert check_json(post(ingest, inside, JABAR_KEY), 202)["status"] == "accepted"
    assert copies_on_topic(bootstrap, outside, inside) == {outside["event_id"]: 0, inside["event_id"]: 1}


# --- 413, 415 ----------------------------------------------------------------------------------
def _padded(body: dict, size: int) -> bytes:
    """`body` as JSON, padded with trailing whitespace to exactly `size` bytes."""
    raw = orjson.dumps(body)
    return raw + b" " * (size - len(raw))


def test_single_body_over_64_kib_is_413(ingest):
    check_problem(ingest.post("/v1/reports", content=_padded(report(), 64 * 1024 + 1), headers=auth()),
                  413, "too_large")


def test_single_body_of_exactly_64_kib_is_accepted(ingest):
    r = report()
    assert check_json(ingest.post("/v1/reports", content=_padded(r, 64 * 1024), headers=auth()), 202)["status"] == "accepted"


def test_chunked_body_over_64_kib_is_413_without_content_length(ingest):
    def chunks():
        yield b'{"title": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    check_problem(ingest.post("/v1/reports", content=chunks(), headers=auth()), 413, "too_large")


def test_batch_body_over_4_mib_is_413(ingest):
    body = _padded({"reports": [report()]}, 4 * 1024 * 1024 + 1)
    check_problem(ingest.post("/v1/reports:batch", content=body, headers=auth()), 413, "too_large")


def test_batch_body_over_64_kib_is_fine(ingest):
    body = _padded({"reports": [report()]}, 1024 * 1024)
    results = check_json(ingest.post("/v1/reports:batch", content=body, headers=auth()), 200)["results"]
    assert [r["status"] for r in results] == ["accepted"]


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports:batch"])
def test_body_not_declared_as_json_is_415(ingest, ctype, path):
    headers = {"Authorization": f"Bearer {KALTARA_KEY}"}
    if ctype:
        headers["Content-Type"] = ctype
    body = orjson.dumps(report() if path == "/v1/reports" else {"reports": [report()]})
    check_problem(ingest.post(path, content=body, headers=headers), 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_accepted(ingest):
    headers = {"Authorization": f"Bearer {KALTARA_KEY}", "Content-Type": "Application/JSON; charset=utf-8"}
    assert check_json(ingest.post("/v1/reports", content=orjson.dumps(report()), headers=headers), 202)


# --- 429 ---------------------------------------------------------------------------------------
def test_sixth_report_in_a_minute_is_429_with_retry_after(stack, ingest, bootstrap):
    # Start `limited` (5 per minute) from a full allowance, whatever ran before in this session.
    with redis.Redis.from_url(stack.config.redis.url) as r:
        r.delete(rate_key("limited"))
    reports = [report(source="limited") for _ in range(6)]
    first_five = [post(ingest, r, LIMITED_KEY) for r in reports[:5]]
    sixth = post(ingest, reports[5], LIMITED_KEY)

    assert [check_json(resp, 202)["status"] for resp in first_five] == ["accepted"] * 5
    body = check_problem(sixth, 429, "rate_limited")
    assert "5" in body["detail"]
    assert 1 <= retry_after(sixth) <= 60
    assert copies_on_topic(bootstrap, *reports) == {r["event_id"]: int(i < 5) for i, r in enumerate(reports)}


def test_invalid_reports_do_not_use_up_the_rate_limit(stack, ingest):
    with redis.Redis.from_url(stack.config.redis.url) as r:
        r.delete(rate_key("limited"))
    for _ in range(10):
        check_invalid(post(ingest, report(source="limited", severity=9), LIMITED_KEY))
    assert check_json(post(ingest, report(source="limited"), LIMITED_KEY), 202)["status"] == "accepted"


def test_batch_larger_than_a_minutes_allowance_is_422_not_an_endless_429(stack, ingest, bootstrap):
    with redis.Redis.from_url(stack.config.redis.url) as r:
        r.delete(rate_key("limited"))
    reports = [report(source="limited") for _ in range(6)]
    resp = ingest.post("/v1/reports:batch", content=orjson.dumps({"reports": reports}), headers=auth(LIMITED_KEY))
    errors = check_invalid(resp)
    assert "split the batch" in errors["reports"]
    assert copies_on_topic(bootstrap, *reports) == {r["event_id"]: 0 for r in reports}


# --- batch -------------------------------------------------------------------------------------
def test_batch_answers_each_item_in_input_order(ingest, bootstrap):
    earlier = report()
    check_json(post(ingest, earlier), 202)
    good, good2 = report(region_code="65.02"), report(region_code="65")
    bad = report(severity="5", reporter="x")
    out_of_scope = report(source="bawaslu-jabar", region_code="32.73")
    items = [good, bad, earlier, out_of_scope, 7, good2]

    resp = post(ingest, {"reports": items}, path="/v1/reports:batch")
    results = check_json(resp, 200)["results"]

    assert [(x["event_id"], x["status"]) for x in results] == [
        (good["event_id"], "accepted"), (bad["event_id"], "rejected"), (earlier["event_id"], "duplicate"),
        (out_of_scope["event_id"], "rejected"), (None, "rejected"), (good2["event_id"], "accepted"),
    ]
    plain, with_errors = {"event_id", "status"}, {"event_id", "status", "errors"}
    assert [set(x) for x in results] == [plain, with_errors, plain, with_errors, with_errors, plain]
    assert {e["field"] for e in results[1]["errors"]} == {"severity", "reporter"}
    assert {e["field"] for e in results[3]["errors"]} == {"source", "region_code"}
    assert results[4]["errors"] == [{"field": "(body)", "message": "must be a JSON object"}]

    keys = {eid: m.key for eid, m in on_topic(bootstrap, good, good2).items()}
    assert keys == {good["event_id"]: b"65.02", good2["event_id"]: b"65"}
    assert copies_on_topic(bootstrap, good, bad, earlier, out_of_scope, good2) == {
        good["event_id"]: 1, bad["event_id"]: 0, earlier["event_id"]: 1, out_of_scope["event_id"]: 0,
        good2["event_id"]: 1}


def test_repeated_event_id_in_one_batch_is_accepted_once(ingest, bootstrap):
    r = report()
    results = check_json(post(ingest, {"reports": [r, r, {**r, "title": "lagi"}]}, path="/v1/reports:batch"), 200)
    assert results == {"results": [{"event_id": r["event_id"], "status": "accepted"},
                                   {"event_id": r["event_id"], "status": "duplicate"},
                                   {"event_id": r["event_id"], "status": "duplicate"}]}
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}


def test_batch_of_500_is_accepted(ingest, bootstrap):
    items = [report() for _ in range(500)]
    results = check_json(post(ingest, {"reports": items}, path="/v1/reports:batch"), 200)["results"]
    assert [x["event_id"] for x in results] == [r["event_id"] for r in items]
    assert {x["status"] for x in results} == {"accepted"}
    assert len(on_topic(bootstrap, *items)) == 500


@pytest.mark.parametrize("n", [0, 501])
def test_batch_of_0_or_501_is_422(ingest, n):
    items = [report() for _ in range(n)]
    errors = check_invalid(post(ingest, {"reports": items}, path="/v1/reports:batch"))
    assert list(errors) == ["reports"] and f"got {n}" in errors["reports"]


@pytest.mark.parametrize("body", [[report()], {"items": [report()]}, {"reports": [report()], "extra": 1},
                                  {"reports": report()}, {}, None],
                         ids=["list", "wrong-key", "extra-key", "not-a-list", "empty", "null"])
def test_batch_body_of_the_wrong_shape_is_422(ingest, body):
    errors = check_invalid(post(ingest, body, path="/v1/reports:batch"))
    assert list(errors) == ["(body)"] and '"reports"' in errors["(body)"]


def test_batch_with_only_rejected_items_is_200(ingest):
    results = check_json(post(ingest, {"reports": [report(severity=0), "x"]}, path="/v1/reports:batch"), 200)
    assert [x["status"] for x in results["results"]] == ["rejected", "rejected"]


def test_batch_needs_a_key(ingest):
    resp = ingest.post("/v1/reports:batch", content=orjson.dumps({"reports": [report()]}),
                       headers={"Content-Type": "application/json"})
    check_problem(resp, 401, "unauthorized")


# --- concurrency -------------------------------------------------------------------------------
async def _fire(base_url: str, requests: list[tuple[str, bytes]]) -> list[httpx.Response]:
    """Send all requests at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as c:
        start = asyncio.Event()

        async def one(path: str, body: bytes) -> httpx.Response:
            await start.wait()
            return await c.post(path, content=body, headers=auth())

        tasks = [asyncio.create_task(one(p, b)) for p, b in requests]
        await asyncio.sleep(0)  # let every task reach the gate
        start.set()
        return await asyncio.gather(*tasks)


def test_identical_requests_at_the_same_instant_are_accepted_once(ingest, bootstrap):
    r = report()
    resps = asyncio.run(_fire(str(ingest.base_url), [("/v1/reports", orjson.dumps(r))] * 20))
    answers = sorted((resp.status_code, check_json(resp, resp.status_code)["status"]) for resp in resps)
    assert answers == [(200, "duplicate")] * 19 + [(202, "accepted")]
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}


def test_overlapping_batches_at_the_same_instant_accept_each_report_once(ingest, bootstrap):
    shared = [report() for _ in range(5)]
    bodies = [orjson.dumps({"reports": shared[i:] + shared[:i]}) for i in range(10)]
    resps = asyncio.run(_fire(str(ingest.base_url), [("/v1/reports:batch", b) for b in bodies]))
    accepted: dict[str, int] = {r["event_id"]: 0 for r in shared}
    for resp in resps:
        for x in check_json(resp, 200)["results"]:
            assert x["status"] in ("accepted", "duplicate")
            accepted[x["event_id"]] += x["status"] == "accepted"
    assert accepted == {r["event_id"]: 1 for r in shared}
    assert copies_on_topic(bootstrap, *shared) == {r["event_id"]: 1 for r in shared}


# --- health, metrics, OpenAPI, stray paths ----------------------------------------------------
def test_healthz_and_readyz(ingest):
    assert check_json(ingest.get("/healthz"), 200) == {"status": "ok"}
    assert check_json(ingest.get("/readyz"), 200) == {"status": "ready"}


def _sample(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in labels.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_accepted_reports(ingest):
    labels = 'source="fkdm-kaltara",path="http"'
    before = ingest.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert "# TYPE pantau_reports_accepted_total counter" in before.text
    check_json(post(ingest, report()), 202)
    after = ingest.get("/metrics").text
    assert _sample(after, "pantau_reports_accepted_total", labels) == \
        _sample(before.text, "pantau_reports_accepted_total", labels) + 1


def test_openapi_describes_both_endpoints_and_the_report_schema(ingest):
    doc = check_json(ingest.get("/openapi.json"), 200)
    assert {"/v1/reports", "/v1/reports:batch"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"event_id", "source", "region_code", "category", "severity", "occurred_at", "title"} == \
        set(schemas["ReportEvent"]["required"])
    body = doc["paths"]["/v1/reports"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ReportEvent"}
    assert {"202", "200", "401", "403", "413", "415", "422", "429", "503"} <= \
        set(doc["paths"]["/v1/reports"]["post"]["responses"])
    # Every reference resolves, so code generators can use the document as it is.
    refs = {m.split("/")[-1] for m in _refs(doc)}
    assert refs and refs <= set(schemas), refs - set(schemas)


def _refs(node: Any):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                assert v.startswith("#/components/schemas/"), v
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


@pytest.mark.parametrize("method, path, status", [("GET", "/v1/reports", 405), ("POST", "/v2/reports", 404),
                                                  ("GET", "/nope", 404)])
def test_stray_requests_get_json_errors(ingest, method, path, status):
    resp = ingest.request(method, path, headers=auth())
    body = check_json(resp, status)
    assert set(body) == {"type", "title", "status", "detail", "errors"} and body["status"] == status


def test_a_burst_wider_than_the_redis_pool_is_accepted_whole(ingest, bootstrap):
    """More requests at once than the gateway has Redis connections (100 by redis-py's
    default): they wait for a connection, none is refused."""
    rs = [report() for _ in range(250)]
    resps = asyncio.run(_fire(str(ingest.base_url), [("/v1/reports", orjson.dumps(r)) for r in rs]))
    assert sorted({resp.status_code for resp in resps}) == [202], [resp.text for resp in resps if resp.status_code != 202][:3]
    assert copies_on_topic(bootstrap, *rs) == {r["event_id"]: 1 for r in rs}
