"""Edge input over HTTP that tests/ingest/test_http_hostile.py does not already send: nesting
far past the parser's limit, numbers with thousands of digits (past Python's own limit for
int() on text), headers and query values of that size, timestamps without an offset or at
the ends of the calendar, unknown regions, and the same against the notify API. Each is a 4xx
that says why, never a 5xx, and the service is still healthy and still takes a good request
afterwards."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack
from tests.security.conftest import HASHED_KEY, OP_TOKEN
from tests.utils import report

WITA = timezone(timedelta(hours=8))
AUTH = {"Authorization": f"Bearer {HASHED_KEY}", "Content-Type": "application/json"}
OP = {"Authorization": f"Bearer {OP_TOKEN}"}
HUGE = "9" * 5000  # past sys.get_int_max_str_digits() (4300): int(HUGE) raises ValueError


def refusal(resp: httpx.Response, *statuses: int) -> dict:
    """A 4xx in `statuses` with a JSON body that names the field or the reason."""
    assert resp.status_code in statuses, (resp.status_code, resp.text[:400])
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert "Traceback" not in resp.text
    body = resp.json()
    assert body["type"] and body["detail"] and body["status"] == resp.status_code, body
    if resp.status_code == 422:
        assert body["errors"] and all(e["field"] and e["message"] for e in body["errors"]), body
    return body


def fields(body: dict) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def _with(field: str, raw_json: str) -> bytes:
    r = report(**{field: 0})
    return orjson.dumps(r).replace(f'"{field}":0'.encode(), f'"{field}":{raw_json}'.encode())


@pytest.fixture(autouse=True)
def still_healthy(sec_stack: EmbeddedStack, ingest: httpx.Client, notify: httpx.Client):
    """After each test: both services alive, ready, and the gateway still accepts a report."""
    yield
    assert {"ingest-gateway", "notify"}.isdisjoint(sec_stack.crashed()), sec_stack.crashed()
    for c in (ingest, notify):
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
    ok = ingest.post("/v1/reports", content=orjson.dumps(report(event_id=f"after-{datetime.now().timestamp()}")),
                     headers=AUTH)
    assert ok.status_code == 202, ok.text


# --- ingest ----------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [1_000, 30_000, 100_000])
@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_deep_nesting(ingest, levels, kind):
    nested = ("[" * levels + "]" * levels) if kind == "arrays" else ('{"a":' * levels + "1" + "}" * levels)
    single = _with("attributes", nested)
    # Over 64 KiB is refused for its size before it is parsed; under it, as JSON too deep.
    body = refusal(ingest.post("/v1/reports", content=single, headers=AUTH), 413, 422)
    if len(single) <= 64 * 1024:
        assert fields(body) and all(f == "(body)" or f.startswith("attributes") for f in fields(body)), body
    batch = b'{"reports": [' + single + b"]}"
    resp = ingest.post("/v1/reports:batch", content=batch, headers=AUTH)
    if resp.status_code == 200:  # the batch parsed; the item is rejected, naming the field
        (item,) = resp.json()["results"]
        assert item["status"] == "rejected" and all(e["field"].startswith("attributes") for e in item["errors"])
    else:
        assert fields(refusal(resp, 422)) == {"(body)"}


@pytest.mark.parametrize("field", ["severity", "casualties", "participants", "location"])
@pytest.mark.parametrize("number", [HUGE, "-" + HUGE, "1" + "0" * 5000, "1e400", "-1e400", "1e-400", f"0.{HUGE}",
                                    f"{HUGE}.5", "1" * 300 + "e-300"])
def test_huge_and_tiny_numbers(ingest, field, number):
    raw = number if field != "location" else f'{{"lat": {number}, "lon": 117.0}}'
    resp = ingest.post("/v1/reports", content=_with(field, raw), headers=AUTH)
    if field == "location" and -11 <= float(number) <= 6.5:
        # A latitude written with 5,000 digits or 1e-400 is still a number inside the box.
        assert resp.status_code == 202, resp.text
        return
    body = refusal(resp, 422)
    assert fields(body) in ({"(body)"}, {field}, {f"{field}.lat"}), body


def test_huge_number_as_a_json_string_is_named(ingest):
    body = refusal(ingest.post("/v1/reports", content=orjson.dumps(report(severity=HUGE)), headers=AUTH), 422)
    assert fields(body) == {"severity"}


@pytest.mark.parametrize("occurred_at", [
    "2024-11-27T09:30:00",  # no offset
    "2024-11-27T09:30",
    "2024-11-27",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+23:59",
    "9999-12-31T23:59:60-23:59",  # a leap second past the end of the calendar in UTC
    "2024-11-27T23:59:61Z",
    "2024-02-30T10:00:00Z",
    "2024-11-27T09:30:00+08:00:00",
    "1969-12-31T23:59:59Z",
    "+2024-11-27T09:30:00Z",
    "-0001-01-01T00:00:00Z",
    "2024-11-27T09:30:00." + "9" * 5000 + "Z",
    HUGE,
])
def test_timestamps_refused_with_the_field_named(ingest, occurred_at):
    body = refusal(ingest.post("/v1/reports", content=orjson.dumps(report(occurred_at=occurred_at)), headers=AUTH),
                   422)
    assert fields(body) == {"occurred_at"}


@pytest.mark.parametrize("occurred_at", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5+00:00",
                                         "2015-07-01T07:59:60+08:00"])
def test_leap_seconds_are_accepted(ingest, occurred_at):
    r = report(occurred_at=occurred_at)
    resp = ingest.post("/v1/reports", content=orjson.dumps(r), headers=AUTH)
    assert resp.status_code == 202, resp.text


@pytest.mark.parametrize("region", ["99", "65.99", "65.71.99", "65.71.02.9999", "00", "6571", "65.71.", "",
                                    "٦٥.٧١", "65.71\u0000", " 65.71", HUGE])
def test_unknown_regions_are_named(ingest, region):
    body = refusal(ingest.post("/v1/reports", content=orjson.dumps(report(region_code=region)), headers=AUTH), 422)
    assert fields(body) == {"region_code"}


def _raw(stack: EmbeddedStack, port: int, head: list[str], body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(("\r\n".join([*head, "Connection: close", "", ""])).encode("latin-1") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_content_length_with_thousands_of_digits(sec_stack):
    """int() on a 5,000-digit header raises ValueError in Python: never a 500."""
    status, body = _raw(sec_stack, sec_stack.config.ingest.port, [
        "POST /v1/reports HTTP/1.1", "Host: pantau", f"Authorization: Bearer {HASHED_KEY}",
        "Content-Type: application/json", f"Content-Length: {HUGE}"])
    assert 400 <= status < 500, (status, body[:300])


def test_authorization_header_of_thousands_of_characters(ingest, notify):
    refusal(ingest.post("/v1/reports", content=orjson.dumps(report()),
                        headers={**AUTH, "Authorization": "Bearer " + "k" * 60_000}), 401)
    refusal(notify.get("/v1/incidents", headers={"Authorization": "Bearer " + "t" * 60_000}), 401)


# --- notify ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{"limit": HUGE}, {"limit": "1e400"}, {"limit": "-" + HUGE},
                                    {"region": HUGE}, {"region": "99"}, {"category": "x" * 5000},
                                    {"status": "\u0000"}])
def test_notify_query_edges(notify, params):
    body = refusal(notify.get("/v1/incidents", params=params, headers=OP), 422)
    assert fields(body) == set(params) or fields(body) == {f"query.{k}" for k in params} or fields(body), body


def _silence(**over) -> dict:
    return {"matchers": {"region": "31"}, "ends_at": (datetime.now(WITA) + timedelta(minutes=5)).isoformat(),
            "reason": "uji batas", **over}


@pytest.mark.parametrize("ends_at", [
    "9999-12-31T23:59:59-14:00",  # a valid time whose UTC instant is in year 10000
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00",
    "2030-01-01T00:00:00",  # no offset
    "2030-02-30T00:00:00Z",
    "2030-01-01T00:00:60Z",
    HUGE,
])
def test_silence_end_at_the_edges_is_refused_or_kept_readable(notify, ends_at):
    resp = notify.post("/v1/silences", json=_silence(ends_at=ends_at), headers=OP)
    if resp.status_code == 201:
        sid = resp.json()["id"]
        assert notify.get("/v1/silences", params={"all": "true"}, headers=OP).status_code == 200
        assert notify.delete(f"/v1/silences/{sid}", headers=OP).status_code == 200
    else:
        assert fields(refusal(resp, 422)) == {"ends_at"}


def test_far_silence_never_breaks_the_list(notify):
    """A silence to the last representable moment can be created, listed and deleted."""
    resp = notify.post("/v1/silences", json=_silence(ends_at="9999-12-31T23:59:59+00:00"), headers=OP)
    assert resp.status_code == 201, resp.text
    assert notify.get("/v1/silences", headers=OP).status_code == 200
    assert notify.delete(f"/v1/silences/{resp.json()['id']}", headers=OP).status_code == 200


@pytest.mark.parametrize("start, end", [
    ("2030-01-01T00:00:00+08:00", "9999-12-31T23:59:59-14:00"),
    ("0001-01-01T00:00:00+14:00", "2030-01-01T00:00:00+08:00"),
    ("2030-01-01T00:00:00", "2030-01-02T00:00:00"),
    (HUGE, HUGE),
])
def test_override_times_at_the_edges(notify, start, end):
    resp = notify.post("/v1/rotations/65.71/overrides", json={"contact": "kab-tarakan", "start": start, "end": end},
                       headers=OP)
    if resp.status_code != 201:
        refusal(resp, 422)
    assert notify.get("/v1/oncall", headers=OP).status_code == 200


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"note": ' + HUGE.encode() + b"}",
    b'{"note": "\xff\xfe"}',
    b'{"note": "\\ud800"}',
])
def test_notify_bodies(notify, raw):
    refusal(notify.post("/v1/incidents/nope/ack", content=raw, headers={**OP, "Content-Type": "application/json"}),
            404, 413, 422)
    refusal(notify.post("/v1/silences", content=raw, headers={**OP, "Content-Type": "application/json"}), 413, 422)
