"""Rules for secrets that sign things (ack links, webhook pages): long, random-looking and not
one of the placeholders people copy from example files."""

from __future__ import annotations

import secrets

MIN_BYTES = 32

# Values shipped in this repository's own example and demo files, and the usual stand-ins.
PLACEHOLDERS = frozenset({
    "change-me-link-secret-at-least-32-characters",
    "change-me-webhook-secret-0123456789",
    "demo-link-secret-0123456789abcdef",
    "demo-webhook-secret-not-for-production",
    "secret", "changeme", "password",
})
# A value containing one of these was written by a person filling a template, not generated.
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
                     "placeholder", "not-for-production", "your-secret", "yoursecret", "example")
# Fewer distinct characters than this is a pattern (`xxxx…`, `0123…0123`), not a random value.
MIN_DISTINCT = 10


def problem(value: str) -> str | None:
    """Why `value` cannot sign anything, in words for the config's author; None when it can."""
    if not value:
        return "is empty (an environment variable that is set but empty gives an empty value); " \
               "make one with `pantau secret`"
    lowered = value.lower()
    if lowered in PLACEHOLDERS or any(w in lowered for w in PLACEHOLDER_WORDS):
        return "is a placeholder from an example file; make a real one with `pantau secret`"
    if len(value.encode()) < MIN_BYTES:
        return f"must be at least {MIN_BYTES} bytes (it signs what attackers would forge); make one with `pantau secret`"
    if len(set(value)) < MIN_DISTINCT:
        return "is a repeated pattern, not a random value; make one with `pantau secret`"
    return None


def fresh() -> str:
    """A new random signing secret (256 bits, URL-safe, 43 characters)."""
    return secrets.token_urlsafe(MIN_BYTES)
