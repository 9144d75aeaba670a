"""Slack channel: an incoming webhook, `POST <webhook_url> {"text": ...}`.

Slack answers 200 `ok`, 4xx with a word (`invalid_payload`, `no_service`, ...), 429 with
`Retry-After`; the webhook URL is a secret and never appears in a result.
"""

from __future__ import annotations

from services.notify.channels.base import Channel, Result, http_result
from services.notify.messages import Notice, render_text
from shared.channels_config import ContactConfig

# Slack's message text limit is 40,000 characters; a notice is far below it.
MAX_CHARS = 40_000


def escape(text: str) -> str:
    """Slack mrkdwn control characters (`&`, `<`, `>`) as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(Channel):
    """Pages a Slack room through its incoming webhook."""

    type = "slack"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        language = target.language if target is not None else "id"
        text = render_text(notice, language)
        # The link stays as it is so Slack makes it clickable.
        if notice.ack_url:
            body, sep, rest = text.rpartition(notice.ack_url)
            text = escape(body) + sep + escape(rest)
        else:
            text = escape(text)
        resp = await self.http.post(self.config.webhook_url.get_secret_value(), json={"text": text[:MAX_CHARS]},
                                    timeout=self.timeout())
        return http_result(resp)

    def secrets(self) -> list[str]:
        url = self.config.webhook_url.get_secret_value()
        # The path after the host is what grants access.
        return [url, url.split("://", 1)[-1].split("/", 1)[-1]]
