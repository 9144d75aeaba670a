"""The CAP 1.2 routes of the notify API (contract: Notify HTTP API), for operators:

    GET /v1/cap/{incident_id}.xml   the incident's CAP alert for its current state
    GET /v1/cap/feed.atom           Atom feed of the alerts of open and recently closed incidents

Both need the operator token; a refusal is a problem (401, 404) like every notify answer.
The XML itself is built in `services/notify/cap.py`.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.notify import cap
from services.notify.incident import Incident
from shared import problems

# Resolved incidents stay in the feed this long, so a reader polling daily sees their Cancel.
RECENT_S = 7 * 86400
FEED_MAX = 100

router = APIRouter()


def sender_of(public_url: str) -> str:
    """CAP's `sender`: Pantau at the host its ack pages are served from (no spaces or commas)."""
    host = urlsplit(public_url).hostname or "localhost"
    return f"pantau@{host}"


def set_cap_sender(channels, public_url: str) -> None:
    """CAP channels without a configured `sender` send as the API's alerts do."""
    for ch in channels.values():
        if ch.type == "cap":
            ch.default_sender = sender_of(public_url)


def subject_of(inc: Incident) -> cap.Subject:
    return cap.Subject(inc.id, inc.region_code, inc.region_name, inc.category, tuple(inc.reasons), inc.opened_at)


async def _states(ctx, inc: Incident) -> list[cap.State]:
    timeline = await ctx.store.timeline(inc.id)
    return cap.states(timeline, inc.opened_at, inc.level, inc.resolved_at if inc.status == "resolved" else None)


def _operator(request: Request):
    return request.app.state.authenticate(request)


def _doc(media_type: str, what: str, *codes: int) -> dict:
    # A route with a path parameter lists 422 too: else FastAPI documents its own 422 shape.
    why = {401: "missing or unknown operator token", 404: "no such incident", 422: "bad incident id"}
    ok = {200: {"description": what, "content": {media_type: {"schema": {"type": "string"}}}}}
    return {"responses": {**ok, **problems.responses({c: why[c] for c in codes})},
            "openapi_extra": {"security": [{"operatorToken": []}]}}


@router.get("/v1/cap/feed.atom", response_class=Response,
            **_doc(cap.ATOM_MEDIA_TYPE, "Atom feed (RFC 4287) linking each CAP alert", 401))
async def cap_feed(request: Request) -> Response:
    """Atom feed of the CAP alerts of open incidents and of those resolved in the last 7 days."""
    _operator(request)
    ctx = request.app.state.ctx
    now = ctx.clock()
    base = ctx.links.public_url.rstrip("/")
    entries = []
    for inc in await ctx.store.list(None, limit=FEED_MAX * 2):
        if inc.status == "resolved" and (inc.resolved_at or 0) < now - RECENT_S:
            continue
        entries.append(cap.FeedEntry(subject_of(inc), (await _states(ctx, inc))[-1],
                                     f"{base}/v1/cap/{quote(inc.id, safe='')}.xml"))
        if len(entries) >= FEED_MAX:
            break
    body = cap.atom_feed(entries, f"{base}/v1/cap/feed.atom", now, sender_of(base))
    return Response(body, media_type=cap.ATOM_MEDIA_TYPE)


@router.get("/v1/cap/{incident_id}.xml", response_class=Response,
            **_doc(cap.MEDIA_TYPE, "CAP 1.2 alert (OASIS), valid against the CAP 1.2 XSD", 401, 404, 422))
async def cap_alert(request: Request, incident_id: str) -> Response:
    """The incident's CAP 1.2 alert for its current state: Alert, Update (referencing every
    earlier message) or, once resolved, Cancel."""
    _operator(request)
    ctx = request.app.state.ctx
    inc = await ctx.store.get(incident_id)
    if inc is None:
        raise problems.Refusal(404, "not_found", f"no incident {incident_id!r}")
    history = await _states(ctx, inc)
    body = cap.alert_xml(subject_of(inc), history[-1], history[:-1], sender_of(ctx.links.public_url))
    return Response(body, media_type=cap.MEDIA_TYPE)


__all__ = ["router", "sender_of", "set_cap_sender"]
