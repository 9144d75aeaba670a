"""Fixtures for the notify tests: a private Redis (Valkey) and Tansu broker for the session,
protocol peers per test, and builders for notices and channel configs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from cli.stack import broker, free_port, wait_port
from services.notify.messages import Notice
from tests.notify.peers import HttpReceiver, SmtpServer, TelegramBotApi
from tests.utils import local_redis

WEBHOOK_SECRET = "whsec-0123456789abcdef-KALTARA-r8Tq"
BOT_TOKEN = "7712345678:AAH-pantauTestTokenDoNotLeak_x9"
SMTP_PASSWORD = "smtp-pass-Jangan-Bocor-42"
SMS_TOKEN = "sms-gw-token-8d1f0c2b9e"
SLACK_PATH = "services/T000PANTAU/B000PANTAU/slackSecretPart123"
CHAT_ID = 123456789


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_redis(tmp_path_factory.mktemp("notify-redis")) as url:
        yield url


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """The session's Redis, emptied: every test starts with no deliveries queued."""
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()
    return redis_url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from shared.kafka import ensure_topics

    tmp = tmp_path_factory.mktemp("notify-broker")
    port = free_port()
    child = broker(port, Path(tmp)).start()
    try:
        wait_port("127.0.0.1", port, 15, child.proc, "broker")
        bootstrap = f"127.0.0.1:{port}"
        ensure_topics(bootstrap, 2)
        yield bootstrap
    finally:
        child.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def hook() -> Iterator[HttpReceiver]:
    """One webhook receiver for a whole module's stack (its config names the receiver's URL)."""
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def telegram() -> Iterator[TelegramBotApi]:
    t = TelegramBotApi(BOT_TOKEN, {CHAT_ID})
    yield t
    t.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer()
    yield s
    s.close()


def notice(**overrides: Any) -> Notice:
    """A Kota Tarakan mass-mobilisation notice whose summary carries personal data."""
    fields: dict[str, Any] = dict(
        incident_id="inc-65.71-mass_mobilization-0001",
        status="triggered",
        level="siaga",
        region_code="65.71",
        region_name="Kota Tarakan",
        category="mass_mobilization",
        step=1,
        summary=("Unjuk rasa sekitar 300 orang di depan kantor KPU Kota Tarakan; koordinator aksi Budi Santoso "
                 "(NIK 6571011508950001, HP 0812-3456-7890, budi.santoso@gmail.com)."),
        reasons=["7 laporan hari ini, perkiraan 1,7, batas atas 3,3 (EARS C2)", "laporan tingkat keparahan 5"],
        report_ids=["fkdm-kaltara:ev-1", "fkdm-kaltara:ev-2", "polda-kaltara:lp-77"],
        ack_url="https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy",
        opened_at="2024-11-27T06:05:00Z",
        updated_at="2024-11-27T06:35:00Z",
    )
    fields.update(overrides)
    return Notice(**fields)


def contact(**overrides: Any) -> dict[str, Any]:
    c: dict[str, Any] = dict(id="kesbangpol-tarakan", name="Koordinator Kesbangpol Tarakan", language="id",
                             telegram_chat_id=CHAT_ID, email="piket@kesbangpol.tarakankota.go.id",
                             phone="0812-9876-5432")
    c.update(overrides)
    return c


FAST = dict(timeout_s=2, max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.05)


def webhook_cfg(url: str, **kw: Any) -> dict[str, Any]:
    return {"id": "kaltara-webhook", "type": "webhook", "url": url, "secret": WEBHOOK_SECRET, **FAST, **kw}


def telegram_cfg(base_url: str, **kw: Any) -> dict[str, Any]:
    return {"id": "telegram", "type": "telegram", "bot_token": BOT_TOKEN, "base_url": base_url, **FAST, **kw}


def email_cfg(port: int, **kw: Any) -> dict[str, Any]:
    return {"id": "email", "type": "email", "host": "127.0.0.1", "port": port, "starttls": False,
            "sender": "Pantau Kaltara <pantau@kaltaraprov.go.id>", **FAST, **kw}


def slack_cfg(base_url: str, **kw: Any) -> dict[str, Any]:
    return {"id": "slack", "type": "slack", "webhook_url": f"{base_url}/{SLACK_PATH}", **FAST, **kw}


def sms_cfg(base_url: str, **kw: Any) -> dict[str, Any]:
    return {"id": "sms", "type": "sms", "url": f"{base_url}/api/v1/messages", "method": "POST",
            "body_template": '{{"to": "{to}", "message": "{text}", "ref": "{delivery_id}"}}',
            "headers": {"Authorization": f"Bearer {SMS_TOKEN}"}, **FAST, **kw}


def run(coro: Any) -> Any:
    return asyncio.run(coro)
