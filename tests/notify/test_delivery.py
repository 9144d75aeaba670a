"""The delivery worker on a real Redis and broker, against real protocol peers: retries with
the same delivery id, fallback and dead letters, idempotent submits, takeover after a worker
dies, outcome events on Kafka and the incident timeline, and no secret anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from services.notify.channels import build_channels
from services.notify.delivery import Deliverer, backoff_delay
from services.notify.delivery_records import DEAD_KEY, DUE_KEY, OUTBOX_KEY, delivery_id, read_timeline, record_key
from shared import topics
from shared.channels_config import DeliverySettings
from shared.kafka import producer_settings
from tests.notify.conftest import (
    BOT_TOKEN,
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
from tests.utils import collect, value

# aiosmtpd warns that AUTH without TLS is unsafe; these servers live on loopback for a test.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = "inc-65.71-mass_mobilization-0001"
CONTACT = "kesbangpol-tarakan"
FAST = DeliverySettings(poll_interval_s=0.05, lease_margin_s=0.5)
KAFKA_FIELDS = {"delivery_id", "incident_id", "event_key", "channel", "channel_type", "contact", "attempt", "outcome",
                "reason", "at"}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Harness:
    """Redis client, channels and deliverers for one test, with a log of outcome events to
    wait on (every event a deliverer records is passed to `on_event`)."""

    def __init__(self, redis_url: str, channel_cfgs: list[dict[str, Any]], contacts: list[dict[str, Any]] | None = None,
                 settings: DeliverySettings = FAST, producer: Any = None):
        self.redis_url = redis_url
        self.channel_cfgs = channel_cfgs
        self.contacts = contacts if contacts is not None else [contact()]
        self.settings = settings
        self.producer = producer
        self.events: list[dict[str, Any]] = []
        self.tasks: list[tuple[asyncio.Task, asyncio.Event]] = []

    async def __aenter__(self) -> "Harness":
        self.redis = aioredis.from_url(self.redis_url)
        self.cond = asyncio.Condition()
        self.channels = build_channels(self.channel_cfgs)
        self.deliverer = self.new()
        return self

    def new(self, **kw: Any) -> Deliverer:
        return Deliverer(self.contacts, self.redis, kw.pop("producer", self.producer), self.channels,
                         settings=kw.pop("settings", self.settings), on_event=self._record, **kw)

    async def _record(self, event: dict[str, Any]) -> None:
        async with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    async def wait(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> list[dict]:
        async with self.cond:
            try:
                await asyncio.wait_for(self.cond.wait_for(lambda: predicate(self.events)), timeout)
            except TimeoutError:
                raise AssertionError(f"condition not met in {timeout}s; events: {self.events}") from None
        return list(self.events)

    async def wait_outcome(self, did: str, outcome: str, timeout: float = 20) -> list[dict]:
        return await self.wait(lambda evs: any(e["delivery_id"] == did and e["outcome"] == outcome for e in evs),
                               timeout)

    def start(self, deliverer: Deliverer | None = None) -> tuple[asyncio.Task, asyncio.Event]:
        stop = asyncio.Event()
        task = asyncio.create_task((deliverer or self.deliverer).run(stop))
        self.tasks.append((task, stop))
        return task, stop

    async def submit(self, channel_id: str, event_key: str = "triggered:1", fallback: str | None = None,
                     contact_id: str | None = CONTACT, **notice_kw: Any) -> str:
        return await self.deliverer.submit(INCIDENT, event_key, contact_id, channel_id, notice(**notice_kw),
                                           fallback_channel_id=fallback)

    def outcomes(self, did: str) -> list[tuple[int, str, str]]:
        return [(e["attempt"], e["outcome"], e["reason"]) for e in self.events if e["delivery_id"] == did]

    async def __aexit__(self, *exc: Any) -> None:
        for task, stop in self.tasks:
            stop.set()
        for task, _ in self.tasks:
            if not task.done():
                try:
                    await asyncio.wait_for(task, 10)
                except (asyncio.CancelledError, TimeoutError):
                    pass
        await self.channels.aclose()
        await self.redis.aclose()


# --------------------------------------------------------------------------- pure parts


def test_delivery_id_is_deterministic_over_the_tuple() -> None:
    a = delivery_id("inc-1", "triggered:1", "c1", "tg")
    assert a == delivery_id("inc-1", "triggered:1", "c1", "tg") and len(a) == 32
    others = {delivery_id("inc-2", "triggered:1", "c1", "tg"), delivery_id("inc-1", "escalated:2", "c1", "tg"),
              delivery_id("inc-1", "triggered:1", "c2", "tg"), delivery_id("inc-1", "triggered:1", "c1", "sms"),
              delivery_id("inc-1", "triggered:1", None, "tg"), delivery_id("inc-1", "triggered:1c", "1", "tg")}
    assert a not in others and len(others) == 6


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    assert backoff_delay(1, 2, 300, 0.0) == 0.0
    assert backoff_delay(1, 2, 300, 0.5) == 1.0
    assert backoff_delay(3, 2, 300, 0.5) == 4.0           # cap 2 * 2^2 = 8
    assert backoff_delay(20, 2, 300, 0.999) < 300         # the cap stops at backoff_max_s
    assert backoff_delay(2, 2, 300, 0.0, retry_after_s=17) == 17    # the peer's hint is a floor
    assert backoff_delay(2, 2, 300, 0.9, retry_after_s=1) == pytest.approx(3.6)
    assert backoff_delay(2, 2, 300, 0.0, retry_after_s=10**9) == 3600  # but not an absurd one


def test_submit_refuses_unknown_channels_and_contacts(fresh_redis: str, receiver: HttpReceiver) -> None:
    async def scenario() -> None:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url)]) as h:
            for kwargs, words in [(dict(channel_id="nope"), "unknown channel"),
                                  (dict(channel_id="kaltara-webhook", fallback="nope"), "unknown channel"),
                                  (dict(channel_id="kaltara-webhook", fallback="kaltara-webhook"), "must differ"),
                                  (dict(channel_id="kaltara-webhook", contact_id="nobody"), "unknown contact")]:
                with pytest.raises(ValueError, match=words):
                    await h.submit(**kwargs)
            assert await h.redis.zcard(DUE_KEY) == 0

    run(scenario())


# --------------------------------------------------------------------------- idempotency


def test_submit_is_persisted_before_it_returns_and_twice_is_once(fresh_redis: str, receiver: HttpReceiver) -> None:
    async def scenario() -> None:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url)]) as h:
            ids = await asyncio.gather(*(h.submit("kaltara-webhook") for _ in range(10)))
            did = ids[0]
            assert set(ids) == {did} == {delivery_id(INCIDENT, "triggered:1", CONTACT, "kaltara-webhook")}
            # Persisted, with no worker running yet: a caller that crashes now loses nothing.
            assert await h.redis.zscore(DUE_KEY, did) is not None
            assert (await h.deliverer.get(did))["state"] == "pending"
            h.start()
            await h.wait_outcome(did, "delivered")
            # The caller restarts and submits the same event again: nothing is queued or sent.
            assert await h.submit("kaltara-webhook") == did
            assert await h.redis.zscore(DUE_KEY, did) is None
            other = await h.submit("kaltara-webhook", event_key="escalated:2")
            await h.wait_outcome(other, "delivered")
        assert [r.headers["x-pantau-delivery"] for r in receiver.requests] == [did, other]

    run(scenario())


# --------------------------------------------------------------------------- retries


def test_receiver_down_for_a_while_gets_the_delivery_once_with_one_id(fresh_redis: str, receiver: HttpReceiver) -> None:
    receiver.fail_next(3, 500)
    before = {o: metric("pantau_notification_attempts_total", channel_type="webhook", outcome=o)
              for o in ("retry", "delivered")}
    retries = metric("pantau_notification_retries_total", channel_type="webhook")
    latency = metric("pantau_notification_delivery_seconds_count", channel_type="webhook")

    async def scenario() -> str:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url)]) as h:
            h.start()
            did = await h.submit("kaltara-webhook")
            await h.wait_outcome(did, "delivered")
            assert h.outcomes(did) == [(1, "retry", "server_error"), (2, "retry", "server_error"),
                                       (3, "retry", "server_error"), (4, "delivered", "ok")]
            timeline = await read_timeline(h.redis, INCIDENT)
            assert [(e["attempt"], e["outcome"], e["detail"]) for e in timeline] == [
                (1, "retry", "HTTP 500"), (2, "retry", "HTTP 500"), (3, "retry", "HTTP 500"), (4, "delivered", "")]
            assert all(e["kind"] == "delivery" and e["delivery_id"] == did for e in timeline)
            assert (await h.deliverer.get(did))["state"] == "delivered"
            assert await h.redis.zscore(DUE_KEY, did) is None
            return did

    did = run(scenario())
    reqs = receiver.requests
    assert len(reqs) == 4
    assert {r.headers["x-pantau-delivery"] for r in reqs} == {did}
    assert all(r.signed_by(WEBHOOK_SECRET) for r in reqs)
    assert len({r.body for r in reqs}) == 1
    assert [r.status for r in reqs] == [500, 500, 500, 200] and len(receiver.delivered(did)) == 1
    assert metric("pantau_notification_attempts_total", channel_type="webhook", outcome="retry") == before["retry"] + 3
    assert metric("pantau_notification_attempts_total", channel_type="webhook",
                  outcome="delivered") == before["delivered"] + 1
    assert metric("pantau_notification_retries_total", channel_type="webhook") == retries + 3
    assert metric("pantau_notification_delivery_seconds_count", channel_type="webhook") == latency + 1


def test_smtp_refusing_then_accepting_delivers_exactly_one_message(fresh_redis: str, smtp: SmtpServer) -> None:
    smtp.refuse_next(2)

    async def scenario() -> str:
        async with Harness(fresh_redis, [email_cfg(smtp.port)]) as h:
            h.start()
            did = await h.submit("email")
            await h.wait_outcome(did, "delivered")
            assert h.outcomes(did) == [(1, "retry", "server_error"), (2, "retry", "server_error"), (3, "delivered", "ok")]
            return did

    did = run(scenario())
    assert len(smtp.refusals.items) == 2
    (mail,) = smtp.received
    assert mail.message["X-Pantau-Delivery"] == did and mail.message["Message-ID"] == f"<{did}@kaltaraprov.go.id>"


def test_telegram_flood_control_retry_after_is_honoured(fresh_redis: str, telegram: TelegramBotApi) -> None:
    telegram.flood_next(1, retry_after=1)

    async def scenario() -> None:
        # rng() = 0: the jittered backoff alone would retry at once; only retry_after holds it back.
        async with Harness(fresh_redis, [telegram_cfg(telegram.url)]) as h:
            h.start(h.new(rng=lambda: 0.0))
            did = await h.submit("telegram")
            await h.wait_outcome(did, "delivered")
            first, second = [e for e in await read_timeline(h.redis, INCIDENT)]
            assert (first["outcome"], first["reason"], first["retry_in_s"]) == ("retry", "rate_limited", 1.0)
            assert (second["outcome"], second["attempt"]) == ("delivered", 2)
            rec = await h.deliverer.get(did)
            assert int(rec["next_ms"]) - int(rec["created_ms"]) >= 1000  # scheduled, per Redis' own clock

    run(scenario())
    assert len(telegram.requests) == 2 and len(telegram.sent.items) == 1


# --------------------------------------------------------------------------- fallback, dead letters


def test_dead_channel_falls_back_and_the_fallback_delivers(fresh_redis: str, receiver: HttpReceiver,
                                                           telegram: TelegramBotApi) -> None:
    receiver.respond = lambda req: Answer(503, b"down")  # type: ignore[method-assign]

    async def scenario() -> None:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url, max_attempts=3), telegram_cfg(telegram.url)]) as h:
            h.start()
            did = await h.submit("kaltara-webhook", fallback="telegram")
            fb = delivery_id(INCIDENT, "triggered:1", CONTACT, "telegram")
            await h.wait_outcome(fb, "delivered")
            assert h.outcomes(did) == [(1, "retry", "server_error"), (2, "retry", "server_error"),
                                       (3, "failed", "server_error")]
            assert h.outcomes(fb) == [(1, "delivered", "ok")]
            timeline = await read_timeline(h.redis, INCIDENT)
            assert timeline[2]["fallback_delivery_id"] == fb and timeline[3]["channel"] == "telegram"
            assert (await h.deliverer.get(fb))["parent_id"] == did
            assert await h.deliverer.dead_letters() == []

    run(scenario())
    assert len(receiver.requests) == 3 and len(telegram.sent.items) == 1


def test_dead_letter_after_the_last_attempt_of_the_fallback(fresh_redis: str, receiver: HttpReceiver,
                                                            telegram: TelegramBotApi) -> None:
    receiver.respond = lambda req: Answer(500, b"down")  # type: ignore[method-assign]
    dead_before = metric("pantau_notification_dead_letters_total", channel_type="telegram")

    async def scenario() -> None:
        contacts = [contact(telegram_chat_id=555)]  # a chat the bot cannot reach: 400, not worth retrying
        async with Harness(fresh_redis, [webhook_cfg(receiver.url, max_attempts=2), telegram_cfg(telegram.url)],
                           contacts) as h:
            h.start()
            did = await h.submit("kaltara-webhook", fallback="telegram")
            fb = delivery_id(INCIDENT, "triggered:1", CONTACT, "telegram")
            await h.wait_outcome(fb, "dead")
            assert h.outcomes(did) == [(1, "retry", "server_error"), (2, "failed", "server_error")]
            assert h.outcomes(fb) == [(1, "dead", "client_error")]
            (dead,) = await h.deliverer.dead_letters()
            assert dead["delivery_id"] == fb and dead["parent_delivery_id"] == did
            assert (dead["channel"], dead["reason"], dead["attempts"], dead["incident_id"]) == (
                "telegram", "client_error", 1, INCIDENT)
            assert dead["detail"] == "Telegram 400"  # the code; Telegram's description is provider text
            assert (await h.deliverer.get(fb))["state"] == "dead"
            assert await h.redis.zcard(DUE_KEY) == 0

    run(scenario())
    assert metric("pantau_notification_dead_letters_total", channel_type="telegram") == dead_before + 1


def test_retryable_failure_without_fallback_is_dead_after_max_attempts(fresh_redis: str,
                                                                       receiver: HttpReceiver) -> None:
    receiver.respond = lambda req: Answer(429, b"slow down")  # type: ignore[method-assign]

    async def scenario() -> None:
        async with Harness(fresh_redis, [slack_cfg(receiver.url, max_attempts=3)]) as h:
            h.start()
            did = await h.submit("slack", contact_id=None)
            await h.wait_outcome(did, "dead")
            assert [o for _, o, _ in h.outcomes(did)] == ["retry", "retry", "dead"]
            (dead,) = await h.deliverer.dead_letters()
            assert (dead["contact"], dead["reason"], dead["attempts"]) == (None, "rate_limited", 3)

    run(scenario())
    assert len(receiver.requests) == 3


# --------------------------------------------------------------------------- concurrency and restarts


def test_two_workers_share_the_queue_and_never_send_twice(fresh_redis: str, receiver: HttpReceiver) -> None:
    async def scenario() -> list[str]:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url)]) as h:
            other_redis = aioredis.from_url(fresh_redis)
            try:
                second = Deliverer(h.contacts, other_redis, None, h.channels, settings=FAST, on_event=h._record)
                h.start()
                h.start(second)
                ids = [await h.submit("kaltara-webhook", event_key=f"reminder:{i}") for i in range(40)]
                await h.wait(lambda evs: sum(e["outcome"] == "delivered" for e in evs) >= 40)
                for task, stop in h.tasks:
                    stop.set()
                    await task
            finally:
                await other_redis.aclose()
            assert sorted(e["delivery_id"] for e in h.events) == sorted(ids)
            return ids

    ids = run(scenario())
    assert sorted(r.headers["x-pantau-delivery"] for r in receiver.requests) == sorted(ids)


def test_claimed_job_of_a_worker_that_stopped_before_sending_is_taken_over(fresh_redis: str,
                                                                           receiver: HttpReceiver) -> None:
    async def scenario() -> str:
        async with Harness(fresh_redis, [webhook_cfg(receiver.url, timeout_s=0.5)]) as h:
            did = await h.submit("kaltara-webhook")
            first = h.new()
            jobs, _, _ = await first.claim(10)  # ... and the worker stops here, before sending
            assert [(j.id, j.attempt) for j in jobs] == [(did, 1)]
            assert (await h.deliverer.get(did))["state"] == "sending"
            assert (await first.claim(10))[0] == []  # leased: nobody else gets it meanwhile
            h.start(h.new())  # a new process on the same Redis
            await h.wait_outcome(did, "delivered")
            assert h.outcomes(did) == [(1, "interrupted", "timeout"), (2, "delivered", "ok")]
            return did

    did = run(scenario())
    assert [r.headers["x-pantau-delivery"] for r in receiver.requests] == [did]


WORKER = """
import asyncio, json, sys, types
import redis.asyncio as aioredis
from services.notify.channels import build_channels
from services.notify.delivery import Deliverer
from shared.channels_config import DeliverySettings

spec = json.loads(sys.argv[1])

async def main():
    r = aioredis.from_url(spec["redis"])
    channels = build_channels(spec["channels"])
    d = Deliverer(spec["contacts"], r, None, channels,
                  settings=DeliverySettings(**spec["settings"]))
    await d.run(asyncio.Event())

asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["task cancelled", "process killed"])
def test_worker_lost_mid_send_is_resumed_with_the_same_delivery_id(fresh_redis: str, receiver: HttpReceiver,
                                                                   how: str) -> None:
    """The receiver got the request but the worker died before the answer: the next worker
    resends under the same X-Pantau-Delivery, which is how the receiver recognises the repeat."""
    release = receiver.hold_next()
    cfg = webhook_cfg(receiver.url, timeout_s=1)

    async def scenario() -> str:
        async with Harness(fresh_redis, [cfg]) as h:
            did = await h.submit("kaltara-webhook")
            proc = None
            if how == "process killed":
                spec = {"redis": fresh_redis, "channels": [cfg], "contacts": [contact()],
                        "settings": FAST.model_dump()}
                proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            else:
                task, _ = h.start(h.new())
            try:
                await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) >= 1, 30)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                else:
                    task.cancel()
            h.start(h.new())
            await h.wait_outcome(did, "delivered")
            assert h.outcomes(did) == [(1, "interrupted", "timeout"), (2, "delivered", "ok")]
            return did

    try:
        did = run(scenario())
    finally:
        release.set()
    reqs = receiver.requests
    assert [r.headers["x-pantau-delivery"] for r in reqs] == [did, did]
    assert reqs[0].body == reqs[1].body
    assert len(receiver.delivered(did)) == 1


# --------------------------------------------------------------------------- outputs


def test_every_attempt_reaches_kafka_and_the_timeline(fresh_redis: str, kafka_bootstrap: str,
                                                      receiver: HttpReceiver, smtp: SmtpServer) -> None:
    receiver.fail_next(1, 502)

    async def scenario() -> tuple[list[str], list[dict]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, **producer_settings())
        await producer.start()
        try:
            async with Harness(fresh_redis, [webhook_cfg(receiver.url), email_cfg(smtp.port)], producer=producer) as h:
                task, stop = h.start()
                hook = await h.submit("kaltara-webhook")
                mail = await h.submit("email")
                await h.wait_outcome(hook, "delivered")
                await h.wait_outcome(mail, "delivered")
                stop.set()
                await task  # a graceful stop flushes the outbox
                assert await h.redis.llen(OUTBOX_KEY) == 0
                timeline = await read_timeline(h.redis, INCIDENT)
        finally:
            await producer.stop()
        msgs = await collect(kafka_bootstrap, [topics.NOTIFICATIONS_V1], lambda ms: len(ms) >= 3, timeout_s=30,
                             where=lambda m: value(m)["delivery_id"] in (hook, mail))
        return [hook, mail], [dict(value(m), _key=m.key) for m in msgs] + [{"timeline": timeline}]

    (hook, mail), got = run(scenario())
    timeline = got.pop()["timeline"]
    assert len(got) == 3
    for ev in got:
        assert ev.pop("_key") == INCIDENT.encode()
        assert set(ev) == KAFKA_FIELDS
        assert ev["contact"] == CONTACT and ev["incident_id"] == INCIDENT and ev["event_key"] == "triggered:1"
        assert ev["at"].endswith("Z")
    assert sorted((e["channel_type"], e["attempt"], e["outcome"], e["reason"]) for e in got) == [
        ("email", 1, "delivered", "ok"), ("webhook", 1, "retry", "server_error"), ("webhook", 2, "delivered", "ok")]
    # The timeline holds the same events (plus what operators need to read them).
    assert sorted((e["delivery_id"], e["attempt"], e["outcome"]) for e in timeline) == sorted(
        (e["delivery_id"], e["attempt"], e["outcome"]) for e in got)


def test_no_secret_in_redis_kafka_outbox_dead_letters_or_logs(fresh_redis: str, receiver: HttpReceiver,
                                                              telegram: TelegramBotApi,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.respond = lambda req: Answer(500, b"boom")  # type: ignore[method-assign]
    smtp_auth = SmtpServer(credentials=("pantau", "the-real-password-0000"))
    one = {"max_attempts": 2}
    cfgs = [webhook_cfg(receiver.url, **one), telegram_cfg(telegram.url, bot_token=BOT_TOKEN + "x", **one),
            email_cfg(smtp_auth.port, username="pantau", password=SMTP_PASSWORD, **one), slack_cfg(receiver.url, **one),
            sms_cfg(receiver.url, **one)]

    async def scenario() -> list[bytes]:
        async with Harness(fresh_redis, cfgs) as h:
            h.start()
            ids = [await h.submit(c["id"]) for c in cfgs]
            await h.wait(lambda evs: sum(e["outcome"] == "dead" for e in evs) >= len(ids))
            dump = [await h.redis.get(k) if await h.redis.type(k) == b"string" else
                    json.dumps([str(x) for x in (await h.redis.lrange(k, 0, -1) if await h.redis.type(k) == b"list"
                                                 else await h.redis.hgetall(k))]).encode()
                    for k in await h.redis.keys("*")]
            assert any(k.startswith(b"pantau:incident:") for k in await h.redis.keys("*"))
            assert await h.redis.llen(DEAD_KEY) == len(ids) and await h.redis.exists(record_key(ids[0]))
            return [d or b"" for d in dump]

    try:
        dump = run(scenario())
    finally:
        smtp_auth.close()
    everything = b"\n".join(dump).decode() + "\n".join(r.getMessage() for r in caplog.records)
    for s in (WEBHOOK_SECRET, BOT_TOKEN, BOT_TOKEN.split(":")[1], SMTP_PASSWORD, SMS_TOKEN, SLACK_PATH):
        assert s not in everything
    assert "auth_error" in everything and "server_error" in everything
