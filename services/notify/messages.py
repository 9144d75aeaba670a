"""What a coordinator reads: the incident notice, its contract JSON for webhooks, and its text
for people (Bahasa Indonesia by default, English on request), short enough for one SMS.

Text for people never carries personal data from report text unmasked (UU PDP): the free
text (summary, reasons) goes through `lokal`'s detector, which turns names, NIK, phone
numbers, e-mail addresses and the like into partial masks (`B*** S***`, `6571********0001`,
`0812****7890`, `b***@gmail.com`). The webhook body is the contract event as it is on
`pantau.escalations.v1`, for systems rather than phones; a webhook channel can mask it too.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import orjson

from shared.regions import Registry
from shared.categories import CATEGORIES, CATEGORY_NAMES
from shared.levels import LEVELS
from shared.words import words

STATUSES = ("triggered", "escalated", "acknowledged", "resolved", "reminder")
Language = Literal["id", "en"]

# Contract order of the webhook body / escalation event.
_FIELDS = ("version", "incident_id", "status", "level", "region_code", "region_name", "category", "step",
           "summary", "reasons", "report_ids", "ack_url", "opened_at", "updated_at")


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice:
    """One incident lifecycle event as channels deliver it (contract: Incident lifecycle)."""

    incident_id: str
    status: str
    level: str
    region_code: str
    region_name: str
    category: str
    step: int
    summary: str
    reasons: tuple[str, ...] = ()
    report_ids: tuple[str, ...] = ()
    ack_url: str
    opened_at: str
    updated_at: str
    version: str = "1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "report_ids", tuple(self.report_ids))
        if self.version != "1":
            raise ValueError(f"version must be '1', not {self.version!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")

    def to_dict(self) -> dict[str, Any]:
        """The contract JSON object, in contract order."""
        # Every field is a str, an int or a tuple of str: asdict's recursive deep copy cost
        # ~0.5 ms with a full list of report ids, twice per delivery, for nothing.
        return {k: list(v) if isinstance(v := getattr(self, k), tuple) else v for k in _FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Notice":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown notice field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def masked(self) -> "Notice":
        """The same notice with personal data in its free text masked."""
        allow = (self.region_name,)
        return replace(self, summary=mask_text(self.summary, allow),
                       reasons=tuple(mask_text(r, allow) for r in self.reasons))


def webhook_body(notice: Notice) -> bytes:
    """Exactly the contract JSON (UTF-8, compact): what the signature covers."""
    return orjson.dumps(notice.to_dict())


def mask_text(text: str, allow: tuple[str, ...] = ()) -> str:
    """Personal data in `text` replaced by partial masks (see module docstring)."""
    return _mask(text, allow)


@lru_cache(maxsize=4096)
def _mask(text: str, allow: tuple[str, ...]) -> str:
    if not text:
        return text
    import lokal

    return lokal.mask_pii(text, mode="partial", allow=[a for a in allow if a]).text


# --------------------------------------------------------------------------- words


_STATUS_WORDS = words("status")

# The alert ladder keeps its Indonesian names in both languages (they are what the
# regulations and the coordinators use); English gets a gloss in the long form.
_LEVEL_GLOSS = {"normal": "normal", "waspada": "advisory", "siaga": "alert", "awas": "warning, highest"}

_LABELS = words("labels")

_MONTHS = {
    "id": ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def category_name(category: str, language: Language = "id") -> str:
    return CATEGORY_NAMES[_lang(language)].get(category, category)


def _lang(language: str) -> Language:
    return "en" if language == "en" else "id"


def local_time(ts: str, region_code: str, language: Language = "id") -> str:
    """`2024-11-27T06:05:00Z` in Tarakan → `27 Nov 2024 14:05 WITA`."""
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return ts
    if dt.tzinfo is None:
        return ts
    tz = Registry.timezone_of(region_code)
    local = dt.astimezone(tz)
    month = _MONTHS[_lang(language)][local.month - 1]
    return f"{local.day} {month} {local.year} {local:%H:%M} {tz.tzname(None)}"


def _link_label(notice: Notice, language: Language) -> str:
    w = _LABELS[language]
    return w["open"] if notice.status in ("acknowledged", "resolved") else w["ack"]


def subject(notice: Notice, language: Language = "id") -> str:
    """One line for an e-mail subject: `[SIAGA] Kota Tarakan: Pengerahan massa (BARU)`."""
    language = _lang(language)
    return (f"[{notice.level.upper()}] {notice.region_name}: {category_name(notice.category, language)} "
            f"({_STATUS_WORDS[language][notice.status]})")


def render_text(notice: Notice, language: Language = "id", max_chars: int | None = None) -> str:
    """The message for a person, personal data masked.

    Without `max_chars`: the full message (status, step, summary, every reason, report count,
    times in the region's own zone, link). With `max_chars` (SMS): one line of level, region,
    category, status and the first reason (the summary when there is none), then the link;
    only the reason is shortened, never the link, and the text is folded to plain ASCII so
    that 160 characters fit one GSM-7 SMS segment.
    """
    language = _lang(language)
    n = notice.masked()
    if max_chars is None:
        return _long(n, language)
    return _short(n, language, max_chars)


def _long(n: Notice, language: Language) -> str:
    w = _LABELS[language]
    level = n.level.upper() if language == "id" else f"{n.level.upper()} ({_LEVEL_GLOSS[n.level]})"
    lines = [
        f"[{level}] {n.region_name} ({n.region_code})",
        f"{category_name(n.category, language)} - {_STATUS_WORDS[language][n.status]}, {w['step']} {n.step}",
    ]
    if n.summary:
        lines += ["", n.summary]
    if n.reasons:
        lines += ["", f"{w['reasons']}:"] + [f"- {r}" for r in n.reasons]
    lines += [""]
    if n.report_ids:
        lines.append(f"{w['reports']}: {len(n.report_ids)}")
    lines.append(f"{w['since']}: {local_time(n.opened_at, n.region_code, language)}")
    if n.updated_at != n.opened_at:
        lines.append(f"{w['updated']}: {local_time(n.updated_at, n.region_code, language)}")
    lines.append(f"{w['incident']}: {n.incident_id}")
    if n.ack_url:
        lines += ["", f"{_link_label(n, language)}: {n.ack_url}"]
    return "\n".join(lines)


_ELLIPSIS = "..."


def _short(n: Notice, language: Language, max_chars: int) -> str:
    # A new incident needs no status word; every later message says what changed.
    status = "" if n.status == "triggered" else f" ({_STATUS_WORDS[language][n.status]})"
    head = ascii_fold(f"{n.level.upper()} {n.region_name}: {category_name(n.category, language)}{status}")
    tail = f" {_link_label(n, language)}: {n.ack_url}" if n.ack_url else ""
    detail = ascii_fold(" ".join((n.reasons[0] if n.reasons else n.summary).split()))
    if len(tail) > max_chars:
        return tail.lstrip()  # the link is the one thing a coordinator cannot do without
    budget = max_chars - len(tail)
    if len(head) + 1 > budget:
        return (_cut(head, budget) + tail) if budget > len(_ELLIPSIS) + 1 else tail.lstrip()
    text = head + "."
    room = budget - len(text) - 1  # the space before the reason
    if detail and room >= min(len(detail), 16):  # a few words of a reason, or none
        text += " " + _cut(detail, room)
    return text + tail


def _cut(s: str, limit: int) -> str:
    """`s` within `limit` characters, shortened at a word boundary where one is near."""
    if len(s) <= limit:
        return s
    keep = s[: max(0, limit - len(_ELLIPSIS))]
    space = keep.rfind(" ")
    if space >= len(keep) * 2 // 3:
        keep = keep[:space]
    return keep.rstrip(" ,;:-") + _ELLIPSIS


_FOLD = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                       "\u2026": "...", "\u00a0": " ", "\u2264": "<=", "\u2265": ">=", "\u00d7": "x",
                       # ASCII that GSM-7 lacks or counts twice (its extension table)
                       "[": "(", "]": ")", "{": "(", "}": ")", "\\": "/", "|": "/", "^": " ", "~": "-", "`": "'"})


def ascii_fold(s: str) -> str:
    """Plain text in GSM-7's basic alphabet: accents dropped, typographic punctuation and the
    characters GSM-7 counts twice simplified, the rest removed."""
    s = unicodedata.normalize("NFKD", s.translate(_FOLD))
    return "".join(c for c in s if c.isascii() and (c.isprintable() or c == " "))
