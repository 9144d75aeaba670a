"""The checks that span the config file: ids used twice, and references from one section to
another (a policy step naming a contact or channel, a rotation naming its members, notify
naming its operator contacts and watchdog policy) that point at nothing.

Each section's fields are checked by its own pydantic model (shared/config.py,
shared/channels_config.py, shared/notify_config.py); what one model cannot see is checked
here, in one pure function per section. `problems(config)` runs them all and returns every
problem as `<key path>: <what is wrong>`; `shared.config.parse` raises them as a ConfigError,
so every service and `pantau up` refuse such a file before anything starts.

A new section adds its function below and its name to CHECKS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from shared.config import Config


def problems(config: "Config") -> list[str]:
    """Every cross-reference problem of `config`, each naming its key path; [] when none."""
    return [p for check in CHECKS for p in check(config)]


def _used_twice(section: str, values: Sequence[Any], field: str = "id") -> Iterator[str]:
    first: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v in first:
            yield f"{section}[{i}].{field}: {v!r} is used twice (first at {section}[{first[v]}])"
        first.setdefault(v, i)


def _shared_secret(section: str, hashes: Sequence[str], field: str) -> Iterator[str]:
    # Only the index: the secret itself (or its hash) never goes into a message.
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h in first:
            yield f"{section}[{i}].{field}: the same as {section}[{first[h]}]'s; each needs its own"
        first.setdefault(h, i)


def sources(config: "Config") -> Iterator[str]:
    yield from _used_twice("sources", [s.id for s in config.sources])
    # A key identifies its source: two sources with one key could publish as each other.
    yield from _shared_secret("sources", [s.key_hash() for s in config.sources], "api_key")


def operators(config: "Config") -> Iterator[str]:
    yield from _used_twice("operators", [o.id for o in config.operators])
    # A token identifies its operator in every ack and resolve they record.
    yield from _shared_secret("operators", [o.token_hash() for o in config.operators], "token")


def contacts(config: "Config") -> Iterator[str]:
    yield from _used_twice("contacts", [c.id for c in config.contacts])


def channels(config: "Config") -> Iterator[str]:
    yield from _used_twice("channels", [c.id for c in config.channels])
    # Telegram answers a second getUpdates reader of the same bot with 409 Conflict: two
    # polling channels on one bot would keep knocking each other off.
    polled: dict[str, str] = {}
    for i, ch in enumerate(config.channels):
        if ch.type == "telegram" and ch.poll_replies:
            token = ch.bot_token.get_secret_value()
            if token in polled:
                yield (f"channels[{i}].poll_replies: channel {polled[token]!r} already polls this bot's replies "
                       f"(Telegram allows one getUpdates reader per bot)")
            polled.setdefault(token, ch.id)


def policies(config: "Config") -> Iterator[str]:
    yield from _used_twice("policies", [p.id for p in config.policies])
    known_contacts = {c.id for c in config.contacts}
    known_channels = {c.id for c in config.channels}
    for i, p in enumerate(config.policies):
        for j, s in enumerate(p.steps):
            at = f"policies[{i}].steps[{j}]"
            for k, t in enumerate(s.notify):
                kind, _, ref = t.partition(":")
                if kind == "contact" and ref not in known_contacts:
                    yield f"{at}.notify[{k}]: unknown contact {ref!r}"
                if t == "operators" and not config.notify.operator_contacts:
                    yield f"{at}.notify[{k}]: 'operators' needs notify.operator_contacts"
            for k, ch in enumerate(s.channels or []):
                if ch not in known_channels:
                    yield f"{at}.channels[{k}]: unknown channel {ch!r}"


def rotations(config: "Config") -> Iterator[str]:
    known_contacts = {c.id for c in config.contacts}
    yield from _used_twice("rotations", [r.region for r in config.rotations], "region")
    for i, r in enumerate(config.rotations):
        for j, m in enumerate(r.members):
            if m not in known_contacts:
                yield f"rotations[{i}].members[{j}]: unknown contact {m!r}"
        for j, o in enumerate(r.overrides):
            if o.contact not in known_contacts:
                yield f"rotations[{i}].overrides[{j}].contact: unknown contact {o.contact!r}"


def notify(config: "Config") -> Iterator[str]:
    settings = config.notify
    known_contacts = {c.id for c in config.contacts}
    for i, c in enumerate(settings.operator_contacts):
        if c not in known_contacts:
            yield f"notify.operator_contacts[{i}]: unknown contact {c!r}"
    wp = settings.watchdog_policy
    if wp is not None and wp not in {p.id for p in config.policies}:
        yield f"notify.watchdog_policy: unknown policy {wp!r}"
    if not wp and not settings.operator_contacts:
        for i, s in enumerate(config.sources):
            if s.silent_after_minutes:
                yield (f"sources[{i}].silent_after_minutes: nobody would hear of this source's silence; "
                       f"name notify.operator_contacts or a notify.watchdog_policy")
                break


def reporters(config: "Config") -> Iterator[str]:
    from shared.reporting_config import reporter_problems

    yield from _used_twice("reporters", [r.id for r in config.reporters])
    yield from reporter_problems(config.reporters, config.sources)


CHECKS: tuple[Callable[["Config"], Iterable[str]], ...] = (
    sources, operators, contacts, channels, policies, rotations, notify, reporters,
)

__all__ = ["CHECKS", "problems"]
