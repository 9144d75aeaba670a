"""A short run of the whole pipeline on the session's stack (every service as its own
process), then every line any service logged, read back and searched for secrets and
personal data. Runs last in this folder (file order), so the logs it reads also hold
everything the fuzzing and edge tests above sent.

On the way it checks, as an integrator would, with nothing from Pantau's code:
  * the webhook page is signed with HMAC-SHA256 over "<t>.<delivery id>.<raw body>" under
    the channel secret (contract 1.1; a changed body, delivery id or secret does not verify);
  * the one-tap ack link in the page, tampered with (incident, signature, expiry, or the
    payload of one link with the signature of another), acknowledges nothing (403), and the
    genuine link acknowledges its own incident only.
Link expiry against a clock is tested in tests/notify/test_api.py and test_links.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from pathlib import Path

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack
from shared import topics
from services.notify.links import make_token
from tests.notify.peers import Request
from tests.security.conftest import (
    CHAT_ID,
    CONTACT_EMAIL,
    CONTACT_PHONE,
    CONTACT_PHONE_E164,
    HASHED_KEY,
    LINK_SECRET,
    OP_TOKEN,
    OP_TOKEN_HASHED,
    PERSONAL,
    PLAIN_KEY,
    SECRETS,
    SMS_TOKEN,
    WEBHOOK_SECRET,
    Peers,
)
from tests.utils import produce, report

# A reporter's personal data, carried in reports (description, attributes, title of a bad one).
REPORTER = {
    "reporter name": "Andi Wijaya Pratama",
    "reporter NIK": "6571011508950001",
    "reporter phone": "0813-5555-1234",
    "reporter e-mail": "andi.wijaya.pratama@gmail.com",
}
WRONG_KEY = "sec-wrong-key-guess-Pp0oIi9uU"  # a guess a stranger sends: not a secret, but not for logs either
REGION = "65.04"  # Tana Tidung: the fuzzing never reports there, so this incident is new
CATEGORY = "communal_clash"


def personal_text() -> str:
    return (f"Pelapor: {REPORTER['reporter name']}, NIK {REPORTER['reporter NIK']}, "
            f"HP {REPORTER['reporter phone']}, {REPORTER['reporter e-mail']}")


def _post(c: httpx.Client, path: str, body, key: str) -> httpx.Response:
    return c.post(path, content=orjson.dumps(body),
                  headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def receiver_verifies(body: bytes, header: str | None, delivery: str | None, secret: str) -> bool:
    """What a receiver writes from the contract alone (1.1: t, delivery id and body signed)."""
    m = re.fullmatch(r"t=([0-9]+),sha256=([0-9a-f]{64})", header or "")
    if m is None or not delivery:  # (the clock check is tests/pantau/test_webhook.py's)
        return False
    expected = hmac.new(secret.encode(), f"{m.group(1)}.{delivery}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, m.group(2))


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def page_for(peers: Peers, status: str) -> Request | None:
    for r in peers.hook.requests:
        if r.path == "/kab" and r.status is not None and 200 <= r.status < 300:
            b = orjson.loads(r.body)
            if b["region_code"] == REGION and b["category"] == CATEGORY and b["status"] == status:
                return r
    return None


@pytest.fixture(scope="module")
def paged(sec_stack: EmbeddedStack, peers: Peers) -> Request:
    """Reports in (HTTP with both keys, raw Kafka, and refused ones), one page out."""
    ingest = httpx.Client(base_url=f"http://127.0.0.1:{sec_stack.config.ingest.port}", timeout=30)
    notify = httpx.Client(base_url=f"http://127.0.0.1:{sec_stack.config.notify.port}", timeout=30,
                          headers={"Authorization": f"Bearer {OP_TOKEN}"})
    with ingest, notify:
        # Silences left by the fuzzing must not hold this page back.
        for s in notify.get("/v1/silences").json()["silences"]:
            notify.delete(f"/v1/silences/{s['id']}")
        # Failures are where secrets slip into logs (an exception's URL, a provider's error text):
        # the Telegram API fails twice before it takes the page; the SMS gateway and the mail
        # server refuse for good, quoting the recipient back, as real ones do.
        peers.telegram.fail_next(2, 500)
        peers.sms.answer_next(20, 400, orjson.dumps({"error": f"invalid recipient {CONTACT_PHONE_E164} "
                                                              f"({CONTACT_PHONE}) for token {SMS_TOKEN}"}),
                              {"Content-Type": "application/json"})
        peers.smtp.refuse_next(20, f"550 5.1.1 <{CONTACT_EMAIL}>: Recipient address rejected")
        run = f"logs-{time.time_ns()}"
        good = [report(event_id=f"{run}-1", region_code=f"{REGION}.01", category=CATEGORY, severity=5, casualties=2,
                       description=personal_text(), attributes={"pelapor": REPORTER["reporter name"],
                                                                "kontak": REPORTER["reporter phone"]}),
                report(event_id=f"{run}-2", region_code=REGION, category=CATEGORY, severity=3,
                       title=f"Bentrok warga, dilaporkan oleh {REPORTER['reporter name']}")]
        assert _post(ingest, "/v1/reports", good[0], HASHED_KEY).status_code == 202
        assert _post(ingest, "/v1/reports:batch", {"reports": [good[1]]}, HASHED_KEY).json()["results"][0][
            "status"] == "accepted"
        jabar = report(event_id=f"{run}-3", source="bawaslu-jabar", region_code="32.73", description=personal_text())
        assert _post(ingest, "/v1/reports", jabar, PLAIN_KEY).status_code == 202
        # Refused ones, carrying the same personal data: unknown key, out of scope, invalid.
        assert _post(ingest, "/v1/reports", good[0], WRONG_KEY).status_code == 401
        assert _post(ingest, "/v1/reports", {**good[0], "region_code": "32.73"}, HASHED_KEY).status_code == 403
        bad = {**good[0], "event_id": f"{run}-4", "title": personal_text() * 10, "severity": REPORTER["reporter NIK"]}
        assert _post(ingest, "/v1/reports", bad, HASHED_KEY).status_code == 422
        assert notify.get("/v1/incidents", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
        # Over Kafka: one valid, one invalid (to the DLQ), both with personal data.
        raw_ok = orjson.dumps(report(event_id=f"{run}-5", region_code=REGION, description=personal_text()))
        raw_bad = orjson.dumps({"event_id": f"{run}-6", "pelapor": personal_text()})
        asyncio.run(produce(sec_stack.config.kafka.bootstrap_servers, topics.REPORTS_RAW, [raw_ok, raw_bad],
                            key=REGION.encode()))
        # Scoring raises the level (severity 5 with casualties: awas), notify pages.
        peers.hook.wait_for(lambda _: page_for(peers, "triggered") is not None, timeout=120)
        peers.smtp.refusals.wait_for(bool, timeout=60)  # after AUTH: the password was used
        wait_in_log(sec_stack, "notify", lambda text: text.count("dead-lettered") >= 2)
        return page_for(peers, "triggered")  # type: ignore[return-value]


def wait_in_log(stack: EmbeddedStack, service: str, predicate, timeout_s: float = 60) -> None:
    path = Path(stack.logdir) / f"{service}.log"
    deadline = time.monotonic() + timeout_s
    while not predicate(path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service} log never satisfied the condition:\n{path.read_text()[-3000:]}")
        time.sleep(0.2)


def test_the_webhook_page_is_signed_and_a_receiver_verifies_it(paged: Request):
    sig = paged.headers.get("x-pantau-signature")
    delivery = paged.headers.get("x-pantau-delivery")
    assert receiver_verifies(paged.body, sig, delivery, WEBHOOK_SECRET)
    assert not receiver_verifies(paged.body, sig, delivery + "-replayed", WEBHOOK_SECRET)
    body = orjson.loads(paged.body)
    assert body["level"] == "awas" and body["ack_url"]
    tampered = paged.body.replace(b'"awas"', b'"normal"')
    assert tampered != paged.body and not receiver_verifies(tampered, sig, delivery, WEBHOOK_SECRET)
    assert not receiver_verifies(paged.body, sig, delivery, WEBHOOK_SECRET + "x")
    assert not receiver_verifies(paged.body, None, delivery, WEBHOOK_SECRET)


def test_the_ack_link_resists_tampering_and_acks_only_its_incident(paged: Request, notify: httpx.Client):
    op = {"Authorization": f"Bearer {OP_TOKEN}"}
    body = orjson.loads(paged.body)
    token = body["ack_url"].rsplit("/ack/", 1)[1]
    incident = body["incident_id"]
    payload, mac = token.split(".")
    fields = _unb64(payload).split(b"\x1f")
    assert fields[1] == incident.encode()

    def with_field(i: int, v: bytes) -> str:
        f = list(fields)
        f[i] = v
        return _b64(b"\x1f".join(f)) + "." + mac

    # A genuine link for another incident (made as notify makes them), to splice with this one.
    other = "65.71-security_threat-splice"
    other_payload, other_mac = make_token(LINK_SECRET.encode(), other, time.time() + 3600).split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    forged = {
        "another incident": with_field(1, other.encode()),
        "another contact": with_field(2, b"someone-else"),
        "later expiry": with_field(3, str(int(fields[3]) + 86400 * 365).encode()),
        "signature changed": f"{payload}.{flipped}",
        "signature cut": f"{payload}.{mac[:10]}",
        "no signature": f"{payload}.",
        "this payload, the other link's signature": f"{payload}.{other_mac}",
        "the other payload, this link's signature": f"{other_payload}.{mac}",
    }
    for what, t in forged.items():
        resp = notify.post(f"/ack/{t}")
        assert resp.status_code == 403, (what, resp.status_code, resp.text)
        assert resp.json()["type"] in ("urn:pantau:problem:bad_signature", "urn:pantau:problem:malformed"), (what, resp.text)
        page = notify.get(f"/ack/{t}", headers={"Accept": "text/html"})
        assert page.status_code == 403 and "<form" not in page.text, what
    assert notify.get(f"/v1/incidents/{incident}", headers=op).json()["status"] != "acknowledged", \
        "a forged link acknowledged the incident"
    # Opening the genuine link shows one button and acknowledges nothing; pressing it does, once.
    page = notify.get(f"/ack/{token}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert notify.get(f"/v1/incidents/{incident}", headers=op).json()["status"] != "acknowledged"
    first = notify.post(f"/ack/{token}").json()
    assert first["status"] == "acknowledged" and first["id"] == incident
    again = notify.post(f"/ack/{token}").json()
    assert again["acknowledged_at"] == first["acknowledged_at"]


def test_no_secret_or_personal_datum_in_any_log(sec_stack: EmbeddedStack, paged: Request, peers: Peers):
    # Resolve through the API too, so the acknowledged/resolved notices go out and get logged.
    with httpx.Client(base_url=f"http://127.0.0.1:{sec_stack.config.notify.port}", timeout=30,
                      headers={"Authorization": f"Bearer {OP_TOKEN_HASHED}"}) as notify:
        incident = orjson.loads(paged.body)["incident_id"]
        assert notify.post(f"/v1/incidents/{incident}/resolve", json={"note": "kondusif"}).status_code == 200
    peers.hook.wait_for(lambda _: page_for(peers, "resolved") is not None, timeout=60)
    peers.telegram.wait_for(lambda reqs: any(str(CHAT_ID) in r.body.decode("utf-8", "replace") for r in reqs),
                            timeout=30)
    assert not sec_stack.crashed(), sec_stack.crashed()

    logs = sorted(Path(sec_stack.logdir).glob("*.log"))
    names = {p.stem for p in logs}
    assert {"ingest-gateway", "ingest-validator", "scoring", "notify"} <= names, names
    text = {p.name: p.read_bytes().decode("utf-8", "replace") for p in logs}
    assert sum(len(t) for t in text.values()) > 0
    # Every ack token Pantau issued, on every channel: each is a bearer credential.
    sent = [r.body for p in (peers.hook, peers.sms, peers.telegram) for r in p.requests]
    sent += [part for m in peers.smtp.mails.items
             for part in (m.data, m.message.get_payload(decode=True) or b"")]
    # (a MAC of 22 characters: a token cut by an e-mail's line folding is left out, not half-searched)
    tokens = {t for body in sent for t in re.findall(r"/ack/([A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])",
                                                      body.decode("utf-8", "replace").replace("\\/", "/"))}
    assert len(tokens) >= 4, tokens  # pages and notices on the webhook, e-mail, Telegram and SMS
    needles = {**SECRETS, **PERSONAL, **REPORTER, "wrong key a stranger sent": WRONG_KEY,
               "embedded Redis password": sec_stack.redis_password,
               **{f"ack token {t[:12]}...": t for t in tokens}, **{f"ack MAC of {t[:12]}...": t.split(".")[1]
                                                                   for t in tokens}}
    found = [f"{what} ({needle!r}) in {name}" for what, needle in needles.items() for name, t in text.items()
             if needle.lower() in t.lower()]
    assert not found, "leaked into logs:\n" + "\n".join(found)
