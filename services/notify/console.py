"""The operators' console at `/console` (contract: Notify HTTP API): log in with the operator
token, see the map and the open incidents with their reasons, timeline and reports,
acknowledge or resolve, verify or reject a report (services/notify/console_reports.py), log out.

Every form that changes something is a POST carrying the session's CSRF token, checked here,
and the session cookie is SameSite=Strict, so another site can neither read nor forge one.
The cookie is Secure when `notify.public_url` is https.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared.config import Operator
from shared.levels import LEVEL_RANK
from shared.problems import Refusal
from shared.regions import in_scope, registry
from shared.verifications import REJECTED, VERIFIED
from services.notify import console_session as sessions
from services.notify.console_map import check_query, map_svg
from services.notify.console_page import HEADERS, WORDS, console_html, login_html
from services.notify.console_reports import ReportDesk, reports_of, take
from services.notify.incident import Conflict
from services.notify.incident_metrics import count_change
from services.notify.ratelimit import AddressLimiter
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge, resolve
from services.notify.wakeups import release_held

MAX_FORM = 4096
MAX_SHOWN = 100
MAX_NOTE = 1000
DECISIONS = {"verify": VERIFIED, "reject": REJECTED}
NOTICES = ("ack", "resolve", "verify", "reject", "unchanged")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Refusal(413, "too_large", f"form over {MAX_FORM} bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _lang(v: str | None, default: str) -> str:
    return v if v in ("id", "en") else default


def _back(v: str | None) -> str:
    """Only a path inside the console: a form cannot send the operator elsewhere."""
    return v if v and v.startswith("/console") and "//" not in v and "\\" not in v else "/console"


def router(store: IncidentStore, hashes: Callable[[], Sequence[tuple[str, Operator]]],
           operators: Callable[[], Sequence[Operator]], public_url: str, default_language: str,
           clock: Callable[[], float] = time.time, wake: Callable[[], None] = lambda: None,
           desk: ReportDesk | None = None) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    secure = public_url.startswith("https://")
    limiter = AddressLimiter(20)
    r = store.r

    def html(doc: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(doc, status_code=status, headers=HEADERS)

    @api.get("/console")
    async def console(request: Request, region: str | None = None, category: str | None = None,
                      lang: str | None = None, done: str | None = None) -> Response:
        s = await sessions.load(r, request, operators())
        if s is None:
            return html(login_html(_lang(lang, default_language)))
        language = _lang(lang, s.language)
        if lang in ("id", "en") and lang != s.language:
            await sessions.set_language(r, s, lang)
        region, category = region or None, category or None
        check_query(region, category)
        svg = await map_svg(store, region, category, language, clock())
        found = [i for i in await store.open_incidents() if i.status != "resolved"
                 and (region is None or in_scope(i.region_code, [region]))
                 and (category is None or i.category == category)]
        found.sort(key=lambda i: (-LEVEL_RANK.get(i.level, 0), -i.opened_at))
        # Each shown incident costs a timeline read: a national view of a bad day shows the worst.
        incidents = [(i, await store.timeline(i.id)) for i in found[:MAX_SHOWN]]
        reg = registry()
        provinces = [(c, reg.name(c) or c) for c in reg.codes(1)]
        notice = WORDS[language].get(f"done_{done}") if done in NOTICES else None
        reports = await reports_of(r, desk, [i for i, _ in incidents])
        return html(console_html(s.operator.name, s.csrf, language, region, category, provinces, svg, incidents,
                                 notice, total=len(found), reports=reports))

    @api.post("/console/login")
    async def login(request: Request) -> Response:
        wait = limiter.wait_s(request.client.host if request.client else "")
        if wait:
            raise Refusal(429, "rate_limited", f"too many logins; try again in {wait} s", {"Retry-After": str(wait)})
        form = await _form(request)
        language = _lang(form.get("lang"), default_language)
        op = sessions.operator_for_token(form.get("token", ""), hashes()) if form.get("token", "").strip() else None
        if op is None:
            return html(login_html(language, error=True), 401)
        s = await sessions.create(r, op, language)
        resp = RedirectResponse("/console", status_code=303, headers=HEADERS)
        sessions.set_cookie(resp, s.sid, secure)
        return resp

    async def _session_and_form(request: Request) -> tuple[sessions.Session, dict[str, str]]:
        s = await sessions.load(r, request, operators())
        form = await _form(request)
        if s is None or not sessions.csrf_ok(s, form.get("csrf")):
            raise Refusal(403, "forbidden", "no console session, or the form's CSRF token does not match it")
        return s, form

    @api.post("/console/logout")
    async def logout(request: Request) -> Response:
        s, _ = await _session_and_form(request)
        await sessions.end(r, s)
        resp = RedirectResponse("/console", status_code=303, headers=HEADERS)
        sessions.clear_cookie(resp, secure)
        return resp

    @api.post("/console/incidents/{incident_id}/{action}")
    async def act(request: Request, incident_id: str, action: str) -> Response:
        if action not in ("ack", "resolve"):
            raise Refusal(404, "not_found", f"no console action {action!r}")
        s, form = await _session_and_form(request)
        by = f"operator:{s.operator.id}"
        now = clock()
        if action == "ack":
            def change(inc):
                return acknowledge(inc, by, now, "console", None)
        else:
            def change(inc):
                return resolve(inc, by, now, "manual", None)
        try:
            saved, ch = await store.mutate(incident_id, change)
        except Conflict as exc:
            raise Refusal(409, "conflict", str(exc)) from None
        if saved is None:
            raise Refusal(404, "not_found", f"no incident {incident_id!r}")
        count_change(ch)
        if ch is not None:
            await release_held(store, ch, now)
            wake()
        return _done(form, action)

    @api.post("/console/reports/{source}/{event_id}")
    async def decide(request: Request, source: str, event_id: str) -> Response:
        s, form = await _session_and_form(request)
        if desk is None:
            raise Refusal(404, "not_found", "this console takes no decisions on reports")
        decision = DECISIONS.get(form.get("decision", ""))
        note = form.get("note", "").strip() or None
        errors = ([{"field": "decision", "message": "must be verify or reject"}] if decision is None else []) + \
            ([{"field": "note", "message": f"at most {MAX_NOTE} characters"}] if note and len(note) > MAX_NOTE else [])
        if errors:
            raise Refusal(422, "invalid", "invalid decision", errors=errors)
        status = await take(r, desk, source, event_id, decision, s.operator.id, s.operator.name, note)
        return _done(form, form["decision"] if status == "accepted" else "unchanged")

    return api


def _done(form: dict[str, str], what: str) -> Response:
    back = _back(form.get("back"))
    return RedirectResponse(f"{back}{'&' if '?' in back else '?'}done={what}", status_code=303, headers=HEADERS)


__all__ = ["router"]
