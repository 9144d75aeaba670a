"""Each channel against a real peer on loopback: what goes over the wire, how every kind of
answer maps onto (ok, retry, reason), and that no secret ever reaches a result or a log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs

import pytest

from cli.stack import free_port
from pantau.webhook import Rejected, SeenDeliveries, verify as webhook_verify
from services.notify.channels import REGISTRY, ChannelSet, Reason, build_channels
from services.notify.channels.base import REASONS, Result, status_result
from services.notify.messages import render_text, webhook_body
from shared.channels_config import CHANNEL_TYPES, ContactConfig, channel_config
from shared.config import ConfigError, parse
from tests.notify.conftest import (
    BOT_TOKEN,
    CHAT_ID,
    SLACK_PATH,
    SMS_TOKEN,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
    contact,
    email_cfg,
    notice,
    run,
    slack_cfg,
    sms_cfg,
    telegram_cfg,
    webhook_cfg,
)
from tests.notify.peers import Answer, HttpReceiver, SmtpServer, TelegramBotApi

# aiosmtpd warns that AUTH without TLS is unsafe; these servers live on loopback for a test.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SECRETS = (WEBHOOK_SECRET, BOT_TOKEN, BOT_TOKEN.split(":")[1], SMTP_PASSWORD, SMS_TOKEN, SLACK_PATH)
PERSON = ("Budi Santoso", "6571011508950001", "0812-3456-7890", "budi.santoso@gmail.com")


async def send_once(cfg: dict[str, Any], target: dict[str, Any] | None = None, delivery_id: str = "d-0001",
                    **notice_kw: Any) -> Result:
    channels = build_channels([cfg])
    try:
        c = ContactConfig(**(target or contact()))
        return await channels[cfg["id"]].send(c, notice(**notice_kw), delivery_id)
    finally:
        await channels.aclose()


# --------------------------------------------------------------------------- config

CONFIG = """
contacts:
  - id: kesbangpol-tarakan
    name: Koordinator Tarakan
    telegram_chat_id: 123456789
    email: piket@kesbangpol.tarakankota.go.id
    phone: "0812-9876-5432"
  - id: prov-kaltara
    name: Piket Provinsi
    language: en
    phone: "+62 811 5432 1098"
channels:
  - {id: hook, type: webhook, url: "https://siaga.kaltaraprov.go.id/pantau", secret: "${HOOK_SECRET}"}
  - {id: cap-bpbd, type: cap, url: "https://cap.kaltaraprov.go.id/in", secret: "${HOOK_SECRET}"}
  - {id: mail, type: email, host: smtp.kaltaraprov.go.id, username: pantau, password: "${SMTP_PASSWORD}",
     sender: "Pantau <pantau@kaltaraprov.go.id>"}
  - {id: tg, type: telegram, bot_token: "${BOT_TOKEN}", max_attempts: 8}
  - {id: slack, type: slack, webhook_url: "${SLACK_URL}"}
  - id: sms
    type: sms
    url: https://sms.example.co.id/send
    body_template: '{{"to": "{to}", "text": "{text}"}}'
    headers: {Authorization: "Bearer ${SMS_TOKEN}"}
"""
ENV = {"HOOK_SECRET": WEBHOOK_SECRET, "SMTP_PASSWORD": SMTP_PASSWORD, "BOT_TOKEN": BOT_TOKEN,
       "SLACK_URL": f"https://hooks.slack.com/{SLACK_PATH}", "SMS_TOKEN": SMS_TOKEN}


def test_config_builds_every_channel_type_from_the_config_file() -> None:
    config = parse(CONFIG, env=ENV)
    channels = build_channels(config.channels)
    try:
        assert {c.type for c in channels.values()} == set(CHANNEL_TYPES) == set(REGISTRY)
        assert channels["tg"].config.max_attempts == 8
        assert channels["tg"].config.base_url == "https://api.telegram.org"
        assert channels["sms"].config.max_chars == 160
        # Secrets are there for use, and absent from every printed form.
        assert channels["hook"].config.secret.get_secret_value() == WEBHOOK_SECRET
        for ch in channels.values():
            for s in SECRETS:
                assert s not in repr(ch.config) and s not in str(ch.config)
    finally:
        run(channels.aclose())


def test_contacts_are_typed_and_phone_numbers_normalised() -> None:
    from shared.channels_config import contact_configs

    a, b = contact_configs(parse(CONFIG, env=ENV).contacts)
    assert (a.language, a.phone, a.telegram_chat_id) == ("id", "+6281298765432", 123456789)
    assert (b.language, b.phone) == ("en", "+6281154321098")


@pytest.mark.parametrize("item, words", [
    ({"id": "x", "type": "webhook", "url": "https://a.go.id", "secret": WEBHOOK_SECRET, "timout_s": 3}, "timout_s"),
    ({"id": "x", "type": "pager", "url": "https://a.go.id"}, "pager"),
    ({"id": "x", "type": "webhook", "url": "https://a.go.id", "secret": "short"}, "32 bytes"),
    ({"id": "x", "type": "webhook", "url": "ftp://a.go.id", "secret": WEBHOOK_SECRET}, "http"),
    ({"id": "x", "type": "telegram", "bot_token": "not-a-token"}, "Telegram bot token"),
    ({"id": "x", "type": "sms", "url": "https://g.id", "body_template": "to={to}"}, "{text}"),
    ({"id": "x", "type": "sms", "url": "https://g.id", "body_template": "to={to}&m={txt}"}, "{txt}"),
    ({"id": "x", "type": "sms", "url": "https://g.id", "body_template": '{"to": "{to}"}'}, "format string"),
    ({"id": "x", "type": "email", "host": "h", "sender": "a@b.id", "username": "u"}, "password"),
    ({"id": "x", "type": "slack", "webhook_url": "https://h.id/x", "backoff_initial_s": 9, "backoff_max_s": 1},
     "backoff_max_s"),
])
def test_bad_channel_config_is_named(item: dict[str, Any], words: str) -> None:
    with pytest.raises(Exception) as e:
        channel_config(item)
    assert words in str(e.value)


def test_bad_config_file_names_the_key() -> None:
    text = CONFIG.replace("max_attempts: 8", "max_atempts: 8")
    with pytest.raises(ConfigError) as e:
        build_channels(parse(text, env=ENV).channels)
    assert "max_atempts" in str(e.value)


def test_telegram_chat_ids_take_every_usual_form() -> None:
    assert ContactConfig(id="g", name="Grup", telegram_chat_id="-1001234567890").telegram_chat_id == -1001234567890
    assert ContactConfig(id="c", name="Kanal", telegram_chat_id="@pantau_kaltara").telegram_chat_id == "@pantau_kaltara"
    with pytest.raises(ValueError, match="@channelname"):
        ContactConfig(id="x", name="X", telegram_chat_id="pantau")


@pytest.mark.parametrize("phone", ["0812-34", "+62 999", "12345"])
def test_bad_phone_is_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        ContactConfig(id="a", name="A", phone=phone)


# --------------------------------------------------------------------------- the shared rule


def test_a_cookie_one_receiver_sets_is_never_sent_back(receiver: HttpReceiver) -> None:
    """The channels share one HTTP client: a Set-Cookie from one endpoint must not ride along
    on the next page (to that endpoint or another)."""
    receiver.answer_next(1, 200, b"ok", {"Set-Cookie": "session=abc; Path=/"})

    async def twice() -> None:
        channels = build_channels([webhook_cfg(receiver.url + "/hook")])
        try:
            for did in ("d-1", "d-2"):
                assert (await channels["kaltara-webhook"].send(ContactConfig(**contact()), notice(), did)).ok
        finally:
            await channels.aclose()

    run(twice())
    assert [r.headers.get("cookie") for r in receiver.requests] == [None, None]


@pytest.mark.parametrize("code, reason, retry", [
    (200, "ok", False), (202, "ok", False), (204, "ok", False),
    (500, "server_error", True), (502, "server_error", True), (503, "server_error", True),
    (429, "rate_limited", True), (401, "auth_error", False), (403, "auth_error", False),
    (400, "client_error", False), (404, "client_error", False), (410, "client_error", False),
    (301, "client_error", False),
])
def test_webhook_answer_maps_by_the_shared_rule(receiver: HttpReceiver, code: int, reason: str, retry: bool) -> None:
    receiver.answer_next(1, code, b"{}", {"Location": "https://elsewhere.example"} if code == 301 else None)
    result = run(send_once(webhook_cfg(receiver.url + "/hook")))
    assert (result.ok, result.reason.value, result.retry) == (code < 300, reason, retry)
    assert result == status_result(code)
    assert result.reason.value in REASONS


def test_retry_after_header_is_passed_on(receiver: HttpReceiver) -> None:
    receiver.answer_next(1, 429, b"slow down", {"Retry-After": "7"})
    result = run(send_once(webhook_cfg(receiver.url)))
    assert (result.reason, result.retry, result.retry_after_s) == (Reason.rate_limited, True, 7.0)


def test_connection_refused_is_a_retryable_connection_error() -> None:
    result = run(send_once(webhook_cfg(f"http://127.0.0.1:{free_port()}/hook")))
    assert (result.ok, result.retry, result.reason) == (False, True, Reason.connection_error)


def test_no_answer_in_time_is_a_retryable_timeout(receiver: HttpReceiver) -> None:
    release = receiver.hold_next()
    try:
        result = run(send_once(webhook_cfg(receiver.url, timeout_s=0.3)))
    finally:
        release.set()
    assert (result.ok, result.retry, result.reason) == (False, True, Reason.timeout)


# --------------------------------------------------------------------------- webhook


def test_webhook_body_is_the_contract_json_and_its_signature_verifies(receiver: HttpReceiver) -> None:
    n = notice()
    assert run(send_once(webhook_cfg(receiver.url + "/pantau"), delivery_id="abc123")).ok
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", "/pantau")
    assert req.body == webhook_body(n)
    assert list(json.loads(req.body)) == ["version", "incident_id", "status", "level", "region_code", "region_name",
                                          "category", "step", "summary", "reasons", "report_ids", "ack_url",
                                          "opened_at", "updated_at"]
    assert json.loads(req.body)["version"] == "1"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-pantau-delivery"] == "abc123"
    assert req.signed_by(WEBHOOK_SECRET)
    assert not req.signed_by("another-secret-0123456789")
    assert not req.signed_by(WEBHOOK_SECRET, req.body.replace(b"siaga", b"awas"))


def test_a_captured_page_replayed_under_a_new_delivery_id_fails_verify(receiver: HttpReceiver) -> None:
    assert run(send_once(webhook_cfg(receiver.url + "/pantau"), delivery_id="d-first")).ok
    (req,) = receiver.requests
    header = req.headers["x-pantau-signature"]
    t, mac = re.fullmatch(r"t=([0-9]+),sha256=([0-9a-f]{64})", header).groups()
    assert mac == hmac.new(WEBHOOK_SECRET.encode(), f"{t}.d-first.".encode() + req.body, hashlib.sha256).hexdigest()
    seen = SeenDeliveries()
    webhook_verify(WEBHOOK_SECRET, req.body, header, "d-first", seen)
    with pytest.raises(Rejected) as e:
        webhook_verify(WEBHOOK_SECRET, req.body, header, "d-replayed", seen)
    assert e.value.reason == "bad_signature"
    with pytest.raises(Rejected) as e:
        webhook_verify(WEBHOOK_SECRET, req.body, header, "d-first", seen)
    assert e.value.reason == "replayed"


def test_webhook_goes_to_the_contacts_own_endpoint_when_set(receiver: HttpReceiver) -> None:
    assert run(send_once(webhook_cfg("http://127.0.0.1:9/never"), contact(webhook=receiver.url + "/own"))).ok
    assert [r.path for r in receiver.requests] == ["/own"]


def test_webhook_can_mask_personal_data(receiver: HttpReceiver) -> None:
    assert run(send_once(webhook_cfg(receiver.url, mask_pii=True))).ok
    (req,) = receiver.requests
    body = json.loads(req.body)
    assert body["region_name"] == "Kota Tarakan" and "6571********0001" in body["summary"]
    assert not any(p in req.body.decode() for p in PERSON)
    assert req.signed_by(WEBHOOK_SECRET)


# --------------------------------------------------------------------------- telegram


def test_telegram_sends_masked_indonesian_text(telegram: TelegramBotApi) -> None:
    assert run(send_once(telegram_cfg(telegram.url))).ok
    ((chat, text),) = telegram.sent.items
    (req,) = telegram.requests
    assert set(req.json()) == {"chat_id", "text"} and req.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert chat == CHAT_ID
    assert "Pengerahan massa" in text and "Konfirmasi: https://pantau.kaltaraprov.go.id/ack/" in text
    assert not any(p in text for p in PERSON)


def test_telegram_flood_control_is_rate_limited_with_retry_after(telegram: TelegramBotApi) -> None:
    telegram.flood_next(1, retry_after=17)
    result = run(send_once(telegram_cfg(telegram.url)))
    assert (result.ok, result.retry, result.reason, result.retry_after_s) == (False, True, Reason.rate_limited, 17.0)
    assert telegram.sent.items == []


def test_telegram_unknown_chat_is_a_client_error(telegram: TelegramBotApi) -> None:
    result = run(send_once(telegram_cfg(telegram.url), contact(telegram_chat_id=42)))
    assert (result.retry, result.reason) == (False, Reason.client_error)
    # Telegram's description is provider text: only its code goes to the timeline and logs.
    assert result.detail == "Telegram 400" and "chat not found" not in result.detail


def test_telegram_wrong_token_is_an_auth_error_without_the_token(telegram: TelegramBotApi) -> None:
    wrong = "7712345678:AAH-someOtherTokenThatIsWrong"
    result = run(send_once(telegram_cfg(telegram.url, bot_token=wrong)))
    assert (result.retry, result.reason) == (False, Reason.auth_error)
    assert wrong not in repr(result) and wrong.split(":")[1] not in repr(result)


def test_contact_without_an_address_for_the_channel_is_a_client_error(telegram: TelegramBotApi) -> None:
    result = run(send_once(telegram_cfg(telegram.url), contact(telegram_chat_id=None)))
    assert (result.ok, result.retry, result.reason) == (False, False, Reason.client_error)
    assert "telegram_chat_id" in result.detail and telegram.requests == []


# --------------------------------------------------------------------------- e-mail


def test_email_is_plain_text_with_subject_and_stable_message_id(smtp: SmtpServer) -> None:
    assert run(send_once(email_cfg(smtp.port), delivery_id="d-mail-1")).ok
    (mail,) = smtp.received
    msg = mail.message
    assert mail.rcpt_tos == ["piket@kesbangpol.tarakankota.go.id"] and mail.mail_from == "pantau@kaltaraprov.go.id"
    assert msg["Subject"] == "[SIAGA] Kota Tarakan: Pengerahan massa (BARU)"
    assert msg["Message-ID"] == "<d-mail-1@kaltaraprov.go.id>" and msg["X-Pantau-Delivery"] == "d-mail-1"
    assert msg.get_content_type() == "text/plain"
    body = msg.get_payload(decode=True).decode()
    assert "Alasan:" in body and "14:05 WITA" in body and "https://pantau.kaltaraprov.go.id/ack/" in body
    assert not any(p in body for p in PERSON)


def test_email_in_english_for_an_english_speaking_contact(smtp: SmtpServer) -> None:
    assert run(send_once(email_cfg(smtp.port), contact(language="en"))).ok
    msg = smtp.received[0].message
    assert msg["Subject"] == "[SIAGA] Kota Tarakan: Mass mobilisation (NEW)"
    assert "Acknowledge: https://" in msg.get_payload(decode=True).decode()


@pytest.mark.parametrize("reply, reason, retry", [
    ("451 4.3.0 Try again later", Reason.server_error, True),
    ("452 4.3.1 Insufficient system storage", Reason.server_error, True),
    ("554 5.7.1 Message rejected", Reason.client_error, False),
])
def test_smtp_refusals_map_to_reasons(smtp: SmtpServer, reply: str, reason: Reason, retry: bool) -> None:
    smtp.refuse_next(1, reply)
    result = run(send_once(email_cfg(smtp.port)))
    assert (result.ok, result.reason, result.retry) == (False, reason, retry)
    assert result.detail == f"SMTP {reply[:3]}" and smtp.received == []


def test_smtp_login_and_wrong_password() -> None:
    server = SmtpServer(credentials=("pantau", SMTP_PASSWORD))
    try:
        good = run(send_once(email_cfg(server.port, username="pantau", password=SMTP_PASSWORD)))
        bad = run(send_once(email_cfg(server.port, username="pantau", password="wrong-" + SMTP_PASSWORD)))
        anonymous = run(send_once(email_cfg(server.port)))
    finally:
        server.close()
    assert good.ok and len(server.received) == 1
    assert (bad.ok, bad.retry, bad.reason) == (False, False, Reason.auth_error)
    assert SMTP_PASSWORD not in repr(bad)
    assert (anonymous.ok, anonymous.reason) == (False, Reason.auth_error)


def test_smtp_connection_refused_is_retryable() -> None:
    result = run(send_once(email_cfg(free_port())))
    assert (result.ok, result.retry, result.reason) == (False, True, Reason.connection_error)


# --------------------------------------------------------------------------- slack and sms


def test_slack_payload_is_text_only_with_control_characters_escaped(receiver: HttpReceiver) -> None:
    n_kw = dict(reasons=["laporan <penting> & mendesak"])
    assert run(send_once(slack_cfg(receiver.url), **n_kw)).ok
    (req,) = receiver.requests
    assert req.path == "/" + SLACK_PATH and req.headers["content-type"] == "application/json"
    payload = req.json()
    assert set(payload) == {"text"}
    assert "laporan &lt;penting&gt; &amp; mendesak" in payload["text"]
    assert payload["text"].endswith("Konfirmasi: https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")
    assert not any(p in payload["text"] for p in PERSON)


def test_sms_gateway_gets_the_templated_json_body(receiver: HttpReceiver) -> None:
    assert run(send_once(sms_cfg(receiver.url), delivery_id="d-sms-1", reasons=['ada "kutipan" di sini\\'])).ok
    (req,) = receiver.requests
    assert (req.method, req.path) == ("POST", "/api/v1/messages")
    assert req.headers["authorization"] == f"Bearer {SMS_TOKEN}"
    assert req.headers["content-type"] == "application/json"
    payload = req.json()  # valid JSON although the text holds quotes and a backslash
    assert payload["to"] == "+6281298765432" and payload["ref"] == "d-sms-1"
    assert len(payload["message"]) <= 160 and payload["message"].isascii()
    assert payload["message"].endswith("Konfirmasi: https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")
    assert payload["message"] == render_text(notice(reasons=['ada "kutipan" di sini\\']), max_chars=160)


def test_sms_gateway_form_and_get_variants(receiver: HttpReceiver) -> None:
    form = sms_cfg(receiver.url, encoding="form", body_template="phone={to_digits}&msg={text}", max_chars=120)
    get = sms_cfg(receiver.url, method="GET", body_template="target={to}&message={text}&key=abc")
    assert run(send_once(form)).ok and run(send_once(get, contact(language="en"))).ok
    post, query = receiver.requests
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(post.body.decode())
    assert fields["phone"] == ["6281298765432"] and len(fields["msg"][0]) <= 120
    assert query.method == "GET" and query.body == b""
    assert query.query["target"] == ["+6281298765432"] and query.query["key"] == ["abc"]
    assert query.query["message"][0].startswith("SIAGA Kota Tarakan: Mass mobilisation.")


# --------------------------------------------------------------------------- secrets


def _failing_setups(receiver: HttpReceiver, telegram: TelegramBotApi, smtp_auth: SmtpServer) -> list[tuple[str, Any]]:
    dead = f"http://127.0.0.1:{free_port()}"
    return [
        ("webhook refused", webhook_cfg(dead)),
        ("webhook 500", webhook_cfg(receiver.url + "/fail")),
        ("webhook timeout", webhook_cfg(receiver.url + "/hold", timeout_s=0.3)),
        ("telegram refused", telegram_cfg(dead)),
        ("telegram 401", telegram_cfg(telegram.url, bot_token=BOT_TOKEN + "x")),
        ("telegram 500", telegram_cfg(receiver.url + "/fail")),
        ("telegram timeout", telegram_cfg(receiver.url + "/hold", timeout_s=0.3)),
        ("email refused", email_cfg(free_port(), username="pantau", password=SMTP_PASSWORD)),
        ("email 535", email_cfg(smtp_auth.port, username="pantau", password=SMTP_PASSWORD)),
        ("slack refused", slack_cfg(dead)),
        ("slack 500", slack_cfg(receiver.url + "/fail")),
        ("sms refused", sms_cfg(dead)),
        ("sms 500", sms_cfg(receiver.url + "/fail")),
        ("sms key in url", sms_cfg(dead, url=f"{dead}/send?api_key={SMS_TOKEN}")),
    ]


def test_no_secret_in_any_result_or_log_line(receiver: HttpReceiver, telegram: TelegramBotApi,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Every channel, failing every way it can, says nothing that contains a secret."""
    caplog.set_level(logging.DEBUG)
    smtp_auth = SmtpServer(credentials=("pantau", "the-real-password-0000"))

    def plan(req: Any) -> Answer:
        return Answer(500, b"upstream down") if "/fail" in req.path else Answer()

    receiver.respond = plan  # type: ignore[method-assign]
    try:
        results = []
        for name, cfg in _failing_setups(receiver, telegram, smtp_auth):
            if name.endswith("timeout"):
                receiver.hold_next()
            results.append((name, run(send_once(cfg))))
    finally:
        smtp_auth.close()
    for name, result in results:
        assert not result.ok, name
        text = f"{result!r} {result.detail}"
        for s in SECRETS:
            assert s not in text, f"{name} leaks a secret: {text}"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for s in SECRETS:
        assert s not in logged
    assert {r.reason for _, r in results} >= {Reason.connection_error, Reason.server_error, Reason.timeout,
                                              Reason.auth_error}


def test_redaction_covers_url_encoded_forms() -> None:
    from services.notify.channels.base import redact

    assert redact(f"GET /x?k={BOT_TOKEN.replace(':', '%3A')} and {BOT_TOKEN}", [BOT_TOKEN]) == "GET /x?k=*** and ***"


def test_channel_set_is_a_mapping_that_closes_its_client() -> None:
    channels: ChannelSet = build_channels([webhook_cfg("http://127.0.0.1:9"), slack_cfg("http://127.0.0.1:9")])
    assert sorted(channels) == ["kaltara-webhook", "slack"] and len(channels) == 2
    run(channels.aclose())
    assert channels.http.is_closed
    with pytest.raises(ValueError, match="twice"):
        build_channels([webhook_cfg("http://127.0.0.1:9"), webhook_cfg("http://127.0.0.1:9")])
