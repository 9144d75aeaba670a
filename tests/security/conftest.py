"""One embedded stack for the security tests: broker, Redis, the ingest gateway and
validator, scoring and notify as child processes, wired to real protocol peers on loopback
(a webhook receiver, an SMTP server that requires a password, a Telegram Bot API and an SMS
gateway), with every kind of secret and personal datum the config can hold, so that the last
test can read every log line the session produced and look for them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cli.stack import EmbeddedStack, free_port
from shared.config import sha256_hex
from tests.notify.peers import HttpReceiver, SmtpServer, TelegramBotApi
from tests.utils import stack_sections

# Secrets. Each one is long and distinctive, so finding it in a log cannot be a coincidence.
HASHED_KEY = "sec-key-kaltara-hashed-Q7f3LmZp"  # configured only as its sha256
PLAIN_KEY = "sec-key-jabar-plain-W2v9KdRx"  # configured in plain text
OP_TOKEN = "sec-optoken-plain-N4c8TyHs"
OP_TOKEN_HASHED = "sec-optoken-hashed-B6j1PuGe"
WEBHOOK_SECRET = "sec-whsec-Vb82kQmX0pLz7RtY-Gh4nWs9c"
SMTP_USER = "pantau-mailer"
SMTP_PASSWORD = "sec-smtp-pass-Hn5sWq3Ec"
BOT_TOKEN = "5512345678:AAsecBotTokenZx81Lq_pYt"
SMS_TOKEN = "sec-sms-token-Jm4Rz7Ko2"
LINK_SECRET = "sec-link-secret-Fd93hLx0qWe5TzNc"
CHAT_ID = 987654321
# Personal data of the coordinator being paged and of reporters.
CONTACT_NAME = "Siti Rahmawati Lubis"
CONTACT_EMAIL = "siti.rahmawati.lubis@kesbangpol.tarakankota.go.id"
CONTACT_PHONE = "0812-7788-9911"
CONTACT_PHONE_E164 = "+6281277889911"

SECRETS = {
    "source API key (hashed in config)": HASHED_KEY,
    "source API key (plain in config)": PLAIN_KEY,
    "operator token": OP_TOKEN,
    "operator token (hashed in config)": OP_TOKEN_HASHED,
    "webhook secret": WEBHOOK_SECRET,
    "SMTP password": SMTP_PASSWORD,
    "Telegram bot token": BOT_TOKEN,
    "Telegram bot token secret part": BOT_TOKEN.split(":", 1)[1],
    "SMS gateway token": SMS_TOKEN,
    "link secret": LINK_SECRET,
}
PERSONAL = {
    "contact e-mail": CONTACT_EMAIL,
    "contact phone": CONTACT_PHONE,
    "contact phone (E.164)": CONTACT_PHONE_E164,
    "contact phone (digits)": "081277889911",
}


class Peers:
    def __init__(self) -> None:
        self.hook = HttpReceiver()
        self.sms = HttpReceiver()
        self.smtp = SmtpServer(credentials=(SMTP_USER, SMTP_PASSWORD))
        self.telegram = TelegramBotApi(BOT_TOKEN, {CHAT_ID})

    def close(self) -> None:
        for p in (self.hook, self.sms, self.smtp, self.telegram):
            p.close()


def security_config(path: Path, peers: Peers) -> Path:
    notify_port = free_port()
    path.write_text(f"""
{stack_sections()}sources:
  - id: fkdm-kaltara
    api_key_sha256: "{sha256_hex(HASHED_KEY)}"
    regions: ["65"]
  - id: bawaslu-jabar
    api_key: "{PLAIN_KEY}"
    regions: ["32.73", "32.04"]
operators:
  - id: op-plain
    name: Piket Kesbangpol Kaltara
    token: "{OP_TOKEN}"
  - id: op-hashed
    name: Piket Kedua
    token_sha256: "{sha256_hex(OP_TOKEN_HASHED)}"
contacts:
  - id: kab-tarakan
    name: "{CONTACT_NAME}"
    email: "{CONTACT_EMAIL}"
    phone: "{CONTACT_PHONE}"
    telegram_chat_id: {CHAT_ID}
    webhook: "{peers.hook.url}/kab"
channels:
  - id: hook
    type: webhook
    url: "{peers.hook.url}/default"
    secret: "{WEBHOOK_SECRET}"
    timeout_s: 2
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
  - id: mail
    type: email
    host: 127.0.0.1
    port: {peers.smtp.port}
    starttls: false
    username: "{SMTP_USER}"
    password: "{SMTP_PASSWORD}"
    sender: "Pantau Kaltara <pantau@kaltaraprov.go.id>"
    timeout_s: 2
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
  - id: tg
    type: telegram
    bot_token: "{BOT_TOKEN}"
    base_url: "{peers.telegram.url}"
    timeout_s: 2
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
  - id: sms
    type: sms
    url: "{peers.sms.url}/api/v1/messages"
    method: POST
    body_template: '{{{{"to": "{{to}}", "message": "{{text}}"}}}}'
    headers: {{Authorization: "Bearer {SMS_TOKEN}"}}
    timeout_s: 2
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
rotations:
  - region: "65.71"
    members: [kab-tarakan]
    start: 2024-11-04
policies:
  - id: kaltara
    match: {{region: "65"}}
    steps:
      - {{notify: ["contact:kab-tarakan"], channels: [hook, mail, tg, sms], wait_minutes: 600}}
notify:
  port: {notify_port}
  metrics_port: {free_port()}
  public_url: "http://127.0.0.1:{notify_port}"
  link_secret: "{LINK_SECRET}"
  # The fuzzing sends thousands of /ack requests from one address; the limit itself is
  # tests/notify/test_api.py's (test_ack_requests_are_rate_limited_per_client_address).
  ack_rate_limit_per_minute: 100000
  timer_poll_s: 0.1
  delivery:
    poll_interval_s: 0.1
  # The fuzzing leaves Kalimantan Utara incidents open at random levels; a province one would
  # rightly hold back the pipeline test's kabupaten page (tests/notify/test_inhibit.py covers that).
  inhibit: {{province_over_kabupaten: false}}
""")
    return path


@pytest.fixture(scope="session")
def peers() -> Iterator[Peers]:
    p = Peers()
    yield p
    p.close()


@pytest.fixture(scope="session")
def sec_stack(tmp_path_factory: pytest.TempPathFactory, peers: Peers) -> Iterator[EmbeddedStack]:
    """Every service, for the whole session; tests must not kill its processes."""
    tmp = tmp_path_factory.mktemp("security")
    s = EmbeddedStack(security_config(tmp / "pantau.yaml", peers), tmp,
                      ("ingest-gateway", "ingest-validator", "scoring", "notify"))
    # Every service logs at DEBUG, the most an operator chasing a problem would turn on, so the
    # log test sees the most there is to see. The children take the environment at start.
    before = os.environ.get("PANTAU_LOG_LEVEL")
    os.environ["PANTAU_LOG_LEVEL"] = "DEBUG"
    try:
        s.start()
    finally:
        if before is None:
            os.environ.pop("PANTAU_LOG_LEVEL")
        else:
            os.environ["PANTAU_LOG_LEVEL"] = before
    yield s
    s.stop()


def ingest_url(stack: EmbeddedStack) -> str:
    return f"http://127.0.0.1:{stack.config.ingest.port}"


def notify_url(stack: EmbeddedStack) -> str:
    return f"http://127.0.0.1:{stack.config.notify.port}"


@pytest.fixture
def ingest(sec_stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ingest_url(sec_stack), timeout=30) as c:
        yield c


@pytest.fixture
def notify(sec_stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=notify_url(sec_stack), timeout=30) as c:
        yield c
