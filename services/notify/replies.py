"""Acknowledging by Telegram reply: a coordinator answers a Pantau page in Telegram with one of
`ACK_WORDS` ("ack", "ok", "terima", "siap") and the incident is acknowledged exactly as the
API's ack does it (escalation stops, everyone paged hears it, the timeline says who and
`via: telegram`).

    TelegramChannel.send ─▶ SentPages (chat id, message id → incident, contact; Redis, TTL)
    Telegram ─▶ getUpdates (long poll) ─▶ ReplyPoller.handle ─▶ acknowledge ─▶ IncidentStore
                      ▲                        │
                      └── offset in Redis ◀────┘ (advanced after each update is applied)

**Who may acknowledge.** Only a reply (`reply_to_message`) to a page this channel sent, from a
chat that is a configured contact's `telegram_chat_id`, sent by that contact's own Telegram
user (the chat id of a private chat, or one of `telegram_user_ids` for a group: any other
member of the group is `not_the_contact`), within the ack link's lifetime
(`notify.link_ttl_minutes`; older pages are `expired`), whose whole text is an ack word (case
does not matter; spaces, a leading `/` and trailing `.`/`!` are ignored, so "Siap!" counts and
"ok, nanti saya cek" does not). That contact is the acknowledger (`contact:<id>`; in a group
chat the replier's Telegram user id is noted on the timeline). Anything else is ignored and
counted in `pantau_notify_telegram_replies_total{outcome}`; strangers get no answer.

**Once, across restarts and processes.** One poller per channel polls at a time, holding a
Redis lease (renewed before every getUpdates call, fenced when the offset moves). The offset
lives in Redis and moves past an update only after it was applied, so a restart neither loses
a reply nor skips one. The one window left — killed after the ack was saved, before the
offset moved — applies that reply again, which changes nothing: acknowledging an acknowledged
incident is a no-op (`transitions.acknowledge`).

**Answers.** With `confirm_replies` (default), each recognised reply gets one short line back,
in the replier's language (the language their pages are written in): taken, already taken
by someone, or already resolved. It is one attempt after the offset moved (never sent twice;
lost if that attempt fails: the acknowledged broadcast still reaches everyone paged).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Callable, Iterable

import orjson
import redis.asyncio as aioredis

from shared import metrics
from shared.channels_config import ContactConfig
from services.notify.channels.http import HttpError
from services.notify.wakeups import release_held
from services.notify.incident_metrics import count_change
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge
from services.notify.incident import Conflict
from shared.lease import Lease
from shared.retry import backoff_s

log = logging.getLogger("pantau.notify.replies")

ACK_WORDS = ("ack", "ok", "terima", "siap")
# What came of one update (the metric's label: keep this list closed).
OUTCOMES = ("acknowledged", "already_acknowledged", "resolved", "unknown_incident", "unknown_message",
            "not_an_ack_word", "not_a_reply", "unknown_chat", "from_bot", "not_a_message", "not_the_contact",
            "expired", "stale_page")

K_SENT = "pantau:notify:telegram:{}:sent:{}:{}"  # channel, chat id, message id → {incident_id, contact, at}
K_OFFSET = "pantau:notify:telegram:{}:offset"
K_LEASE = "pantau:notify:telegram:{}:poller"

# Added to the long-poll time for the lease: the HTTP call's own timeout plus room to apply
# what it returned, so a healthy poller never loses its lease mid-call.
LEASE_MARGIN_S = 15.0
MAX_BACKOFF_S = 60.0

# KEYS: lease, offset. ARGV: owner, offset. Move the offset forward only while the lease is
# ours: a poller that lost it (paused past its expiry) cannot move the new holder's offset.
_ADVANCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""


def is_ack(text: Any) -> bool:
    """Whether a reply's text is an acknowledgement (see the module docstring)."""
    if not isinstance(text, str):
        return False
    word = text.strip().removeprefix("/").rstrip(".! ").casefold()
    return word in ACK_WORDS


class SentPages:
    """Which incident (and contact) each page sent on one Telegram channel belongs to, by the
    (chat id, message id) Telegram gave it; kept as long as incidents are."""

    def __init__(self, r: aioredis.Redis, channel_id: str, ttl_s: int):
        self.r = r
        self.channel_id = channel_id
        self.ttl_s = ttl_s

    async def remember(self, chat_id: int | str, message_id: int, incident_id: str, contact_id: str,
                       at: float | None = None, epoch: int | None = None) -> None:
        doc = {"incident_id": incident_id, "contact": contact_id, "at": time.time() if at is None else at,
               "epoch": epoch}
        await self.r.set(K_SENT.format(self.channel_id, chat_id, message_id), orjson.dumps(doc), ex=self.ttl_s)

    async def lookup(self, chat_id: int | str, message_id: int) -> dict[str, str] | None:
        raw = await self.r.get(K_SENT.format(self.channel_id, chat_id, message_id))
        return None if raw is None else orjson.loads(raw)


_TEXTS = {
    "id": {"acknowledged": "Diterima. Insiden {id} ({region}) ditangani oleh {name}; eskalasi dihentikan.",
           "already_acknowledged": "Insiden {id} sudah ditangani oleh {by}.",
           "resolved": "Insiden {id} sudah selesai; tidak perlu dikonfirmasi.",
           "stale_page": "Pesan ini sudah usang: level insiden {id} naik menjadi {level}. Balas pesan terbaru."},
    "en": {"acknowledged": "Acknowledged. Incident {id} ({region}) is now handled by {name}; escalation stopped.",
           "already_acknowledged": "Incident {id} was already acknowledged by {by}.",
           "resolved": "Incident {id} is already resolved; nothing to acknowledge.",
           "stale_page": "This page is out of date: incident {id} rose to {level}. Reply to the newest one."},
}


class _StalePage(Exception):
    def __init__(self, incident: Any):
        self.incident = incident


class ReplyPoller:
    """Reads one Telegram channel's updates and turns ack replies into acknowledgements."""

    def __init__(self, channel: Any, store: IncidentStore, contacts: Iterable[ContactConfig], sent: SentPages,
                 wake: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 standby_s: float = 5.0, link_ttl_s: float = 24 * 3600.0):
        self.channel = channel
        self.cfg = channel.config
        self.store = store
        self.r = store.r
        self.sent = sent
        self.wake = wake
        self.clock = clock
        self.standby_s = standby_s
        self.link_ttl_s = link_ttl_s
        self.contacts = list(contacts)
        self.me = uuid.uuid4().hex
        self.lease_s = self.cfg.poll_timeout_s + self.cfg.timeout_s + LEASE_MARGIN_S
        self.leader = False
        self._lease = Lease(self.r, K_LEASE.format(self.cfg.id), self.me, self.lease_s)
        self._advance = self.r.register_script(_ADVANCE)
        self._keys = (self._lease.key, K_OFFSET.format(self.cfg.id))

    # ----------------------------------------------------------------------- loop

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a failure backs off and tries again, never ends the loop
        (Telegram being away must not take the rest of notify with it)."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    wait = await self.poll_once(stop)
                    failures = 0
                except Exception as e:  # Redis away, or a bug: log the kind only, never a URL
                    failures += 1
                    log.warning("telegram reply poller %s: %s; retrying", self.cfg.id, type(e).__name__)
                    wait = backoff_s(failures + 1, 0.5, MAX_BACKOFF_S)
                if wait:
                    try:
                        await asyncio.wait_for(stop.wait(), wait)
                    except TimeoutError:
                        pass
        finally:
            if self.leader:
                try:
                    await self._lease.release()
                except Exception:
                    pass  # it expires by itself
            self.leader = False

    async def poll_once(self, stop: asyncio.Event | None = None) -> float | None:
        """One getUpdates round if this poller holds the lease. Returns how long to wait
        before the next round (None: go on at once)."""
        self.leader = await self._lease.hold()
        if not self.leader:
            return self.standby_s
        raw = await self.r.get(self._keys[1])
        payload: dict[str, Any] = {"timeout": self.cfg.poll_timeout_s, "allowed_updates": ["message"]}
        if raw is not None:
            payload["offset"] = int(raw)
        call = asyncio.ensure_future(self.channel.api("getUpdates", payload,
                                                      self.cfg.poll_timeout_s + self.cfg.timeout_s))
        if stop is not None:
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({call, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not call.done():  # stopping: the updates stay unconfirmed and come again next time
                call.cancel()
                return None
        try:
            status, answer = await call
        except (HttpError, OSError) as e:
            log.warning("telegram reply poller %s: getUpdates failed (%s); retrying", self.cfg.id, type(e).__name__)
            return 5.0
        if not (isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("result"), list)):
            return self._refused(status, answer)
        for update in answer["result"]:
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                continue
            outcome, confirm = await self.handle(update)
            if not int(await self._advance(keys=list(self._keys), args=[self.me, update["update_id"] + 1])):
                log.warning("telegram reply poller %s lost its lease; another poller goes on", self.cfg.id)
                self.leader = False
                return self.standby_s
            if confirm is not None:
                await self._confirm(*confirm)
        return None

    def _refused(self, status: int, answer: Any) -> float:
        """Telegram said no: wait as it asks (429), or long enough not to hammer it."""
        answer = answer if isinstance(answer, dict) else {}
        code = answer.get("error_code") if isinstance(answer.get("error_code"), int) else status
        # Only the code is logged: Telegram's description is provider text.
        params = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        if code == 429 and isinstance(params.get("retry_after"), (int, float)):
            log.warning("telegram reply poller %s: flood control, waiting %ss", self.cfg.id, params["retry_after"])
            return float(params["retry_after"])
        if code == 409:
            # A webhook set on the bot, or another program reading its updates.
            log.error("telegram reply poller %s: getUpdates answered 409 (something else reads this bot's updates)",
                      self.cfg.id)
            return 30.0
        if code in (401, 403, 404):
            log.error("telegram reply poller %s: getUpdates answered %s (check bot_token and base_url)",
                      self.cfg.id, code)
            return MAX_BACKOFF_S
        log.warning("telegram reply poller %s: getUpdates answered %s", self.cfg.id, code)
        return 5.0

    # ----------------------------------------------------------------------- one update

    async def handle(self, update: dict[str, Any]) -> tuple[str, tuple[Any, ...] | None]:
        """Apply one update; returns its outcome and, when it deserves an answer, what to send
        (chat id, message id replied to, text). Safe to call twice for the same update."""
        outcome, confirm = await self._apply(update)
        metrics.TELEGRAM_REPLIES.labels(outcome).inc()
        if outcome not in ("acknowledged", "already_acknowledged", "resolved"):
            log.info("telegram update %s on %s ignored: %s", update.get("update_id"), self.cfg.id, outcome)
        return outcome, confirm if self.cfg.confirm_replies else None

    async def _apply(self, update: dict[str, Any]) -> tuple[str, tuple[Any, ...] | None]:
        msg = update.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("chat"), dict):
            return "not_a_message", None
        sender = msg.get("from") if isinstance(msg.get("from"), dict) else {}
        if sender.get("is_bot") is True:
            return "from_bot", None
        chat = msg["chat"]
        owners = [c for c in self.contacts if c.telegram_chat_id is not None and c.telegram_chat_id == chat.get("id")]
        if not owners:
            return "unknown_chat", None
        reply = msg.get("reply_to_message")
        if not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int):
            return "not_a_reply", None
        if not is_ack(msg.get("text")):
            return "not_an_ack_word", None
        page = await self.sent.lookup(chat["id"], reply["message_id"])
        if page is None:
            return "unknown_message", None
        # The replier must be the contact's own Telegram user: in a group chat anyone else
        # could otherwise acknowledge in the contact's name. When several contacts share the
        # chat, the one the page went to if it is them, else whichever they are.
        sender_id = sender.get("id")
        mine = [c for c in owners if isinstance(sender_id, int) and sender_id in c.reply_user_ids()]
        if not mine:
            return "not_the_contact", None
        who = next((c for c in mine if c.id == page.get("contact")), mine[0])
        sent_at = page.get("at")
        if not isinstance(sent_at, (int, float)) or self.clock() - sent_at > self.link_ttl_s:
            # As the page's ack link has expired by now, so has a reply to it.
            return "expired", None
        note = None
        if chat.get("type") in ("group", "supergroup") and isinstance(sender.get("id"), int):
            note = f"replied in the group chat by Telegram user {sender['id']}"
        now = self.clock()

        def ack_if_current(inc: Any):
            # As with a link: a page from before the level last rose acknowledges nothing.
            if isinstance(page.get("epoch"), int) and page["epoch"] != inc.rises:
                raise _StalePage(inc)
            return acknowledge(inc, f"contact:{who.id}", now, "telegram", note)

        try:
            saved, change = await self.store.mutate(page["incident_id"], ack_if_current)
        except Conflict:
            return "resolved", self._answer(chat["id"], msg, who, "resolved", page["incident_id"])
        except _StalePage as e:
            return "stale_page", self._answer(chat["id"], msg, who, "stale_page", page["incident_id"],
                                              level=e.incident.level.upper())
        if saved is None:
            return "unknown_incident", None
        count_change(change)
        if change is None:
            by = saved.acknowledged_by or ""
            name = next((c.name for c in self.contacts if by == f"contact:{c.id}"), by)
            return "already_acknowledged", self._answer(chat["id"], msg, who, "already_acknowledged", saved.id,
                                                        by=name)
        await release_held(self.store, change, now)  # an acked province incident holds nothing back
        self.wake()  # the scheduler tells everyone paged now, not at its next poll
        log.info("incident %s acknowledged by contact:%s via telegram", saved.id, who.id)
        return "acknowledged", self._answer(chat["id"], msg, who, "acknowledged", saved.id,
                                            region=saved.region_name, name=who.name)

    @staticmethod
    def _answer(chat_id: Any, msg: dict[str, Any], who: ContactConfig, outcome: str, incident_id: str,
                **kw: str) -> tuple[Any, ...]:
        text = _TEXTS["en" if who.language == "en" else "id"][outcome].format(id=incident_id, **kw)
        return chat_id, msg.get("message_id"), text

    async def _confirm(self, chat_id: Any, reply_to: Any, text: str) -> None:
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if isinstance(reply_to, int):
            payload["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        try:
            status, answer = await self.channel.api("sendMessage", payload, self.channel.timeout())
        except (HttpError, OSError) as e:
            log.warning("telegram reply confirmation on %s not sent (%s)", self.cfg.id, type(e).__name__)
            return
        if not (isinstance(answer, dict) and answer.get("ok") is True):
            log.warning("telegram reply confirmation on %s refused (HTTP %s)", self.cfg.id, status)


def reply_pollers(r: aioredis.Redis, channels: Any, contacts: Iterable[ContactConfig], store: IncidentStore,
                  wake: Callable[[], None], retention_s: int, link_ttl_s: float = 24 * 3600.0) -> list[ReplyPoller]:
    """A poller for each Telegram channel with `poll_replies`; each such channel is given the
    place to remember its pages' message ids (kept `retention_s`, as long as incidents)."""
    contacts = list(contacts)
    out = []
    for ch in channels.values():
        if ch.type == "telegram" and getattr(ch.config, "poll_replies", False):
            ch.sent_pages = SentPages(r, ch.id, retention_s)
            out.append(ReplyPoller(ch, store, contacts, ch.sent_pages, wake, link_ttl_s=link_ttl_s))
    return out
