"""The Telegram Bot API as a reporters' bot meets it: notify's test server (tests/notify/peers.py)
plus what a conversation with buttons needs — `callback_query` updates when a user presses an
inline button, `answerCallbackQuery`, and messages carrying a shared location."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.notify.peers import Answer, Request, TelegramBotApi


class ReportersBotApi(TelegramBotApi):
    def _push(self, body: dict[str, Any]) -> int:
        with self._updates_cond:
            self._update_id += 1
            update = {"update_id": self._update_id, **body}
            self._updates.append(update)
            self.pushed[self._update_id] = update
            self._updates_cond.notify_all()
            return self._update_id

    def _sender(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": "Pelapor"}

    def press(self, user_id: int, data: str) -> int:
        """The user presses the inline button whose callback_data is `data`."""
        with self._updates_cond:
            self._message_id += 1
            mid = self._message_id
        return self._push({"callback_query": {
            "id": f"cq-{time.time_ns()}", "from": self._sender(user_id), "data": data, "chat_instance": "1",
            "message": {"message_id": mid, "date": int(time.time()), "chat": {"id": user_id, "type": "private"}}}})

    def share_location(self, user_id: int, lat: float, lon: float) -> int:
        with self._updates_cond:
            self._message_id += 1
            mid = self._message_id
        return self._push({"message": {"message_id": mid, "date": int(time.time()), "from": self._sender(user_id),
                                       "chat": {"id": user_id, "type": "private"},
                                       "location": {"latitude": lat, "longitude": lon}}})

    def buttons(self, chat_id: int) -> list[str]:
        """The callback_data of every button of the last message with buttons sent to `chat_id`."""
        for r in reversed(self.requests):
            if r.path.endswith("/sendMessage"):
                body = r.json()
                if body.get("chat_id") == chat_id and "reply_markup" in body:
                    return [b["callback_data"] for row in body["reply_markup"]["inline_keyboard"] for b in row]
        return []

    def texts(self, chat_id: int) -> list[str]:
        return [t for c, t in list(self.sent.items) if c == chat_id]

    def wait_text(self, chat_id: int, count: int, timeout: float = 30.0) -> str:
        """Wait until the bot has sent `count` messages to `chat_id`; the last of them."""
        items = self.sent.wait_for(lambda xs: sum(1 for c, _ in xs if c == chat_id) >= count, timeout)
        return [t for c, t in items if c == chat_id][count - 1]

    def respond(self, req: Request) -> Answer:
        if req.path.endswith("/answerCallbackQuery"):
            return Answer(200, json.dumps({"ok": True, "result": True}).encode(), {"Content-Type": "application/json"})
        return super().respond(req)
