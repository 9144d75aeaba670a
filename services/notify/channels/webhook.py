"""Webhook channel: POSTs the contract JSON, signed, with a delivery id receivers can dedup on.

Headers: `Content-Type: application/json`, `X-Pantau-Delivery: <delivery id>` (the same on
every retry of one delivery) and `X-Pantau-Signature: t=<unix seconds>,sha256=<hex
HMAC-SHA256(secret, "<t>.<delivery id>.<raw body>")>` (contract 1.1). The delivery id and the
time are signed so that a captured page cannot be replayed under a new id or days later;
receivers check with `pantau.webhook.verify`.
"""

from __future__ import annotations

import time

from pantau.webhook import sign
from services.notify.channels.base import Channel, Result, http_result
from services.notify.messages import Notice, webhook_body
from shared.channels_config import ContactConfig

USER_AGENT = "pantau-notify/1"


class WebhookChannel(Channel):
    """POSTs the contract's incident JSON, signed, to the channel's URL or the contact's own."""

    type = "webhook"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        body = webhook_body(notice.masked() if self.config.mask_pii else notice)
        url = target.webhook if target is not None and target.webhook else self.config.url
        return await self.post_signed(url, body, "application/json", delivery_id)

    async def post_signed(self, url: str, body: bytes, content_type: str, delivery_id: str) -> Result:
        """One signed POST (contract 1.1); the CAP channel sends its XML through this too."""
        resp = await self.http.post(url, content=body, timeout=self.timeout(), headers={
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            # Signed per attempt: a retry minutes later carries its own fresh time.
            "X-Pantau-Signature": sign(self.config.secret.get_secret_value(), delivery_id, body, int(time.time())),
            "X-Pantau-Delivery": delivery_id,
        })
        return http_result(resp)

    def secrets(self) -> list[str]:
        return [self.config.secret.get_secret_value()]
