"""Timestamps as the topics and APIs carry them: RFC 3339 in UTC with milliseconds, and back."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(ts: float) -> str:
    """Unix seconds as `2024-11-27T01:30:00.000Z`."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(v: str) -> float:
    """An ISO 8601 / RFC 3339 time with an offset as Unix seconds; a time without one is refused,
    since its meaning would depend on the reader's clock."""
    dt = datetime.fromisoformat(v.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError(f"{v!r} has no UTC offset")
    return dt.timestamp()


__all__ = ["rfc3339", "parse_ts"]
