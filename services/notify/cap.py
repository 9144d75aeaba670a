"""CAP 1.2 (OASIS Common Alerting Protocol) messages and their Atom feed, built from an incident.

Pure functions: no I/O. An incident's life is a list of CAP messages, one per state:

    opened            → msgType Alert
    level changed     → msgType Update   (references: every earlier message)
    acknowledged      → msgType Update
    resolved          → msgType Cancel   (and nothing after it)

A message's identifier is derived from the incident id, the kind of state and the state's
time in milliseconds, so the same state always gives the same identifier and the same
`sent`; a receiver that fetched it before recognises it. CAP times carry a numeric offset
and whole seconds (the XSD's pattern refuses `Z` and fractions): Pantau writes them in the
region's own time zone (WIB +07:00, WITA +08:00, WIT +09:00).

Level → urgency, severity, certainty, responseType (documented in the README, *CAP 1.2*):
normal Past/Minor/Unlikely/AllClear · waspada Future/Moderate/Possible/Monitor ·
siaga Expected/Severe/Likely/Prepare · awas Immediate/Extreme/Observed/Execute.
A Cancel keeps the last level's severity and certainty, with urgency Past and AllClear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Literal, Sequence
from xml.etree import ElementTree as ET

from services.notify.incident import summarize
from services.notify.messages import category_name
from shared.regions import registry
from shared.times import parse_ts
from shared.words import words

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"

MsgType = Literal["Alert", "Update", "Cancel"]

# level → (urgency, severity, certainty, responseType)
LEVEL_MAP: dict[str, tuple[str, str, str, str]] = {
    "normal": ("Past", "Minor", "Unlikely", "AllClear"),
    "waspada": ("Future", "Moderate", "Possible", "Monitor"),
    "siaga": ("Expected", "Severe", "Likely", "Prepare"),
    "awas": ("Immediate", "Extreme", "Observed", "Execute"),
}

RESTRICTION = ("Hanya untuk operator Pantau, koordinator yang ditugaskan dan instansi penerima yang ditunjuk; "
               "jangan diteruskan ke publik. / For Pantau operators, assigned coordinators and designated "
               "receiving agencies only; not for public release.")
LANGUAGES = (("id", "id-ID"), ("en", "en-US"))
_WORDS = words("cap")
_STATE_KINDS = {"opened": "alert", "level": "level", "acknowledged": "ack", "resolved": "cancel"}


@dataclass(frozen=True, slots=True)
class Subject:
    """What every message of one incident is about."""

    incident_id: str
    region_code: str
    region_name: str
    category: str
    reasons: tuple[str, ...]
    opened_at: float


@dataclass(frozen=True, slots=True)
class State:
    """One CAP-worthy state of an incident: `kind` is alert, level, ack, step or cancel."""

    kind: str
    at: float
    level: str

    @property
    def msg_type(self) -> MsgType:
        return "Alert" if self.kind == "alert" else "Cancel" if self.kind == "cancel" else "Update"


def identifier(incident_id: str, state: State) -> str:
    """Stable per state; CAP forbids spaces, commas, `<` and `&` in it (incident ids have none)."""
    return f"urn:pantau:cap:{incident_id}:{state.kind}:{round(state.at * 1000)}"


def cap_time(ts: float, region_code: str) -> str:
    """`2024-11-27T14:30:00+08:00`: whole seconds, the region's own offset, never `Z`."""
    return datetime.fromtimestamp(int(ts), registry().timezone_of(region_code)).isoformat(timespec="seconds")


def states(timeline: Iterable[dict[str, Any]], opened_at: float, level: str,
           resolved_at: float | None = None) -> list[State]:
    """The incident's CAP states from its timeline (opened, level, acknowledged, resolved),
    ending at the first resolve. An incident whose timeline lacks its opening still starts
    with an Alert at `opened_at`."""
    out: list[State] = []
    current = level
    for e in timeline:
        kind = _STATE_KINDS.get(e.get("kind", ""))
        if kind is None or "at" not in e:
            continue
        if kind == "alert" and out:
            continue
        current = e.get("level", current) if kind in ("alert", "level") else current
        if not out and kind != "alert":
            out.append(State("alert", opened_at, current if kind == "ack" else e.get("previous", current)))
        out.append(State(kind, parse_ts(e["at"]), current))
        if kind == "cancel":
            return out
    if not out:
        out.append(State("alert", opened_at, level))
    if resolved_at is not None:
        out.append(State("cancel", resolved_at, current))
    return out


def alert_xml(subject: Subject, state: State, earlier: Sequence[State], sender: str) -> bytes:
    """One CAP 1.2 alert (UTF-8 XML with declaration) for `state`, referencing `earlier`."""
    ET.register_namespace("", CAP_NS)
    alert = ET.Element(f"{{{CAP_NS}}}alert")

    def sub(parent: ET.Element, name: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{CAP_NS}}}{name}")
        el.text = text
        return el

    sub(alert, "identifier", identifier(subject.incident_id, state))
    sub(alert, "sender", sender)
    sub(alert, "sent", cap_time(state.at, subject.region_code))
    sub(alert, "status", "Actual")
    sub(alert, "msgType", state.msg_type)
    sub(alert, "scope", "Restricted")
    sub(alert, "restriction", RESTRICTION)
    if earlier:
        sub(alert, "references", " ".join(
            f"{sender},{identifier(subject.incident_id, s)},{cap_time(s.at, subject.region_code)}" for s in earlier))
    sub(alert, "incidents", subject.incident_id)
    for lang, tag in LANGUAGES:
        _info(alert, sub, subject, state, lang, tag)
    return ET.tostring(alert, encoding="utf-8", xml_declaration=True)


def _info(alert: ET.Element, sub: Any, subject: Subject, state: State, lang: str, tag: str) -> None:
    w = _WORDS[lang]
    urgency, severity, certainty, response = LEVEL_MAP[state.level]
    if state.kind == "cancel":
        urgency, response = "Past", "AllClear"
    info = ET.SubElement(alert, f"{{{CAP_NS}}}info")
    sub(info, "language", tag)
    sub(info, "category", "Security")
    sub(info, "event", category_name(subject.category, lang))
    sub(info, "responseType", response)
    sub(info, "urgency", urgency)
    sub(info, "severity", severity)
    sub(info, "certainty", certainty)
    code = ET.SubElement(info, f"{{{CAP_NS}}}eventCode")
    sub(code, "valueName", "pantau:category")
    sub(code, "value", subject.category)
    sub(info, "onset", cap_time(subject.opened_at, subject.region_code))
    sub(info, "senderName", w["sender"])
    headline = summarize(subject.category, subject.region_name, state.level, lang)
    if state.kind == "cancel":
        headline = f"{w['cancel_head']}: {headline}"
    sub(info, "headline", headline)
    lines = list(subject.reasons)
    if state.kind == "ack":
        lines.append(w["ack"])
    elif state.kind == "cancel":
        lines.append(w["cancel"])
    sub(info, "description", "\n".join(lines) or headline)
    param = ET.SubElement(info, f"{{{CAP_NS}}}parameter")
    sub(param, "valueName", "pantau:level")
    sub(param, "value", state.level)
    area = ET.SubElement(info, f"{{{CAP_NS}}}area")
    sub(area, "areaDesc", subject.region_name)
    geo = ET.SubElement(area, f"{{{CAP_NS}}}geocode")
    sub(geo, "valueName", "kemendagri")
    sub(geo, "value", subject.region_code)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One alert in the Atom feed: the incident, the state it is in, and where its CAP XML is."""

    subject: Subject
    state: State
    url: str  # where the alert's CAP XML is fetched


def atom_feed(entries: Sequence[FeedEntry], feed_url: str, now: float, sender: str) -> bytes:
    """An Atom feed (RFC 4287) of CAP alerts, newest first, each linking its CAP XML as
    `alternate` of type application/cap+xml (the form CAP aggregators read)."""
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{name}", attrs)
        el.text = text
        return el

    ordered = sorted(entries, key=lambda e: e.state.at, reverse=True)
    sub(feed, "id", feed_url)
    sub(feed, "title", "Pantau: peringatan CAP / CAP alerts")
    sub(feed, "updated", _atom_time(ordered[0].state.at if ordered else now))
    sub(feed, "link", rel="self", href=feed_url, type=ATOM_MEDIA_TYPE)
    author = sub(feed, "author")
    sub(author, "name", sender)
    for e in ordered:
        entry = sub(feed, "entry")
        sub(entry, "id", identifier(e.subject.incident_id, e.state))
        title = summarize(e.subject.category, e.subject.region_name, e.state.level, "id")
        sub(entry, "title", f"{e.state.msg_type}: {title}")
        sub(entry, "updated", cap_time(e.state.at, e.subject.region_code))
        sub(entry, "link", rel="alternate", href=e.url, type=MEDIA_TYPE)
        sub(entry, "summary", "; ".join(e.subject.reasons) or title)
        sub(entry, "category", term=e.subject.region_code, label=e.subject.region_name,
            scheme="urn:pantau:kemendagri")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _atom_time(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).isoformat(timespec="seconds")


__all__ = ["ATOM_MEDIA_TYPE", "LEVEL_MAP", "MEDIA_TYPE", "FeedEntry", "State", "Subject", "alert_xml", "atom_feed",
           "cap_time", "identifier", "states"]
