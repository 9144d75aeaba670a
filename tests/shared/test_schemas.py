"""ReportEvent v1 validation, rule by rule from the contract table: strict types, every
problem named by field, unknown fields refused by name, and no input that makes the
validator raise instead of answering."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.categories import CATEGORIES
from shared.schemas import partition_key, validate_json, validate_obj
from tests.utils import report


def errors(**overrides) -> dict[str, str]:
    """field -> message for a report with `overrides` (`...` removes a field)."""
    r, errs = validate_obj(report(**overrides))
    assert (r is None) == bool(errs)
    return {e["field"]: e["message"] for e in errs}


def ok(**overrides) -> bool:
    return errors(**overrides) == {}


def at(delta: timedelta, tz: timezone = timezone(timedelta(hours=8))) -> str:
    return (datetime.now(tz) + delta).isoformat(timespec="seconds")


def test_a_minimal_report_is_valid_with_defaults():
    r, errs = validate_obj(report())
    assert errs == []
    assert r.verified is False and r.casualties == 0 and r.participants is None


@pytest.mark.parametrize("field", ["event_id", "source", "region_code", "category", "severity", "occurred_at", "title"])
def test_required_fields(field):
    assert errors(**{field: ...}) == {field: "Field required"}


@pytest.mark.parametrize("field", ["description", "verified", "casualties", "participants", "location",
                                   "attributes", "schema_version"])
def test_optional_fields_may_be_left_out(field):
    assert ok(**{field: ...})


# --- event_id and source ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a", "A-z.0_9:x", "x" * 128, "fkdm:2024.11.27-001"])
def test_event_id_valid(value):
    assert ok(event_id=value)


@pytest.mark.parametrize("value", ["", "x" * 129, "a b", "a/b", "é", "a+b", "abc\n", 5, None, ["a"]])
def test_event_id_invalid(value):
    assert "event_id" in errors(event_id=value)


@pytest.mark.parametrize("value", ["fkdm-kaltara", "a", "x" * 64, "0-9"])
def test_source_valid(value):
    assert ok(source=value)


@pytest.mark.parametrize("value", ["", "x" * 65, "FKDM", "fkdm_kaltara", "fkdm.kaltara", "fkdm kaltara", 1])
def test_source_invalid(value):
    assert "source" in errors(source=value)


# --- region_code --------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["65", "65.71", "65.71.02", "65.71.02.1001", "31.71", "91.03"])
def test_region_code_any_level_that_exists(code):
    assert ok(region_code=code)


@pytest.mark.parametrize("code", ["99", "65.99", "65.71.99", "65.71.02.9999"])
def test_region_code_unknown_is_named_as_unknown(code):
    assert errors(region_code=code)["region_code"].startswith("unknown region")


@pytest.mark.parametrize("code", ["6571", "65.7", "65.71.2", "65-71", "", " 65"])
def test_region_code_malformed(code):
    assert "region_code" in errors(region_code=code)


def test_region_code_must_be_a_string():
    assert "region_code" in errors(region_code=65)


# --- category, severity -------------------------------------------------------------------

@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category(category):
    assert ok(category=category)


def test_categories_are_the_closed_contract_list():
    assert set(CATEGORIES) == {"election_dispute", "mass_mobilization", "sara_incitement", "hoax_disinformation",
                               "communal_clash", "land_resource_conflict", "political_violence",
                               "security_threat", "other"}


@pytest.mark.parametrize("value", ["riot", "Election_Dispute", "", 1, None])
def test_category_invalid(value):
    assert "category" in errors(category=value)


@pytest.mark.parametrize("value", [1, 2, 3, 4, 5])
def test_severity_valid(value):
    assert ok(severity=value)


@pytest.mark.parametrize("value", [0, 6, -1, "5", "3", True, False, 3.0, 2.5, None])
def test_severity_strict(value):
    # "5" is not an int, true is not an int, 3.0 is not an int.
    assert "severity" in errors(severity=value)


# --- occurred_at --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "2024-11-27T09:30:00+08:00", "2024-11-27T01:30:00Z", "2024-11-27T01:30:00z", "2024-11-27t09:30:00+08:00",
    "2024-11-27T09:30:00.5+08:00", "2024-11-27T09:30:00.123456789+08:00", "2024-11-26T21:30:00-03:30",
    "1998-05-21T09:00:00+07:00",
])
def test_occurred_at_rfc3339_with_offset(value):
    assert ok(occurred_at=value)


@pytest.mark.parametrize("value", [
    "2024-11-27T09:30:00",  # no offset
    "2024-11-27",  # a date
    "2024-11-27T09:30+08:00",  # no seconds
    "2024-11-27T09:30:00+0800",  # offset without colon
    "20241127T093000Z",  # ISO 8601 basic format
    "2024-11-27T09:30:00 +08:00",
    "2024-02-30T09:30:00+08:00",  # no such day
    "2024-11-27T24:00:00Z",
    "2024-11-27T09:30:00+08:00\n",
    "27/11/2024 09:30",
    "kemarin sore",
    "",
])
def test_occurred_at_invalid(value):
    assert "occurred_at" in errors(occurred_at=value)


@pytest.mark.parametrize("value", [1732671000, 1732671000.5, None, True])
def test_occurred_at_must_be_a_string(value):
    assert "occurred_at" in errors(occurred_at=value)


def test_occurred_at_up_to_5_minutes_in_the_future_is_accepted():
    assert ok(occurred_at=at(timedelta(minutes=4)))
    assert ok(occurred_at=at(timedelta(minutes=4), timezone(timedelta(hours=-10))))


def test_occurred_at_more_than_5_minutes_in_the_future_is_refused():
    assert errors(occurred_at=at(timedelta(minutes=6))) == {"occurred_at": "is more than 5 minutes in the future"}
    assert "occurred_at" in errors(occurred_at=at(timedelta(days=1), timezone.utc))


def test_occurred_at_far_past_is_accepted():
    assert ok(occurred_at=at(timedelta(days=-3650)))


# --- title, description -------------------------------------------------------------------

@pytest.mark.parametrize(("value", "good"), [("x", True), ("x" * 200, True), ("", False), ("x" * 201, False),
                                             (5, False), (None, False)])
def test_title(value, good):
    assert ok(title=value) is good


@pytest.mark.parametrize(("value", "good"), [("", True), ("x" * 5000, True), ("x" * 5001, False), (5, False)])
def test_description(value, good):
    assert ok(description=value) is good


# --- verified, casualties, participants ---------------------------------------------------

@pytest.mark.parametrize(("value", "good"), [(True, True), (False, True), (1, False), (0, False),
                                             ("true", False)])
def test_verified_is_a_strict_boolean(value, good):
    assert ok(verified=value) is good


@pytest.mark.parametrize("field", ["casualties", "participants"])
@pytest.mark.parametrize(("value", "good"), [(0, True), (1, True), (250_000, True), (-1, False), ("1", False),
                                             (True, False), (1.0, False)])
def test_counts_are_non_negative_integers(field, value, good):
    assert ok(**{field: value}) is good


# --- location -----------------------------------------------------------------------------

@pytest.mark.parametrize("loc", [
    {"lat": 3.3, "lon": 117.6}, {"lat": -11, "lon": 94}, {"lat": 6.5, "lon": 141.5}, {"lat": 0, "lon": 120},
])
def test_location_inside_indonesia(loc):
    assert ok(location=loc)


@pytest.mark.parametrize(("loc", "field"), [
    ({"lat": -11.01, "lon": 117.0}, "location.lat"),
    ({"lat": 6.51, "lon": 117.0}, "location.lat"),
    ({"lat": 3.0, "lon": 93.99}, "location.lon"),
    ({"lat": 3.0, "lon": 141.51}, "location.lon"),
    ({"lat": 48.85, "lon": 2.35}, "location.lat"),
    ({"lat": 3.0}, "location.lon"),
    ({"lat": "3.0", "lon": 117.0}, "location.lat"),
    ({"lat": True, "lon": 117.0}, "location.lat"),
    ({"lat": 3.0, "lon": 117.0, "alt": 10}, "location.alt"),
    ([3.0, 117.0], "location"),
])
def test_location_invalid(loc, field):
    assert field in errors(location=loc)


# --- attributes, schema_version -----------------------------------------------------------

def test_attributes_limits():
    assert ok(attributes={f"k{i}": "v" * 500 for i in range(32)})
    assert "attributes" in errors(attributes={f"k{i}": "v" for i in range(33)})
    assert "attributes" in errors(attributes={"k": "v" * 501})
    assert "attributes.k" in errors(attributes={"k": 1})
    assert "attributes" in errors(attributes=["k"])


@pytest.mark.parametrize(("value", "good"), [(1, True), (2, False), (0, False), ("1", False), (True, False),
                                             (1.0, False)])
def test_schema_version_must_be_1(value, good):
    assert ok(schema_version=value) is good


# --- unknown fields, several problems, parsing --------------------------------------------

def test_unknown_fields_are_refused_by_name():
    assert errors(kecamatan="Tarakan Barat", Severity=3) == {"kecamatan": "unknown field", "Severity": "unknown field"}


def test_every_problem_is_reported():
    errs = errors(event_id="", severity="5", category="riot", occurred_at="kemarin", title=..., verified="ya",
                  casualties=-1, location={"lat": 99, "lon": 0}, extra=1)
    assert set(errs) == {"event_id", "severity", "category", "occurred_at", "title", "verified", "casualties",
                         "location.lat", "location.lon", "extra"}


def test_errors_do_not_echo_the_input():
    secret = "Nama pelapor: Budi, NIK 6571020101010001"
    _, errs = validate_obj(report(title=secret * 10, description=5, verified=secret))
    assert secret not in json.dumps(errs)


@pytest.mark.parametrize("payload", [b"", b"{", b"{'a': 1}", b'{"title": "\xff"}', b"\xc3\x28", b"[" * 5000,
                                     b'{"a": NaN}', b'"\\ud800"'])
def test_validate_json_invalid_json(payload):
    r, errs = validate_json(payload)
    assert r is None and errs[0]["field"] == "(body)" and errs[0]["message"].startswith("invalid JSON")


@pytest.mark.parametrize("payload", [b"[]", b"null", b"42", b'"report"', b"true"])
def test_validate_json_non_object(payload):
    assert validate_json(payload) == (None, [{"field": "(body)", "message": "must be a JSON object"}])


def test_validate_json_good():
    r, errs = validate_json(json.dumps(report(), ensure_ascii=False).encode())
    assert errs == [] and r is not None


@pytest.mark.parametrize(("code", "key"), [("65", "65"), ("65.71", "65.71"), ("65.71.02", "65.71"),
                                           ("65.71.02.1001", "65.71"), ("65.01.01.1001", "65.01")])
def test_partition_key_is_the_kabupaten_kota(code, key):
    assert partition_key(code) == key


# --- property: the validator answers, it never raises --------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["event_id", "source", "region_code", "category", "severity", "occurred_at", "title", "description",
          "verified", "casualties", "participants", "location", "attributes", "schema_version", "lat"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON | st.just(...), max_size=4))
def test_mutated_reports_are_answered_not_raised(changes):
    r, errs = validate_obj(report(**changes))
    assert (r is None) == bool(errs)
    assert all(set(e) == {"field", "message"} and isinstance(e["field"], str) and e["message"] for e in errs)
    if r is not None:
        # What is accepted dumps to JSON that validates again to the same report.
        assert validate_json(r.model_dump_json(exclude_none=True).encode()) == (r, [])


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_are_answered_not_raised(payload):
    r, errs = validate_json(payload)
    assert (r is None) == bool(errs)
