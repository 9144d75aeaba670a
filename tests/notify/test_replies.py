"""Acknowledging by Telegram reply, on a real Redis and broker, with the notify service's own
parts (`service.build`) paging through the fake Telegram Bot API (`peers.TelegramBotApi`,
which speaks sendMessage and long-polled getUpdates):

  * a page, a reply "Terima" from the contact's chat → the API shows the incident
    acknowledged by that contact via telegram, the escalation stopped, everyone paged told;
  * replies that are not an ack from a contact (a stranger's chat, no reply, other words, a
    reply to something that is not a page) change nothing and are counted by reason;
  * a poller stopped and started again neither loses a reply nor applies one twice; and
    applying the same update twice acknowledges once.

Nothing sleeps for a fixed time: each step waits on the Bot API's log or on Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import contextlib

import orjson

import httpx
import pytest
from prometheus_client import REGISTRY

from shared.scores import ScoreUpdate
from services.notify.replies import K_OFFSET, K_SENT, ReplyPoller, is_ack, reply_pollers
from services.notify.service import Parts, build
from shared.config import ConfigError, parse
from shared.notify_config import NotifyConfig
from tests.notify.conftest import BOT_TOKEN, CHAT_ID, run
from tests.notify.peers import TelegramBotApi
from tests.utils import wait_for_async

OP_TOKEN = "replies-operator-token-kaltara"
PROV_CHAT = 222333444
STRANGER = 987654321
GROUP_CHAT = -1001234567890  # a Telegram group: several people read and reply there
POSKO_USER = 555001  # the Telegram user the posko-tarakan contact is


def config_yaml(redis_url: str, bootstrap: str, bot_url: str, *, poll: bool = True, extra_channels: str = "") -> str:
    return f"""
kafka: {{bootstrap_servers: "{bootstrap}"}}
redis: {{url: "{redis_url}"}}
operators:
  - {{id: op-kesbangpol, name: Piket Kesbangpol, token: "{OP_TOKEN}"}}
contacts:
  - {{id: kab-tarakan, name: Koordinator Kota Tarakan, telegram_chat_id: {CHAT_ID}}}
  - {{id: prov-kaltara, name: Provincial Coordinator, language: en, telegram_chat_id: {PROV_CHAT}}}
  - {{id: posko-tarakan, name: Posko Tarakan, telegram_chat_id: {GROUP_CHAT}, telegram_user_ids: [{POSKO_USER}]}}
channels:
  - id: telegram
    type: telegram
    bot_token: "{BOT_TOKEN}"
    base_url: "{bot_url}"
    poll_replies: {str(poll).lower()}
    poll_timeout_s: 5
    timeout_s: 2
    max_attempts: 3
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
{extra_channels}
policies:
  - id: kaltara
    match: {{region: "65"}}
    steps:
      - {{notify: ["contact:kab-tarakan"], wait_minutes: 30}}
      - {{notify: ["contact:prov-kaltara"], wait_minutes: 30}}
notify:
  public_url: "http://127.0.0.1:8082"
  link_secret: "replies-link-secret-0123456789abcdef"
  timer_poll_s: 0.1
  delivery: {{poll_interval_s: 0.1, lease_margin_s: 2}}
"""


def metric(outcome: str) -> float:
    return REGISTRY.get_sample_value("pantau_notify_telegram_replies_total", {"outcome": outcome}) or 0.0


async def seen(peer: TelegramBotApi, predicate: Callable[[list], bool]) -> list:
    """Wait, off the event loop, until the Bot API's log of sent messages satisfies `predicate`."""
    return await asyncio.to_thread(peer.sent.wait_for, predicate)


class Notify:
    """The service's parts for one test, with its loops run as `serve` runs them."""

    def __init__(self, parts: Parts):
        self.parts = parts
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.api = httpx.AsyncClient(transport=httpx.ASGITransport(app=parts.app), base_url="http://notify",
                                     headers={"Authorization": f"Bearer {OP_TOKEN}"})

    def run(self, coro: Awaitable[None]) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self.tasks.append(t)
        return t

    async def open(self, category: str, region: str = "65.71") -> str:
        u = ScoreUpdate(region_code=region, category=category, bucket_start="2024-11-27T06:00:00Z", level="siaga",
                        reasons=["7 laporan hari ini, perkiraan 1,7, batas atas 3,3 (EARS C2)"])
        change = await self.parts.consumer.handler.handle(u)
        assert change is not None and change.opened
        return change.incident.id

    async def page(self, peer: TelegramBotApi, incident_id: str, chat: int = CHAT_ID) -> int:
        """The message id of the page for `incident_id` in `chat`, once it is remembered."""
        items = await seen(peer, lambda items: any(c == chat and incident_id in t for c, t in items))
        assert items
        mid = next(m["message_id"] for m in peer.sent_to(chat) if incident_id in m["text"])
        await wait_for_async("the reply's page recorded as sent", lambda: self.parts.redis.exists(K_SENT.format("telegram", chat, mid)), 20)
        return mid

    async def incident(self, incident_id: str) -> dict[str, Any]:
        resp = await self.api.get(f"/v1/incidents/{incident_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.api.aclose()
        await self.parts.producer.stop()
        await self.parts.channels.aclose()
        await self.parts.redis.aclose()


@pytest.fixture
def bot() -> Any:
    t = TelegramBotApi(BOT_TOKEN, {CHAT_ID, PROV_CHAT})
    yield t
    t.close()


@contextlib.asynccontextmanager
async def started(redis_url: str, bootstrap: str, bot: TelegramBotApi) -> AsyncIterator[Notify]:
    """`service.build` on the test's Redis and broker, with its scheduler and delivery loops
    running; the reply pollers are started by each test (some run two, some restart one)."""
    config = parse(config_yaml(redis_url, bootstrap, bot.url))
    n = Notify(await build(config, NotifyConfig.of(config)))
    n.run(n.parts.scheduler.run(n.stop))
    n.run(n.parts.deliverer.run(n.stop))
    try:
        yield n
    finally:
        await n.close()


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("text", ["ack", "OK", "Terima", "SIAP", "siap!", " ok. ", "/ack", "Siap!!"])
def test_the_ack_words_in_any_case_acknowledge(text: str) -> None:
    assert is_ack(text)


@pytest.mark.parametrize("text", ["ok nanti saya cek", "terima kasih", "oke", "siapa", "", "  ", None, 42])
def test_anything_else_is_not_an_ack(text: Any) -> None:
    assert not is_ack(text)


def test_reply_polling_config_is_checked_and_named(tmp_path: Any) -> None:
    bad = config_yaml("redis://127.0.0.1:1/0", "127.0.0.1:1", "http://127.0.0.1:1").replace(
        "poll_timeout_s: 5", "poll_timeout_s: 90")
    with pytest.raises(ConfigError, match=r"channels\[0\]\.poll_timeout_s"):
        parse(bad)
    twice = config_yaml("redis://127.0.0.1:1/0", "127.0.0.1:1", "http://127.0.0.1:1", extra_channels=f"""
  - {{id: telegram-2, type: telegram, bot_token: "{BOT_TOKEN}", poll_replies: true}}""")
    with pytest.raises(ConfigError, match=r"channels\[1\]\.poll_replies: .*'telegram' already polls"):
        NotifyConfig.of(parse(twice))


def test_no_poller_unless_a_telegram_channel_asks_for_it() -> None:
    from services.notify.channels import build_channels

    cfg = parse(config_yaml("redis://127.0.0.1:1/0", "127.0.0.1:1", "http://127.0.0.1:1", poll=False))

    async def go() -> list[ReplyPoller]:
        channels = build_channels(cfg.channels)
        try:
            return reply_pollers(None, channels, cfg.contacts, None, lambda: None, 60)  # type: ignore[arg-type]
        finally:
            await channels.aclose()

    assert asyncio.run(go()) == []


# --------------------------------------------------------------------------- integration


def test_reply_terima_acknowledges_as_the_contact_via_telegram(fresh_redis: str, kafka_bootstrap: str,
                                                               bot: TelegramBotApi) -> None:
    before = metric("acknowledged")

    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            one = notify.parts.replies[0]
            other = ReplyPoller(one.channel, notify.parts.store, one.contacts, one.sent, notify.parts.scheduler.wake,
                                standby_s=0.2)
            for p in (one, other):  # two notify processes: one polls, the other stands by
                notify.run(p.run(notify.stop))
            inc_id = await notify.open("mass_mobilization")
            page = await notify.page(bot, inc_id)

            update = bot.reply(page, "Terima")
            await seen(bot, lambda items: any(c == CHAT_ID and "Diterima" in t for c, t in items))

            inc = await notify.incident(inc_id)
            assert (inc["status"], inc["acknowledged_by"]) == ("acknowledged", "contact:kab-tarakan")
            assert inc["escalation"]["next_at"] is None  # the province's step will not come
            acks = [e for e in inc["timeline"] if e["kind"] == "acknowledged"]
            assert [(e["by"], e["via"]) for e in acks] == [("contact:kab-tarakan", "telegram")]
            # Everyone paged hears it, as after an API ack.
            await seen(bot, lambda items: any(c == CHAT_ID and inc_id in t and "DITANGANI" in t for c, t in items))
            # The answer quotes the reply and names who took the incident, in the contact's language.
            (answer,) = [r.json() for r in bot.requests
                         if r.path.endswith("/sendMessage") and "Diterima" in r.json()["text"]]
            assert inc_id in answer["text"] and "Koordinator Kota Tarakan" in answer["text"]
            assert answer["reply_parameters"]["message_id"] == bot.pushed[update]["message"]["message_id"]
            assert int(await notify.parts.redis.get(K_OFFSET.format("telegram"))) == update + 1
            assert (one.leader, other.leader).count(True) == 1 and bot.conflicts == 0

    run(scenario())
    assert metric("acknowledged") == before + 1
    assert not any(c == PROV_CHAT for c, _ in bot.sent.items)


def test_replies_not_from_a_contact_or_not_an_ack_change_nothing(fresh_redis: str, kafka_bootstrap: str,
                                                                 bot: TelegramBotApi) -> None:
    reasons = ("unknown_chat", "not_a_reply", "not_an_ack_word", "unknown_message", "from_bot")
    before = {r: metric(r) for r in reasons}

    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            notify.run(notify.parts.replies[0].run(notify.stop))
            inc_id = await notify.open("election_dispute")
            page = await notify.page(bot, inc_id)
            sent_before = len(bot.sent.items)

            bot.reply(page, "ok", chat_id=STRANGER)  # a chat that is no contact's, replying to the page
            bot.push_message(CHAT_ID, "ok")  # the contact, but not a reply
            bot.reply(page, "ok nanti saya cek")  # a reply, but not an ack word
            bot.push_message(CHAT_ID, "siap", reply_to=999_999)  # a reply to something that is no page
            last = bot.reply(page, "ack", is_bot=True)  # another bot in the chat

            # Every update was read: the next poll confirmed them all to Telegram.
            await asyncio.to_thread(bot.log.wait_for, lambda reqs: any(
                r.path.endswith("/getUpdates") and r.json().get("offset") == last + 1 for r in reqs))
            inc = await notify.incident(inc_id)
            assert inc["status"] == "triggered" and inc["acknowledged_by"] is None
            assert not any(e["kind"] == "acknowledged" for e in inc["timeline"])
            assert len(bot.sent.items) == sent_before  # strangers and chatter get no answer

    run(scenario())
    assert {r: metric(r) - before[r] for r in reasons} == dict.fromkeys(reasons, 1.0)
    assert not any(r.path.endswith("/sendMessage") and r.json().get("chat_id") == STRANGER for r in bot.requests)


def test_poller_restart_neither_loses_nor_reapplies_a_reply(fresh_redis: str, kafka_bootstrap: str,
                                                            bot: TelegramBotApi) -> None:
    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            first = notify.parts.replies[0]
            a, b = await notify.open("mass_mobilization"), await notify.open("communal_clash")
            page_a, page_b = await notify.page(bot, a), await notify.page(bot, b)

            stop_first = asyncio.Event()
            running = asyncio.ensure_future(first.run(stop_first))
            u1 = bot.reply(page_a, "ok")
            await seen(bot, lambda items: any(a in t and "Diterima" in t for _, t in items))
            stop_first.set()
            await running
            assert int(await notify.parts.redis.get(K_OFFSET.format("telegram"))) == u1 + 1
            polls_before = len(bot.polls())

            bot.reply(page_b, "siap")  # arrives while no poller runs
            second = ReplyPoller(first.channel, notify.parts.store, first.contacts, first.sent,
                                 notify.parts.scheduler.wake)
            notify.run(second.run(notify.stop))
            await seen(bot, lambda items: any(b in t and "Diterima" in t for _, t in items))

            # The new poller starts after the reply already applied, and still gets the new one.
            assert bot.polls()[polls_before]["offset"] == u1 + 1
            assert (await notify.incident(b))["acknowledged_by"] == "contact:kab-tarakan"
            inc_a = await notify.incident(a)
            assert inc_a["acks"] == 1 and len([e for e in inc_a["timeline"] if e["kind"] == "acknowledged"]) == 1
            assert len([t for _, t in bot.sent.items if a in t and "Diterima" in t]) == 1

    run(scenario())


def test_the_same_reply_applied_twice_acknowledges_once(fresh_redis: str, kafka_bootstrap: str,
                                                        bot: TelegramBotApi) -> None:
    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            poller = notify.parts.replies[0]
            inc_id = await notify.open("sara_incitement")
            page = await notify.page(bot, inc_id)
            update = {"update_id": 1, "message": {
                "message_id": 5000, "text": "SIAP", "chat": {"id": CHAT_ID, "type": "private"},
                "from": {"id": CHAT_ID, "is_bot": False}, "reply_to_message": {"message_id": page}}}

            first, _ = await poller.handle(update)
            again, answer = await poller.handle(update)

            assert (first, again) == ("acknowledged", "already_acknowledged")
            assert answer is not None and "sudah ditangani oleh Koordinator Kota Tarakan" in answer[2]
            inc = await notify.incident(inc_id)
            assert inc["acks"] == 1 and len([e for e in inc["timeline"] if e["kind"] == "acknowledged"]) == 1

            # Once resolved, a late "siap" is refused as the API refuses it (409), and said so.
            assert (await notify.api.post(f"/v1/incidents/{inc_id}/resolve")).status_code == 200
            late, answer = await poller.handle({**update, "update_id": 2})
            assert late == "resolved" and answer is not None and "sudah selesai" in answer[2]
            assert (await notify.incident(inc_id))["status"] == "resolved"

    run(scenario())


def test_in_a_group_only_the_contacts_own_user_acknowledges_and_only_within_the_link_lifetime(
        fresh_redis: str, kafka_bootstrap: str, bot: TelegramBotApi) -> None:
    ignored = ("not_the_contact", "expired")
    before = {r: metric(r) for r in ignored}

    def group_reply(update_id: int, page: int, sender: int, text: str = "ok") -> dict:
        return {"update_id": update_id, "message": {
            "message_id": 9000 + update_id, "text": text, "chat": {"id": GROUP_CHAT, "type": "supergroup"},
            "from": {"id": sender, "is_bot": False}, "reply_to_message": {"message_id": page}}}

    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            poller = notify.parts.replies[0]
            inc_id = await notify.open("communal_clash")
            await poller.sent.remember(GROUP_CHAT, 7001, inc_id, "posko-tarakan")

            assert (await poller.handle(group_reply(1, 7001, STRANGER)))[0] == "not_the_contact"
            assert (await notify.incident(inc_id))["status"] == "triggered"
            assert (await poller.handle(group_reply(2, 7001, POSKO_USER, "siap")))[0] == "acknowledged"
            assert (await notify.incident(inc_id))["acknowledged_by"] == "contact:posko-tarakan"

            # A page older than the ack link's lifetime (24 h here): its reply is as dead as its link.
            old = await notify.open("land_resource_conflict")
            await poller.sent.remember(GROUP_CHAT, 7002, old, "posko-tarakan", at=poller.clock() - 24 * 3600 - 1)
            assert (await poller.handle(group_reply(3, 7002, POSKO_USER)))[0] == "expired"
            assert (await notify.incident(old))["status"] == "triggered"

    run(scenario())
    assert {r: metric(r) - before[r] for r in ignored} == dict.fromkeys(ignored, 1.0)


def test_a_reply_to_a_page_from_before_a_level_rise_acknowledges_nothing(fresh_redis: str, kafka_bootstrap: str,
                                                                          bot: TelegramBotApi) -> None:
    before = metric("stale_page")

    async def scenario() -> None:
        async with started(fresh_redis, kafka_bootstrap, bot) as notify:
            poller = notify.parts.replies[0]
            inc_id = await notify.open("political_violence")
            page = await notify.page(bot, inc_id)
            stored = orjson.loads(await notify.parts.redis.get(K_SENT.format("telegram", CHAT_ID, page)))
            assert stored["epoch"] == 0 and stored["contact"] == "kab-tarakan"
            rise = ScoreUpdate(region_code="65.71", category="political_violence",
                               bucket_start="2024-11-27T06:00:00Z", level="awas", reasons=["severity 5 report"])
            assert (await notify.parts.consumer.handler.handle(rise)) is not None
            update = {"update_id": 1, "message": {
                "message_id": 8000, "text": "ok", "chat": {"id": CHAT_ID, "type": "private"},
                "from": {"id": CHAT_ID, "is_bot": False}, "reply_to_message": {"message_id": page}}}
            outcome, answer = await poller.handle(update)
            assert outcome == "stale_page" and answer is not None and "AWAS" in answer[2]
            assert (await notify.incident(inc_id))["status"] == "escalated"

    run(scenario())
    assert metric("stale_page") == before + 1
