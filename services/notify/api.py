"""The notify HTTP API (contract: Notify HTTP API): operators list, read, acknowledge and
resolve incidents and manage silences; coordinators acknowledge with one tap on a signed link.

Operators send `Authorization: Bearer <token>`; the token's sha256 is compared with every
configured operator's in constant time. Every error is a problem (`shared/problems.py`; the
ack page answers a browser in HTML, `ack_page.py`), never a traceback. Request bodies and
their reading are in `api_bodies.py`; this file is the routes, one screen each.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal, Sequence

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from shared import openapi, problems
from shared.config import Operator, sha256_hex
from shared.problems import Problem
from shared.notify_config import Rotation
from shared.regions import CODE_PATTERN, registry
from shared.categories import CATEGORIES
from services.notify.wakeups import release_held
from services.notify.incident_metrics import count_change
from services.notify.silences import silence_view
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge, resolve
from services.notify.incident import Conflict, Incident
from shared.times import parse_ts
from services.notify.ack_page import WORDS, incident_html, page, wants_html
from services.notify.api_bodies import NoteBody, OverrideBody, SilenceBody, read_body
from services.notify.cap_api import router as cap_router
from services.notify.links import LinkError, LinkMaker
from services.notify.ratelimit import AddressLimiter
from services.notify.rotations import OverrideStore, next_handover, on_call
from services.notify import silences
from services.notify.wakeups import wake_matching
from services.notify import console, console_map
from services.notify.console_reports import ReportDesk

log = logging.getLogger("pantau.notify.api")


class Refusal(problems.Refusal):
    """A refused request; on an ack page it may carry the incident the link was for."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None, incident: "Incident | None" = None):
        super().__init__(status, code, message, headers, errors)
        # The ack pages show the incident's current state beside why the link did nothing.
        self.incident = incident


@dataclass
class ApiContext:
    """What the handlers need, built by the service (or a test)."""

    store: IncidentStore
    links: LinkMaker
    operators: Sequence[Operator]
    wake: Callable[[], None] = lambda: None
    ready: Callable[[], Awaitable[list[str]]] | None = None
    rotations: Sequence[Rotation] = ()
    overrides: OverrideStore | None = None
    contact_ids: Sequence[str] = ()
    language: str = "id"
    clock: Callable[[], float] = time.time
    ack_limiter: AddressLimiter = field(default_factory=lambda: AddressLimiter(30))
    reports: ReportDesk | None = None  # the console's report decisions (None: no buttons)
    _hashes: list[tuple[str, Operator]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._hashes = [(op.token_hash(), op) for op in self.operators]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# --- the OpenAPI document: what each operation takes and every answer it can give ------------
_WHY = {401: "missing or unknown operator token", 403: "the link is malformed, forged or expired",
        404: "no such incident, silence or rotation", 409: "the incident's state does not allow it",
        410: "the link was made before the incident last changed (level, re-open, resolve)",
        413: "body over 64 KiB", 422: "invalid request; `errors` names every bad field",
        429: "too many ack requests from this address; see Retry-After",
        503: "Redis or the broker unreachable"}


_TOKEN = "operatorToken"


def _operator_first(request: Request) -> None:
    """Authenticate before FastAPI validates query and path parameters, so a caller without a
    token learns nothing but 401 (dependencies run before parameter errors are raised)."""
    request.app.state.authenticate(request)


def _doc(*codes: int, body: type[BaseModel] | None = None, body_required: bool = True,
         operator: bool = True) -> dict[str, Any]:
    """Route keywords documenting the error answers, the JSON body and the operator token. A
    route with path or query parameters lists 422: else FastAPI documents its own 422 shape."""
    extra: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if operator:
        extra["security"] = openapi.bearer(_TOKEN)
        kwargs["dependencies"] = [Depends(_operator_first)]
    if body is not None:
        extra["requestBody"] = openapi.json_body(body, body_required)
    errors = (401, *codes) if operator else codes
    return {"responses": problems.responses({c: _WHY[c] for c in errors}), "openapi_extra": extra, **kwargs}


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="Pantau notify", version="1", docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    lang = "en" if ctx.language == "en" else "id"

    def operator(request: Request) -> Operator:
        known = getattr(request.state, "operator", None)
        if known is not None:
            return known
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "unauthorized", "send the operator token as 'Authorization: Bearer <token>'",
                          {"WWW-Authenticate": "Bearer"})
        presented = sha256_hex(token.strip())
        found = None
        for h, op in ctx._hashes:  # every hash compared, in constant time each
            if hmac.compare_digest(h, presented):
                found = op
        if found is None:
            raise Refusal(401, "unauthorized", "unknown operator token", {"WWW-Authenticate": "Bearer"})
        request.state.operator = found
        return found

    app.state.authenticate = operator

    async def incident_or_404(incident_id: str) -> Incident:
        inc = await ctx.store.get(incident_id)
        if inc is None:
            raise Refusal(404, "not_found", f"no incident {incident_id!r}")
        return inc

    async def _ack_page(request: Request, exc: problems.Refusal) -> Response | None:
        if not (request.url.path.startswith("/ack/") and wants_html(request)):
            return None
        w = WORDS[lang]
        incident = getattr(exc, "incident", None)
        state = incident_html(incident, lang) if incident is not None else ""
        return page(w["error"], f"<h1>{html.escape(w['error'])}</h1><p><b>{html.escape(exc.message)}</b></p>"
                     + state, exc.status)

    def _crash(request: Request, exc: Exception) -> None:
        # An ack path is a bearer token: it never reaches a log.
        path = "/ack/<token>" if request.url.path.startswith("/ack/") else request.url.path
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, path)

    problems.install(app, "internal error",
                     field_of=lambda loc: ".".join(str(p) for p in loc if p not in ("query", "path", "body")),
                     on_crash=_crash, on_refusal=_ack_page)
    app.include_router(cap_router)

    # --- incidents ---------------------------------------------------------------------------
    @app.get("/v1/incidents", **_doc(422))
    async def list_incidents(request: Request, status: Literal["open", "acknowledged", "resolved"] | None = None,
                             region: str | None = Query(None, max_length=13,
                                                        json_schema_extra={"pattern": CODE_PATTERN.pattern}),
                             category: str | None = Query(None, json_schema_extra={"enum": list(CATEGORIES)}),
                             limit: int = Query(100, ge=1, le=1000)) -> Response:
        """Incidents, newest first; `region` is a prefix (a province takes its kabupaten/kota)."""
        operator(request)
        if region is not None and not CODE_PATTERN.match(region):
            raise Refusal(422, "invalid", "invalid query", errors=[{"field": "region", "message": "must be a region code prefix such as 65 or 65.71"}])
        if region is not None and not registry().exists(region):
            # A mistyped region would otherwise read as "no incidents there".
            raise Refusal(422, "invalid", "invalid query", errors=[{"field": "region", "message": f"unknown region code {region!r}"}])
        if category is not None and category not in CATEGORIES:
            raise Refusal(422, "invalid", "invalid query", errors=[{"field": "category", "message": f"must be one of {', '.join(CATEGORIES)}"}])
        found = await ctx.store.list(status, region, category, limit)
        return _json({"incidents": [i.view() for i in found]})

    @app.get("/v1/incidents/{incident_id}", **_doc(404, 422))
    async def get_incident(request: Request, incident_id: str) -> Response:
        """One incident with its timeline: every step, delivery and action."""
        operator(request)
        inc = await incident_or_404(incident_id)
        return _json({**inc.view(), "timeline": await ctx.store.timeline(incident_id)})

    async def _ack(inc_id: str, by: str, via: str, note: str | None,
                   transition: Callable[[Incident], Any] | None = None) -> Incident:
        try:
            saved, change = await ctx.store.mutate(
                inc_id, transition or (lambda inc: acknowledge(inc, by, ctx.clock(), via, note)))
        except Conflict as e:
            current = await ctx.store.get(inc_id) if via == "link" else None
            raise Refusal(409, "conflict", str(e), incident=current) from None
        if saved is None:
            raise Refusal(404, "not_found", f"no incident {inc_id!r}")
        count_change(change)
        if change is not None:
            await release_held(ctx.store, change, ctx.clock())  # an acked province incident holds nothing back
            ctx.wake()
        return saved

    @app.post("/v1/incidents/{incident_id}/ack", **_doc(404, 409, 413, 422, body=NoteBody, body_required=False))
    async def ack(request: Request, incident_id: str) -> Response:
        """Acknowledge: the escalation stops; acknowledging again changes nothing."""
        op = operator(request)
        body = await read_body(request, NoteBody, optional=True)
        return _json((await _ack(incident_id, f"operator:{op.id}", "api", body.note)).view())

    @app.post("/v1/incidents/{incident_id}/resolve", **_doc(404, 409, 413, 422, body=NoteBody, body_required=False))
    async def resolve_incident(request: Request, incident_id: str) -> Response:
        """Resolve: everyone who was paged hears it, on every channel they were paged on."""
        op = operator(request)
        body = await read_body(request, NoteBody, optional=True)
        try:
            saved, change = await ctx.store.mutate(
                incident_id, lambda inc: resolve(inc, f"operator:{op.id}", ctx.clock(), "manual", body.note))
        except Conflict as e:
            raise Refusal(409, "conflict", str(e)) from None
        if saved is None:
            raise Refusal(404, "not_found", f"no incident {incident_id!r}")
        count_change(change)
        await release_held(ctx.store, change, ctx.clock())  # a province incident lets its kabupaten pages go
        ctx.wake()
        return _json(saved.view())

    # --- silences ----------------------------------------------------------------------------
    @app.post("/v1/silences", status_code=201, **_doc(413, 422, body=SilenceBody))
    async def create_silence(request: Request) -> Response:
        """Hold back pages for matching incidents until `ends_at` (audited)."""
        op = operator(request)
        body: SilenceBody = await read_body(request, SilenceBody)
        matchers = body.matchers.model_dump(exclude_none=True)
        now = ctx.clock()
        errors = []
        if not matchers:
            errors.append({"field": "matchers", "message": "give region and/or category (a silence for everything "
                                                           "is not allowed)"})
        ends = parse_ts(body.ends_at)
        if ends <= now:
            errors.append({"field": "ends_at", "message": "must be in the future"})
        if errors:
            raise Refusal(422, "invalid", "invalid silence", errors=errors)
        s = await silences.add(ctx.store.r, matchers, ends, body.reason, f"operator:{op.id}", now)
        return _json(silence_view(s, now), 201)

    @app.get("/v1/silences", **_doc(422))
    async def list_silences(request: Request, all: bool = False) -> Response:
        """Active silences (with `?all=true`, expired and deleted ones too)."""
        operator(request)
        items = sorted(await silences.all_of(ctx.store.r), key=lambda s: s["created_at"], reverse=True)
        views = [silence_view(s, ctx.clock()) for s in items]
        return _json({"silences": views if all else [v for v in views if v["active"]]})

    @app.delete("/v1/silences/{silence_id}", **_doc(404, 422))
    async def delete_silence(request: Request, silence_id: str) -> Response:
        """End a silence now; held-back steps fire at once (audited)."""
        op = operator(request)
        s = await silences.delete(ctx.store.r, silence_id, f"operator:{op.id}", ctx.clock())
        if s is None:
            raise Refusal(404, "not_found", f"no active silence {silence_id!r}")
        if await wake_matching(ctx.store, s["matchers"], ctx.clock()):
            ctx.wake()
        return _json(silence_view(s, ctx.clock()))

    # --- on-call -------------------------------------------------------------------------------
    @app.get("/v1/oncall", **_doc())
    async def oncall(request: Request) -> Response:
        """Who is on call now in each rotation, and until when."""
        operator(request)
        now = datetime.fromtimestamp(ctx.clock(), timezone.utc)
        out = []
        for r in ctx.rotations:
            extra = await ctx.overrides.overrides(r.region, now) if ctx.overrides else []
            out.append({"region": r.region, "region_name": registry().name(r.region), "contact": on_call(r, now, extra),
                        "next_handover": next_handover(r, now).isoformat()})
        return _json({"oncall": out})

    @app.post("/v1/rotations/{region}/overrides", status_code=201, **_doc(404, 413, 422, body=OverrideBody))
    async def add_override(request: Request, region: str) -> Response:
        """Put someone else on call for a while (audited)."""
        op = operator(request)
        rot = next((r for r in ctx.rotations if r.region == region), None)
        if rot is None or ctx.overrides is None:
            raise Refusal(404, "not_found", f"no rotation for region {region!r}")
        body: OverrideBody = await read_body(request, OverrideBody)
        try:
            start, end = datetime.fromisoformat(body.start), datetime.fromisoformat(body.end)
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError
        except ValueError:
            raise Refusal(422, "invalid", "invalid override", errors=[
                {"field": "start/end", "message": "must be RFC 3339 times with offset"}]) from None
        if end <= start:
            raise Refusal(422, "invalid", "invalid override", errors=[{"field": "end", "message": "must be after start"}])
        if body.contact not in set(rot.members) | set(ctx.contact_ids):
            raise Refusal(422, "invalid", "invalid override", errors=[{"field": "contact", "message": "unknown contact"}])
        doc = await ctx.overrides.add(region, body.contact, start, end, f"operator:{op.id}", body.reason)
        return _json(doc, 201)

    # --- the one-tap ack link ----------------------------------------------------------------
    def _current(claim: Any, inc: Incident) -> None:
        """A link made before the incident's level last rose acknowledges nothing: whoever
        holds it was told of a lesser situation than the one now going on."""
        if claim.epoch != inc.rises:
            raise Refusal(410, "stale_link", f"this link was sent before the level rose to {inc.level.upper()}; "
                          f"acknowledge from the newest message", incident=inc)

    def _claim(request: Request, token: str, now: float):
        wait = ctx.ack_limiter.wait_s(request.client.host if request.client else "")
        if wait:
            raise Refusal(429, "rate_limited", f"too many requests; try again in {wait} s", {"Retry-After": str(wait)})
        try:
            return ctx.links.verify(token, now)
        except LinkError as e:
            raise Refusal(403, e.reason, str(e)) from None

    @app.get("/ack/{token}", response_class=HTMLResponse, **_doc(403, 404, 410, 422, 429, operator=False))
    async def ack_page(request: Request, token: str) -> Response:
        """The page a coordinator opens from a message: one button (a GET never acknowledges,
        so link previews and scanners cannot)."""
        claim = _claim(request, token, ctx.clock())
        inc = await incident_or_404(claim.incident_id)
        _current(claim, inc)
        w = WORDS[lang]
        if inc.status == "resolved":
            action = f"<p><b>{html.escape(w['resolved'])}</b></p>"
        elif inc.status == "acknowledged":
            action = f"<p><b>{html.escape(w['already'])} ({html.escape(inc.acknowledged_by or '')}).</b></p>"
        else:
            action = f'<form method="post"><button type="submit">{html.escape(w["button"])}</button></form>'
        return page(w["title"], incident_html(inc, lang) + action)

    @app.post("/ack/{token}", **_doc(403, 404, 409, 410, 422, 429, operator=False))
    async def ack_link(request: Request, token: str) -> Response:
        """What the page's button does: acknowledge the incident the token names."""
        claim = _claim(request, token, ctx.clock())
        # A link in a shared room names the channel (`channel:<id>`), not a person.
        if claim.contact.startswith("channel:"):
            by = claim.contact
        else:
            by = f"contact:{claim.contact}" if claim.contact else "link"

        def ack_if_current(inc: Incident):
            _current(claim, inc)  # checked inside the atomic update: a rise racing the click wins
            return acknowledge(inc, by, ctx.clock(), "link", None)

        saved = await _ack(claim.incident_id, by, "link", None, ack_if_current)
        if wants_html(request):
            w = WORDS[lang]
            return page(w["title"], incident_html(saved, lang) + f"<p><b>{html.escape(w['done'])}</b></p>")
        return _json(saved.view())

    # --- health ------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", **_doc(503, operator=False))
    async def readyz() -> Response:
        down: list[str] = []
        try:
            await asyncio.wait_for(ctx.store.r.ping(), 2)
        except Exception:
            down.append("redis unreachable")
        if ctx.ready is not None:
            try:
                down += await asyncio.wait_for(ctx.ready(), 3)
            except Exception:
                down.append("not ready")
        if down:
            return problems.problem(503, "not_ready", "; ".join(down), {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    app.include_router(console_map.router(ctx.store, lambda: ctx.operators, lang))
    app.include_router(console.router(ctx.store, lambda: ctx._hashes, lambda: ctx.operators, ctx.links.public_url,
                                      lang, lambda: ctx.clock(), lambda: ctx.wake(), ctx.reports))

    openapi.install(app, "Pantau notify API, contract v1", (NoteBody, SilenceBody, OverrideBody, Problem),
                    {_TOKEN: "an operator token"})
    return app


__all__ = ["ApiContext", "create_app"]
