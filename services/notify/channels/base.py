"""The one interface every channel implements, its result, and the shared rules for turning
HTTP answers and transport errors into that result.

A channel makes exactly one attempt per `send` and says whether a failure is worth
retrying; retrying, backoff, fallback and dead-lettering belong to `services.notify.delivery`.
The failure reason is a closed list, so it can be a metric label.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from services.notify.channels.http import HttpAnswer, HttpError, HttpPool, UnsupportedURL

if TYPE_CHECKING:
    from services.notify.messages import Notice
    from shared.channels_config import ContactConfig


class Reason(StrEnum):
    """Why an attempt ended as it did (a metric label: keep this list closed)."""

    ok = "ok"
    client_error = "client_error"
    server_error = "server_error"
    rate_limited = "rate_limited"
    auth_error = "auth_error"
    timeout = "timeout"
    connection_error = "connection_error"


REASONS = tuple(r.value for r in Reason)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt. `detail` is a short, secret-free note for operators
    ("HTTP 503", "SMTP 451", "ConnectError"); `retry_after_s` is the peer's own wait hint."""

    ok: bool
    retry: bool
    reason: Reason
    detail: str = ""
    retry_after_s: float | None = None


OK = Result(True, False, Reason.ok)


def failure(reason: Reason, retry: bool, detail: str, retry_after_s: float | None = None) -> Result:
    return Result(False, retry, reason, detail, retry_after_s)


def status_result(code: int, detail: str = "", retry_after_s: float | None = None) -> Result:
    """The one rule for HTTP answers: 2xx done; 429 and 5xx retry; 401/403 are an
    authentication problem and other 4xx a request problem, neither worth retrying."""
    detail = detail or f"HTTP {code}"
    if 200 <= code < 300:
        return OK
    if code == 429:
        return failure(Reason.rate_limited, True, detail, retry_after_s)
    if code >= 500:
        return failure(Reason.server_error, True, detail, retry_after_s)
    if code in (401, 403):
        return failure(Reason.auth_error, False, detail)
    return failure(Reason.client_error, False, detail)


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds (the HTTP-date form is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def http_result(resp: HttpAnswer) -> Result:
    return status_result(resp.status_code, retry_after_s=retry_after(resp.headers.get("retry-after")))


def transport_result(exc: BaseException) -> Result:
    """A request that got no HTTP answer. Only the exception's class is kept: the HTTP
    library's messages can quote the URL, and URLs can carry secrets."""
    if isinstance(exc, TimeoutError):
        return failure(Reason.timeout, True, type(exc).__name__)
    if isinstance(exc, UnsupportedURL):
        return failure(Reason.client_error, False, type(exc).__name__)
    return failure(Reason.connection_error, True, type(exc).__name__)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by `***`."""
    for s in secrets:
        if len(s) < 4:
            continue
        for form in {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s)}:
            text = text.replace(form, "***")
    return text


class Channel:
    """One configured channel. Subclasses set `type` and implement `_send`.

    `send` never raises for a delivery problem and never lets a secret into the result."""

    type: ClassVar[str]
    #: The contact field this channel addresses (None: the channel has a fixed destination).
    address_field: ClassVar[str | None] = None

    def __init__(self, config: Any, http: HttpPool):
        self.config = config
        self.id: str = config.id
        self.http = http

    async def send(self, target: "ContactConfig | None", notice: "Notice", delivery_id: str) -> Result:
        """Make one attempt to deliver `notice` to `target`."""
        if self.address_field is not None and (target is None or getattr(target, self.address_field) is None):
            who = target.id if target is not None else "(no contact)"
            return failure(Reason.client_error, False, f"contact {who} has no {self.address_field}")
        try:
            result = await self._send(target, notice, delivery_id)
        except (HttpError, OSError) as e:  # OSError includes TimeoutError
            result = transport_result(e)
        if result.detail:
            result = Result(result.ok, result.retry, result.reason, redact(result.detail, self.secrets()),
                            result.retry_after_s)
        return result

    async def _send(self, target: "ContactConfig | None", notice: "Notice", delivery_id: str) -> Result:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Every secret this channel holds, so nothing it returns can repeat one."""
        return []

    def timeout(self) -> float:
        return float(self.config.timeout_s)

    async def aclose(self) -> None:
        """Release what the channel holds of its own (the shared HTTP client is closed by its owner)."""
