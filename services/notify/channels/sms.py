"""SMS / WhatsApp gateway channel: one HTTP request built from the configured template.

The text is the short form of the notice (`max_chars`, 160 by default: one GSM-7 segment),
with the link always whole. Template values are escaped for the template's encoding, so a
quote or an ampersand in a reason cannot break the gateway's request.
"""

from __future__ import annotations

import urllib.parse

import orjson

from services.notify.channels.base import Channel, Result, http_result
from services.notify.messages import Notice, render_text
from shared.channels_config import ContactConfig

_CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}


def _escape(value: str, encoding: str) -> str:
    if encoding == "json":
        return orjson.dumps(value).decode()[1:-1]
    return urllib.parse.quote_plus(value)


def render_request(template: str, encoding: str, *, to: str, text: str, delivery_id: str) -> str:
    """The request body (or, for GET, the query string) for one message."""
    values = {"to": to, "to_digits": to.lstrip("+"), "text": text, "delivery_id": delivery_id}
    return template.format(**{k: _escape(v, encoding) for k, v in values.items()})


class SmsChannel(Channel):
    """Pages by SMS (or WhatsApp) through an HTTP gateway described by a request template."""

    type = "sms"
    address_field = "phone"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        assert target is not None and target.phone is not None
        cfg = self.config
        text = render_text(notice, target.language, max_chars=cfg.max_chars)
        headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
        if cfg.method == "GET":
            query = render_request(cfg.body_template, "form", to=target.phone, text=text, delivery_id=delivery_id)
            sep = "&" if "?" in cfg.url else "?"
            resp = await self.http.request("GET", cfg.url + sep + query, headers=headers, timeout=self.timeout())
        else:
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = _CONTENT_TYPES[cfg.encoding]
            body = render_request(cfg.body_template, cfg.encoding, to=target.phone, text=text, delivery_id=delivery_id)
            resp = await self.http.request(cfg.method, cfg.url, content=body.encode(), headers=headers,
                                           timeout=self.timeout())
        return http_result(resp)

    def secrets(self) -> list[str]:
        out = [v.get_secret_value() for v in self.config.headers.values()]
        # "Bearer abc…": the credential part on its own too.
        out += [v.split(" ", 1)[1] for v in out if " " in v]
        # Gateways often take their key in the URL's query string.
        query = urllib.parse.urlsplit(self.config.url).query
        out += [v for _, v in urllib.parse.parse_qsl(query) if len(v) >= 8]
        return out
