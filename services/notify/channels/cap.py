"""CAP channel: POSTs the incident's CAP 1.2 alert to another government system, signed exactly
like a webhook (`X-Pantau-Delivery`, `X-Pantau-Signature`, contract 1.1, over the raw XML), so
a receiver verifies it with `pantau.webhook.verify` as it would a webhook page.

`Content-Type: application/cap+xml`, the media type registered for CAP documents. The message
type follows the notice: triggered → Alert, resolved → Cancel, anything else → Update. An Update
or Cancel references the incident's original Alert, whose identifier and `sent` are the same
as in the notify API's `/v1/cap/{id}.xml` (both derive from the incident id and its opening
time).
"""

from __future__ import annotations

from services.notify import cap
from services.notify.channels.base import Result
from services.notify.channels.webhook import WebhookChannel
from services.notify.messages import Notice
from shared.channels_config import ContactConfig
from shared.times import parse_ts

# Notice status → the kind of CAP state it is (see services/notify/cap.py).
_KINDS = {"triggered": "alert", "acknowledged": "ack", "resolved": "cancel", "escalated": "step", "reminder": "step"}
DEFAULT_SENDER = "pantau@localhost"


def cap_body(notice: Notice, sender: str) -> bytes:
    """The CAP XML for one notice (pure: the same notice gives the same bytes)."""
    opened = parse_ts(notice.opened_at)
    subject = cap.Subject(notice.incident_id, notice.region_code, notice.region_name, notice.category,
                          tuple(notice.reasons), opened)
    kind = _KINDS[notice.status]
    state = cap.State(kind, opened if kind == "alert" else parse_ts(notice.updated_at), notice.level)
    earlier = [] if kind == "alert" else [cap.State("alert", opened, notice.level)]
    return cap.alert_xml(subject, state, earlier, sender)


class CapChannel(WebhookChannel):
    """POSTs the incident's CAP 1.2 alert (application/cap+xml), signed like the webhook channel."""

    type = "cap"
    #: Set by the service from notify.public_url when the channel's config names no sender.
    default_sender = DEFAULT_SENDER

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        # Always the channel's own url: a contact's personal webhook endpoint expects the JSON.
        body = cap_body(notice.masked() if self.config.mask_pii else notice, self.config.sender or self.default_sender)
        return await self.post_signed(self.config.url, body, cap.MEDIA_TYPE, delivery_id)
