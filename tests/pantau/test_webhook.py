"""`pantau.webhook.verify`, the receiver's check of contract 1.1 signatures: a genuine request
passes once; a changed body, delivery id or time, a stale or repeated one is rejected."""

from __future__ import annotations

import pytest

from pantau.webhook import Rejected, SeenDeliveries, check_signature, sign, verify

SECRET = "receiver-test-secret-Hq4Lz8Wm2Xc7Rt"
BODY = b'{"version":"1","incident_id":"65.71-x","status":"triggered"}'
NOW = 1_732_700_000


def rejected(*args, **kw) -> str:
    with pytest.raises(Rejected) as e:
        verify(*args, **kw)
    return e.value.reason


def test_a_genuine_request_passes_once_then_is_a_replay():
    seen = SeenDeliveries()
    header = sign(SECRET, "d1", BODY, NOW)
    assert header.startswith(f"t={NOW},sha256=")
    verify(SECRET, BODY, header, "d1", seen, now=NOW + 3)
    assert rejected(SECRET, BODY, header, "d1", seen, now=NOW + 4) == "replayed"


def test_a_captured_page_under_a_new_delivery_id_fails():
    header = sign(SECRET, "d1", BODY, NOW)
    assert rejected(SECRET, BODY, header, "d2", SeenDeliveries(), now=NOW) == "bad_signature"


def test_the_time_is_signed_and_checked():
    seen = SeenDeliveries()
    header = sign(SECRET, "d1", BODY, NOW)
    assert rejected(SECRET, BODY, header, "d1", seen, now=NOW + 301) == "stale"
    assert rejected(SECRET, BODY, header, "d1", seen, now=NOW - 301) == "stale"
    moved = header.replace(f"t={NOW}", f"t={NOW + 600}")
    assert rejected(SECRET, BODY, moved, "d1", seen, now=NOW + 600) == "bad_signature"
    verify(SECRET, BODY, header, "d1", seen, now=NOW + 300)


@pytest.mark.parametrize("header,delivery", [
    (None, "d1"), ("", "d1"), ("sha256=" + "0" * 64, "d1"), (f"t={NOW},sha256=abc", "d1"),
    (f"t=-5,sha256={'0' * 64}", "d1"), (sign(SECRET, "d1", BODY, NOW), None), (sign(SECRET, "d1", BODY, NOW), ""),
])
def test_malformed_headers_are_rejected(header, delivery):
    assert rejected(SECRET, BODY, header, delivery, SeenDeliveries(), now=NOW) == "malformed"


def test_another_secret_or_body_fails():
    header = sign(SECRET, "d1", BODY, NOW)
    assert rejected("another-secret-entirely-0123456789", BODY, header, "d1", SeenDeliveries(), now=NOW) == "bad_signature"
    assert rejected(SECRET, BODY + b" ", header, "d1", SeenDeliveries(), now=NOW) == "bad_signature"
    assert check_signature(SECRET, BODY, header, "d1") == NOW


def test_seen_ids_are_forgotten_only_after_they_could_no_longer_pass_the_clock():
    seen = SeenDeliveries(tolerance_s=300)
    assert seen.add("old", NOW)
    for i in range(1100):
        seen.add(f"n{i}", NOW + 200)
    assert not seen.add("old", NOW + 250)
    for i in range(1100):
        seen.add(f"m{i}", NOW + 700)
    assert seen.add("old", NOW + 701)
