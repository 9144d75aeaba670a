"""Telegram channel: Bot API `POST {base_url}/bot{token}/sendMessage` with `{chat_id, text}`.

The Bot API answers `{"ok": true, "result": {...}}`, or `{"ok": false, "error_code": n,
"description": "...", "parameters": {"retry_after": s}}`; its `error_code` follows HTTP
(400 bad request, 401 bad token, 403 bot blocked, 429 flood control with `retry_after`).
The token is part of the URL, so no URL ever reaches a result or a log line.

With `poll_replies`, each page's (chat id, message id) is remembered with its incident, so a
reply to it can acknowledge (services.notify.replies, which also calls `getUpdates` here).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from services.notify.links import epoch_of
from services.notify.channels.base import Channel, Result, status_result
from services.notify.messages import Notice, render_text
from shared.channels_config import ContactConfig

if TYPE_CHECKING:
    from services.notify.replies import SentPages

log = logging.getLogger("pantau.notify.telegram")

# sendMessage takes at most 4096 characters of text.
MAX_CHARS = 4096


class TelegramChannel(Channel):
    """Pages a Telegram chat with the Bot API's sendMessage, and remembers pages for replies."""

    type = "telegram"
    address_field = "telegram_chat_id"
    #: Where pages are remembered for reply matching; set by the service when the channel
    #: polls replies, else None (nothing is remembered).
    sent_pages: "SentPages | None" = None
    _remembering: "set[asyncio.Task] | None" = None

    async def api(self, method: str, payload: dict[str, Any], timeout: float) -> tuple[int, Any]:
        """One Bot API call: its HTTP status and parsed JSON answer (None if not JSON). Raises
        TimeoutError or channels.http.HttpError; callers keep only the error's class."""
        url = f"{self.config.base_url}/bot{self.config.bot_token.get_secret_value()}/{method}"
        resp = await self.http.post(url, json=payload, timeout=timeout)
        try:
            return resp.status_code, orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            return resp.status_code, None

    def _remember(self, message: Any, notice: Notice, target: ContactConfig) -> None:
        """Map the message Telegram made of a page to its incident. A failure here does not
        undo the delivery: that page's reply is then not recognised, its ack link still works."""
        if self.sent_pages is None or not isinstance(message, dict):
            return
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        chat_id, message_id = chat.get("id", target.telegram_chat_id), message.get("message_id")
        if not isinstance(message_id, int):
            return
        sent_pages = self.sent_pages

        async def remember() -> None:
            try:
                await sent_pages.remember(chat_id, message_id, notice.incident_id, target.id,
                                          epoch=epoch_of(notice.ack_url))
            except Exception as e:
                log.warning("telegram page %s for %s not remembered (%s): a reply to it will not acknowledge",
                            message_id, notice.incident_id, type(e).__name__)

        # In the background: the page is delivered, and a slow Redis must not make this send
        # overrun its timeout and be retried (the coordinator would get the page twice).
        if self._remembering is None:
            self._remembering = set()
        task = asyncio.create_task(remember())
        self._remembering.add(task)
        task.add_done_callback(self._remembering.discard)

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        assert target is not None and target.telegram_chat_id is not None
        text = render_text(notice, target.language)
        if len(text) > MAX_CHARS:
            text = render_text(notice, target.language, max_chars=MAX_CHARS)
        status, answer = await self.api("sendMessage", {"chat_id": target.telegram_chat_id, "text": text},
                                        self.timeout())
        if not isinstance(answer, dict):
            return status_result(status)
        if answer.get("ok") is True and 200 <= status < 300:
            self._remember(answer.get("result"), notice, target)
            return status_result(status)
        code = answer.get("error_code")
        code = code if isinstance(code, int) and 400 <= code < 600 else status
        if 200 <= code < 300:  # "ok": false with a 2xx is still a failure
            code = 500
        params = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        after = params.get("retry_after")
        after = float(after) if isinstance(after, (int, float)) and after >= 0 else None
        # Telegram's `description` is provider text (it may quote the chat or the message):
        # the code says enough for the timeline and the logs.
        return status_result(code, f"Telegram {code}", after)

    async def aclose(self) -> None:
        if self._remembering:
            await asyncio.wait(set(self._remembering), timeout=5)

    def secrets(self) -> list[str]:
        token = self.config.bot_token.get_secret_value()
        return [token, token.split(":", 1)[-1]]
