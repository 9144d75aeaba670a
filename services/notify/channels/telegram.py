"""Telegram channel: Bot API `POST {base_url}/bot{token}/sendMessage` with `{chat_id, text}`.

The Bot API answers `{"ok": true, "result": {...}}`, or `{"ok": false, "error_code": n,
"description": "...", "parameters": {"retry_after": s}}`; its `error_code` follows HTTP
(400 bad request, 401 bad token, 403 bot blocked, 429 flood control with `retry_after`).
The token is part of the URL, so no URL ever reaches a result or a log line.
"""

from __future__ import annotations

import orjson

from services.notify.channels.base import Channel, Result, status_result
from services.notify.messages import Notice, render_text
from shared.channels_config import ContactConfig

# sendMessage takes at most 4096 characters of text.
MAX_CHARS = 4096


class TelegramChannel(Channel):
    type = "telegram"
    address_field = "telegram_chat_id"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        assert target is not None and target.telegram_chat_id is not None
        text = render_text(notice, target.language)
        if len(text) > MAX_CHARS:
            text = render_text(notice, target.language, max_chars=MAX_CHARS)
        url = f"{self.config.base_url}/bot{self.config.bot_token.get_secret_value()}/sendMessage"
        resp = await self.http.post(url, json={"chat_id": target.telegram_chat_id, "text": text},
                                    timeout=self.timeout())
        try:
            answer = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            return status_result(resp.status_code)
        if answer.get("ok") is True and 200 <= resp.status_code < 300:
            return status_result(resp.status_code)
        code = answer.get("error_code")
        code = code if isinstance(code, int) and 400 <= code < 600 else resp.status_code
        if 200 <= code < 300:  # "ok": false with a 2xx is still a failure
            code = 500
        params = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        after = params.get("retry_after")
        after = float(after) if isinstance(after, (int, float)) and after >= 0 else None
        description = answer.get("description")
        detail = f"Telegram {code}" + (f": {description[:120]}" if isinstance(description, str) else "")
        return status_result(code, detail, after)

    def secrets(self) -> list[str]:
        token = self.config.bot_token.get_secret_value()
        return [token, token.split(":", 1)[-1]]
