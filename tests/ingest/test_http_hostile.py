"""Hostile input at the ingest gateway: whatever a publisher sends, the answer is a 4xx (or a
proper 2xx) with a JSON body, never a 5xx and never a stack trace."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest.test_http import check_invalid, check_json, on_topic
from tests.utils import KALTARA_KEY, auth, report

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SINGLE_ANSWERS = {200, 202, 403, 422}
FIELDS = ["event_id", "source", "region_code", "category", "severity", "occurred_at", "title", "description",
          "verified", "casualties", "participants", "location", "attributes", "schema_version"]

# Any JSON value, including what JSON cannot carry faithfully: integers past 64 bits, NaN and
# infinities (sent as the non-standard literals), and lone surrogates.
scalars = (
    st.none() | st.booleans() | st.integers()
    | st.sampled_from([2**53, 2**63, 2**64, -(2**63) - 1, 10**400, -(10**400)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=()), max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
# Values close to valid ones, so that validation gets past the first check.
near_valid = st.sampled_from(["65", "65.71", "65.71.02", "65.71.02.1001", "32.73", "99", "65.", "fkdm-kaltara",
                              "bawaslu-jabar", "other", "communal_clash", "2024-11-27T09:30:00+08:00",
                              "2024-11-27T09:30:00", "9999-12-31T23:59:59Z", 0, 1, 5, -1, 6, {"lat": 3.0, "lon": 117.0},
                              {"lat": 3.0}, {"k": "v"}, {"k": 1}, "", "x" * 201])


@st.composite
def report_like(draw) -> dict:
    """A valid report with some fields replaced by arbitrary values, some dropped, some added."""
    body = report()
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(near_valid | json_values)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        body.pop(field, None)
    body.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=2)))
    return body


def encode(value, ascii_only: bool) -> bytes:
    """JSON text as a sloppy client would write it: Python's encoder (big integers, NaN
    literals) and, without ascii escaping, lone surrogates as invalid UTF-8."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def check_any_answer(resp: httpx.Response, allowed: set[int]) -> dict:
    assert resp.status_code < 500, resp.text[:500]
    assert resp.status_code in allowed, (resp.status_code, resp.text[:500])
    body = check_json(resp, resp.status_code)
    if resp.status_code == 422:
        check_invalid(resp)
    return body


def check_batch_answer(resp: httpx.Response, items) -> None:
    body = check_any_answer(resp, {200, 422})
    if resp.status_code == 200:
        assert isinstance(items, list) and len(body["results"]) == len(items)
        for x in body["results"]:
            assert x["status"] in ("accepted", "duplicate", "rejected")
            assert ("errors" in x) == (x["status"] == "rejected"), x


# --- properties ------------------------------------------------------------------------------
@PROPERTY
@given(value=json_values, ascii_only=st.booleans())
def test_any_json_value_gets_a_json_answer(ingest, value, ascii_only):
    body = encode(value, ascii_only)
    check_any_answer(ingest.post("/v1/reports", content=body, headers=auth()), {422})
    batch = b'{"reports": [' + body + b"]}"
    check_batch_answer(ingest.post("/v1/reports:batch", content=batch, headers=auth()), [value])


@PROPERTY
@given(body=report_like(), ascii_only=st.booleans())
def test_report_with_arbitrary_field_values_gets_a_json_answer(ingest, body, ascii_only):
    resp = ingest.post("/v1/reports", content=encode(body, ascii_only), headers=auth())
    answer = check_any_answer(resp, SINGLE_ANSWERS)
    if resp.status_code in (200, 202):
        assert answer == {"event_id": body["event_id"], "status": "accepted" if resp.status_code == 202 else "duplicate"}


@PROPERTY
@given(items=st.lists(report_like() | json_values, min_size=1, max_size=5), ascii_only=st.booleans())
def test_batch_with_arbitrary_items_answers_each_item(ingest, items, ascii_only):
    resp = ingest.post("/v1/reports:batch", content=encode({"reports": items}, ascii_only), headers=auth())
    check_batch_answer(resp, items)


@PROPERTY
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_get_a_json_answer(ingest, raw):
    check_any_answer(ingest.post("/v1/reports", content=raw, headers=auth()), {422})
    check_any_answer(ingest.post("/v1/reports:batch", content=raw, headers=auth()), {422})


# --- hand-picked -------------------------------------------------------------------------------
def _with(field: str, raw_json: str) -> bytes:
    """A valid report whose `field` is the literal JSON text `raw_json`."""
    r = report(**{field: 0})
    return orjson.dumps(r).replace(f'"{field}":0'.encode(), f'"{field}":{raw_json}'.encode())


DEEP = 10_000


@pytest.mark.parametrize("body", [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    _with("attributes", "[" * DEEP + "]" * DEEP),
], ids=["arrays", "objects", "inside-a-field"])
@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports:batch"])
def test_deeply_nested_json_is_422(ingest, path, body):
    if path.endswith(":batch"):
        body = b'{"reports": [' + body + b"]}"
    errors = check_invalid(ingest.post(path, content=body, headers=auth()))
    assert list(errors) == ["(body)"]


def test_nesting_the_parser_allows_is_named_by_field(ingest):
    errors = check_invalid(ingest.post("/v1/reports", content=_with("attributes", '{"a":' + "[" * 1000 + "]" * 1000 + "}"),
                                       headers=auth()))
    assert list(errors) == ["attributes.a"]


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"caf\xe9", b"\xf4\x90\x80\x80"],
                         ids=["ff-fe", "overlong", "surrogate", "latin-1", "above-u10ffff"])
def test_invalid_utf8_inside_a_string_is_422(ingest, bad):
    body = orjson.dumps(report(title="TITLE")).replace(b"TITLE", bad)
    errors = check_invalid(ingest.post("/v1/reports", content=body, headers=auth()))
    assert list(errors) == ["(body)"] and "invalid JSON" in errors["(body)"]


def test_lone_surrogate_escape_is_422(ingest):
    body = orjson.dumps(report(title="TITLE")).replace(b"TITLE", b"\\ud800")
    assert list(check_invalid(ingest.post("/v1/reports", content=body, headers=auth()))) == ["(body)"]


@pytest.mark.parametrize("field, number, named", [
    ("severity", 10**400, "(body)"),  # beyond a double: not even a JSON number the parser keeps
    ("severity", 2**64, "severity"),
    ("severity", -(2**63) - 1, "severity"),
    ("severity", 2**63 - 1, "severity"),
    ("casualties", 2**53, "casualties"),  # past what JSON readers keep exact
    ("participants", 10**30, "participants"),
], ids=["1e400", "2^64", "-2^63-1", "2^63-1", "casualties-2^53", "participants-1e30"])
def test_huge_integers_are_422(ingest, field, number, named):
    errors = check_invalid(ingest.post("/v1/reports", content=_with(field, str(number)), headers=auth()))
    assert list(errors) == [named]


def test_largest_exact_count_is_accepted(ingest):
    r = report(casualties=2**53 - 1, participants=2**53 - 1)
    assert check_json(ingest.post("/v1/reports", content=orjson.dumps(r), headers=auth()), 202)["status"] == "accepted"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "nan", "inf"])
@pytest.mark.parametrize("field", ["severity", "location"])
def test_nan_and_infinity_are_422(ingest, field, literal):
    raw = literal if field == "severity" else f'{{"lat": {literal}, "lon": 117.0}}'
    errors = check_invalid(ingest.post("/v1/reports", content=_with(field, raw), headers=auth()))
    assert list(errors) == ["(body)"]


def _now_at(hours: int, minutes: float = 0) -> str:
    tz = timezone(timedelta(hours=hours))
    return (datetime.now(tz) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


@pytest.mark.parametrize("occurred_at, status", [
    ("0001-01-01T00:00:00+00:00", 422),  # before 1970: nothing to score, and UTC maths overflows
    ("0001-01-01T00:00:00+23:59", 422),
    ("1970-01-01T00:00:00Z", 202),
    ("9999-12-31T23:59:59+00:00", 422),
    ("9999-12-31T23:59:59.999999-14:00", 422),
    ("0000-01-01T00:00:00Z", 422),
    ("2016-12-31T23:59:60Z", 202),  # RFC 3339 allows a leap second
    ("2024-11-27T09:30:00+14:00", 202),
    ("2024-11-27T09:30:00-12:00", 202),
    ("NOW+14", 202),  # the present, written in the earliest time zone on Earth, is not the future
    ("SOON-12", 202),  # four minutes ahead, in the latest time zone
    ("LATER+14", 422),  # six minutes ahead
    ("2024-11-27T09:30:00+24:00", 422),
    ("2024-11-27t09:30:00z", 202),
    ("2024-11-27 09:30:00+08:00", 202),
    ("2024-11-27T09:30:00.123456789+08:00", 202),
    ("2024-11-27T09:30:00.1234567891234+08:00", 202),  # RFC 3339 sets no limit on digits
    ("2024-11-27T09:30:00+08:00\n", 422),
    ("２０２４-11-27T09:30:00+08:00", 422),  # full-width digits
])
def test_timestamps_at_the_edges(ingest, occurred_at, status):
    occurred_at = {"NOW+14": _now_at(14), "SOON-12": _now_at(-12, 4), "LATER+14": _now_at(14, 6)}.get(
        occurred_at, occurred_at)
    r = report(occurred_at=occurred_at)
    resp = ingest.post("/v1/reports", content=orjson.dumps(r), headers=auth())
    if status == 202:
        assert check_json(resp, 202) == {"event_id": r["event_id"], "status": "accepted"}
    else:
        assert list(check_invalid(resp)) == ["occurred_at"]


TITLES = {
    "indonesian": "Bentrok antarwarga di Kelurahan Karang Anyar Pantai, Tarakan Barat",
    "emoji": "Unjuk rasa 🔥🚨 di depan KPU",
    "cjk": "塔拉坎市 集会 デモ 시위",
    "rtl": "تظاهرة أمام المكتب \u202eevil\u202c",
    "combining": "Ke\u0301rusuhan Z\u0335\u0321a\u0336lgo",
    "zwj": "👨‍👩‍👧‍👦 keluarga",
    "controls": "tab\there\u0000nul\u0007bell",
    "max-emoji": "🔥" * 200,  # 200 characters, 800 bytes: the limit counts characters
}


@pytest.mark.parametrize("title", TITLES.values(), ids=TITLES.keys())
def test_unicode_titles_arrive_unchanged(stack, ingest, title):
    r = report(title=title)
    assert check_json(ingest.post("/v1/reports", content=orjson.dumps(r), headers=auth()), 202)["status"] == "accepted"
    msg = on_topic(stack.config.kafka.bootstrap_servers, r)[r["event_id"]]
    assert orjson.loads(msg.value)["title"] == title


def test_title_of_201_emoji_is_422(ingest):
    errors = check_invalid(ingest.post("/v1/reports", content=orjson.dumps(report(title="🔥" * 201)), headers=auth()))
    assert list(errors) == ["title"]


def test_thousands_of_unknown_fields_are_all_named(ingest):
    extra = {f"f{i}": i for i in range(3000)}
    errors = check_invalid(ingest.post("/v1/reports", content=orjson.dumps({**report(), **extra}), headers=auth()))
    assert set(errors) == set(extra) and set(errors.values()) == {"unknown field"}


# --- raw HTTP that a client library would not send ---------------------------------------------
def _raw(stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", stack.config.ingest.port), timeout=20) as s:
        s.sendall(request)  # no half-close: the server would take it for a client gone away
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _request(headers: list[str], body: bytes = b"{}") -> bytes:
    return ("\r\n".join(["POST /v1/reports HTTP/1.1", "Host: pantau", *headers, "Connection: close", "", ""])
            ).encode("latin-1") + body


def test_declared_length_over_the_limit_is_413_before_the_body_arrives(stack):
    status, headers, body = _raw(stack, _request(
        [f"Authorization: Bearer {KALTARA_KEY}", "Content-Type: application/json",
         "Content-Length: 100000000"]))
    assert status == 413 and headers["content-type"].startswith("application/problem+json")
    assert orjson.loads(body)["type"] == "urn:pantau:problem:too_large"


def test_non_ascii_authorization_is_401(stack):
    status, _, body = _raw(stack, _request(
        ["Authorization: Bearer kunci-\xff\xe9", "Content-Type: application/json", "Content-Length: 2"]))
    assert status == 401 and orjson.loads(body)["type"] == "urn:pantau:problem:unauthorized"


def test_first_of_two_content_types_decides(stack):
    status, _, body = _raw(stack, _request(
        [f"Authorization: Bearer {KALTARA_KEY}", "Content-Type: text/plain", "Content-Type: application/json",
         "Content-Length: 2"], b"{}"))
    assert status == 415 and orjson.loads(body)["type"] == "urn:pantau:problem:unsupported_media_type"
