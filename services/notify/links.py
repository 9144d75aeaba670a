"""Signed acknowledgement links: the one-tap `GET /ack/{token}` a coordinator opens from a
message, without an operator token.

A token is `base64url(payload) "." base64url(mac)`, where the payload names the incident, the
contact it was sent to (or `channel:<id>` for a shared room), the expiry (Unix seconds), the
incident's epoch when the link was made and a random nonce, and the mac is
HMAC-SHA256 of the payload with the link secret, cut to 128 bits to keep links short enough
for an SMS. A token acknowledges only the incident it names, only until it expires, and only
while the incident is still in the epoch the link was made in (the API checks that: a level
rise starts a new one); the signature is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_SEP = "\x1f"
# 2: the epoch joined the payload. Links of version 1 could acknowledge a re-raised incident.
_VERSION = "2"
MAC_BYTES = 16


class LinkError(Exception):
    """A token that does not acknowledge anything; `reason` is a closed word list:
    malformed, bad_signature, expired, wrong_incident."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AckClaim:
    """What a valid token says."""

    incident_id: str
    contact: str
    expires_at: int
    epoch: int = 0


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(secret: bytes, incident_id: str, expires_at: float, contact: str = "", nonce: bytes | None = None,
               epoch: int = 0) -> str:
    if _SEP in incident_id or _SEP in contact:
        raise ValueError("incident id and contact must not contain control characters")
    nonce = secrets.token_bytes(6) if nonce is None else nonce
    payload = _SEP.join((_VERSION, incident_id, contact, str(int(expires_at)), str(int(epoch)),
                         _b64(nonce))).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str, now: float, incident_id: str | None = None) -> AckClaim:
    """The claim of a genuine, unexpired token (for `incident_id` when given), else LinkError."""
    if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
        raise LinkError("malformed", "this link is not a Pantau acknowledgement link")
    p64, m64 = token.split(".")
    try:
        payload, mac = _unb64(p64), _unb64(m64)
    except (ValueError, TypeError):
        raise LinkError("malformed", "this link is not a Pantau acknowledgement link") from None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise LinkError("bad_signature", "this link is not genuine (it was changed or signed with another key)")
    try:
        fields = payload.decode().split(_SEP)
    except UnicodeDecodeError:
        raise LinkError("malformed", "this link is not a Pantau acknowledgement link") from None
    if fields[0] != _VERSION:
        raise LinkError("malformed", "this link was made by another version of Pantau; use a newer message")
    try:
        _version, inc, contact, exp, ep, _nonce = fields
        expires_at, epoch = int(exp), int(ep)
    except ValueError:
        raise LinkError("malformed", "this link is not a Pantau acknowledgement link") from None
    if now >= expires_at:
        raise LinkError("expired", "this link has expired; acknowledge from a newer message or ask an operator")
    if incident_id is not None and not hmac.compare_digest(inc.encode(), incident_id.encode()):
        raise LinkError("wrong_incident", "this link belongs to another incident")
    return AckClaim(inc, contact, expires_at, epoch)


def epoch_of(url: str) -> int | None:
    """The epoch written in a link this service made (not verified: for our own pages' records)."""
    try:
        payload = _unb64(url.rsplit("/", 1)[-1].split(".")[0]).decode()
        fields = payload.split(_SEP)
        return int(fields[4]) if fields[0] == _VERSION and len(fields) == 6 else None
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


@dataclass(frozen=True)
class LinkMaker:
    """Makes ack URLs under the service's public URL."""

    secret: bytes
    public_url: str
    ttl_s: float

    def url(self, incident_id: str, now: float, contact: str = "", epoch: int = 0) -> str:
        return f"{self.public_url}/ack/{make_token(self.secret, incident_id, now + self.ttl_s, contact, epoch=epoch)}"

    def verify(self, token: str, now: float, incident_id: str | None = None) -> AckClaim:
        return verify(self.secret, token, now, incident_id)
