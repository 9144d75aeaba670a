"""E-mail channel: one plain-text message through an SMTP relay (stdlib `smtplib`, run in a
worker thread so the event loop never blocks on a slow relay).

Every retry of a delivery carries the same `Message-ID` (`<delivery id@sender domain>`) and
`X-Pantau-Delivery` header, so a mail store or a reader's client can drop a repeat. SMTP
answers map onto the shared reasons: 4xx is a temporary refusal (retry), 5xx permanent
(530/534/535 an authentication problem), no answer a connection problem or a timeout.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from services.notify.channels.base import OK, Channel, Reason, Result, failure
from services.notify.messages import Notice, render_text, subject
from shared.channels_config import ContactConfig

_AUTH_CODES = (530, 534, 535)


def build_message(sender: str, target: ContactConfig, notice: Notice, delivery_id: str) -> EmailMessage:
    """The message for one delivery, in the contact's language, personal data masked."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "pantau"
    msg = EmailMessage()
    msg["Subject"] = subject(notice, target.language)
    msg["From"] = sender
    msg["To"] = formataddr((target.name, target.email or ""))
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = f"<{delivery_id}@{domain}>"
    msg["X-Pantau-Delivery"] = delivery_id
    msg["X-Pantau-Incident"] = notice.incident_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(notice, target.language))
    return msg


def smtp_result(code: int) -> Result:
    detail = f"SMTP {code}"
    if 400 <= code < 500:
        return failure(Reason.server_error, True, detail)
    if code in _AUTH_CODES:
        return failure(Reason.auth_error, False, detail)
    return failure(Reason.client_error, False, detail)


class EmailChannel(Channel):
    """Pages by plain-text e-mail through the configured SMTP relay."""

    type = "email"
    address_field = "email"

    async def _send(self, target: ContactConfig | None, notice: Notice, delivery_id: str) -> Result:
        assert target is not None and target.email is not None
        msg = build_message(self.config.sender, target, notice, delivery_id)
        return await asyncio.to_thread(self._deliver, msg, target.email)

    def _deliver(self, msg: EmailMessage, to: str) -> Result:
        cfg = self.config
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username is not None:
                smtp.login(cfg.username, cfg.password.get_secret_value())
            smtp.send_message(msg, from_addr=parseaddr(cfg.sender)[1], to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as e:
            codes = [c for c, _ in e.recipients.values()] or [550]
            return smtp_result(codes[0])
        except smtplib.SMTPResponseException as e:  # auth, sender, data, connect, helo
            return smtp_result(e.smtp_code)
        except smtplib.SMTPNotSupportedError:
            return failure(Reason.client_error, False, "SMTP server does not offer STARTTLS or AUTH")
        except smtplib.SMTPServerDisconnected:
            return failure(Reason.connection_error, True, "SMTP connection closed")
        except TimeoutError:
            return failure(Reason.timeout, True, "SMTP timeout")
        except (OSError, smtplib.SMTPException) as e:  # refused, unreachable, TLS
            return failure(Reason.connection_error, True, type(e).__name__)
        finally:
            if smtp is not None:
                _quit(smtp)
        return OK

    def secrets(self) -> list[str]:
        return [self.config.password.get_secret_value()] if self.config.password is not None else []


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye without letting a failed QUIT turn an accepted message into a retry."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
