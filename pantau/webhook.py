"""Verifying Pantau's signed webhook requests: the receiver's half of contract 1.1.

Each request carries `X-Pantau-Delivery: <id>` and
`X-Pantau-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256(secret, "<t>.<id>.<raw body>")>`.
A receiver accepts it only when the MAC matches, `t` is within 300 s of its own clock and the
delivery id is new to it:

    from pantau.webhook import Rejected, SeenDeliveries, verify

    seen = SeenDeliveries()          # one per receiver process, shared by its threads

    def handle(headers, raw_body):
        try:
            verify(SECRET, raw_body, headers.get("X-Pantau-Signature"), headers.get("X-Pantau-Delivery"), seen)
        except Rejected as e:
            return 401, e.reason      # malformed | bad_signature | stale | replayed
        ...                           # act on orjson.loads(raw_body)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time

TOLERANCE_S = 300
_HEADER = re.compile(r"^t=([0-9]{1,12}),sha256=([0-9a-f]{64})$")


class Rejected(Exception):
    """A request that must not be acted on; `reason` is malformed, bad_signature, stale or replayed."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _mac(secret: str | bytes, t: int, delivery_id: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{t}.{delivery_id}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, delivery_id: str, body: bytes, t: int) -> str:
    """The `X-Pantau-Signature` value for one attempt of one delivery."""
    return f"t={int(t)},sha256={_mac(secret, int(t), delivery_id, body)}"


class SeenDeliveries:
    """Delivery ids accepted in the last two tolerance windows. Older ids need no memory: their
    timestamps are out of tolerance, so a replay of them is refused as stale anyway."""

    def __init__(self, tolerance_s: float = TOLERANCE_S):
        self._keep_s = 2 * tolerance_s
        self._ids: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, delivery_id: str, now: float) -> bool:
        """Record the id; False when it was already there."""
        with self._lock:
            if len(self._ids) > 1024:
                cutoff = now - self._keep_s
                self._ids = {k: v for k, v in self._ids.items() if v >= cutoff}
            if delivery_id in self._ids:
                return False
            self._ids[delivery_id] = now
            return True


def check_signature(secret: str | bytes, body: bytes, header: str | None, delivery_id: str | None) -> int:
    """The signed timestamp when the MAC over (t, delivery id, body) matches, else Rejected.
    Only half a check: `verify` adds the clock and the replay memory."""
    m = _HEADER.match(header or "")
    if m is None or not delivery_id:
        raise Rejected("malformed", "X-Pantau-Signature must be t=<unix seconds>,sha256=<hex> with X-Pantau-Delivery")
    t = int(m.group(1))
    if not hmac.compare_digest(_mac(secret, t, delivery_id, body), m.group(2)):
        raise Rejected("bad_signature", "the signature does not match this body, delivery id and time")
    return t


def verify(secret: str | bytes, body: bytes, header: str | None, delivery_id: str | None, seen: SeenDeliveries,
           now: float | None = None, tolerance_s: float = TOLERANCE_S) -> None:
    """Accept a request (return None) or raise Rejected saying why."""
    now = time.time() if now is None else now
    t = check_signature(secret, body, header, delivery_id)
    if abs(now - t) > tolerance_s:
        raise Rejected("stale", f"signed {int(now - t)} s from now; more than {int(tolerance_s)} s apart")
    if not seen.add(delivery_id, now):  # type: ignore[arg-type]
        raise Rejected("replayed", "this delivery id was already accepted")


__all__ = ["Rejected", "SeenDeliveries", "TOLERANCE_S", "check_signature", "sign", "verify"]
