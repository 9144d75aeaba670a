"""Signed ack links: genuine, expiring, bound to one incident, tamper-evident, short."""

from __future__ import annotations

import base64

import pytest

from services.notify.links import LinkError, LinkMaker, epoch_of, make_token, verify

SECRET = b"k" * 32


def test_a_token_verifies_until_it_expires():
    t = make_token(SECRET, "65.71-election_dispute-20241127T010000-ab12", expires_at=2000, contact="budi")
    claim = verify(SECRET, t, now=1999.0)
    assert (claim.incident_id, claim.contact, claim.expires_at) == ("65.71-election_dispute-20241127T010000-ab12", "budi", 2000)
    with pytest.raises(LinkError) as e:
        verify(SECRET, t, now=2000.0)
    assert e.value.reason == "expired"


def test_a_token_for_incident_a_cannot_ack_b():
    t = make_token(SECRET, "A", expires_at=2000)
    assert verify(SECRET, t, 0, incident_id="A").incident_id == "A"
    with pytest.raises(LinkError) as e:
        verify(SECRET, t, 0, incident_id="B")
    assert e.value.reason == "wrong_incident"


def test_rewriting_the_payload_to_name_another_incident_breaks_the_signature():
    t = make_token(SECRET, "A", expires_at=2000, nonce=b"123456")
    _, mac = t.split(".")
    forged_payload = base64.urlsafe_b64encode("1\x1fB\x1f\x1f2000\x1fMTIzNDU2".encode()).rstrip(b"=").decode()
    with pytest.raises(LinkError) as e:
        verify(SECRET, f"{forged_payload}.{mac}", 0)
    assert e.value.reason == "bad_signature"


def test_a_later_expiry_cannot_be_forged():
    t = make_token(SECRET, "A", expires_at=2000, nonce=b"123456")
    payload = base64.urlsafe_b64decode(t.split(".")[0] + "==").replace(b"2000", b"9999")
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + t.split(".")[1]
    with pytest.raises(LinkError) as e:
        verify(SECRET, forged, 0)
    assert e.value.reason == "bad_signature"


def test_another_secret_does_not_verify():
    t = make_token(SECRET, "A", expires_at=2000)
    with pytest.raises(LinkError) as e:
        verify(b"other" * 8, t, 0)
    assert e.value.reason == "bad_signature"


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "!!!.???", "x" * 2000, "YQ.YQ"])
def test_malformed_tokens_are_refused_without_exceptions_leaking(junk):
    with pytest.raises(LinkError) as e:
        verify(SECRET, junk, 0)
    assert e.value.reason in ("malformed", "bad_signature")


def test_tokens_are_unique_url_safe_and_short():
    m = LinkMaker(SECRET, "https://pantau.example.go.id", ttl_s=86400)
    a, b = m.url("65.71-election_dispute-20241127T010000-ab12", 0, "budi"), m.url("65.71-election_dispute-20241127T010000-ab12", 0, "budi")
    assert a != b  # a fresh nonce each time
    token = a.rsplit("/", 1)[1]
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(a) < 160
    assert m.verify(token, 86399).contact == "budi"


def test_a_link_carries_its_epoch_and_the_claim_says_it():
    m = LinkMaker(SECRET, "https://pantau.example.go.id", 3600)
    url = m.url("A", 0, "budi", epoch=3)
    assert epoch_of(url) == 3 and m.verify(url.rsplit("/", 1)[1], 1).epoch == 3
    assert epoch_of("https://x/ack/garbage") is None and epoch_of("") is None
