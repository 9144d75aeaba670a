"""Webhook channel: POSTs the contract JSON, signed, with a delivery id receivers can dedup on.

Headers: `Content-Type: application/json`, `X-Pantau-Signature: sha256=<hex HMAC-SHA256 of
the raw body with the channel secret>`, `X-Pantau-Delivery: <delivery id>` (the same on
every retry of one delivery, so a receiver drops repeats).
"""

from __future__ import annotations

import hashlib
import hmac

from services.notify.channels.base import Channel, Result, http_result
from services.notify.messages import Notice, webhook_body
from shared.channels_config import ContactConfig

USER_AGENT = "pantau-notify/1"


def signature(secret: str, body: bytes) -> str:
    """The `X-Pantau-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: constant-time comparison of the header with our own signature."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


class WebhookChannel(Channel):
    type = "webhook"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        body = webhook_body(notice.masked() if self.config.mask_pii else notice)
        url = target.webhook if target is not None and target.webhook else self.config.url
        resp = await self.http.post(url, content=body, timeout=self.timeout(), headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Pantau-Signature": signature(self.config.secret.get_secret_value(), body),
            "X-Pantau-Delivery": delivery_id,
        })
        return http_result(resp)

    def secrets(self) -> list[str]:
        return [self.config.secret.get_secret_value()]
