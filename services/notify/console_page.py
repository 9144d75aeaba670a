"""The operators' console as HTML, in Bahasa Indonesia or English: pure functions from plain
data to a self-contained page (no script, no external asset), readable at 360 px.

services/notify/console.py does the I/O and the routes.
"""

from __future__ import annotations

from html import escape as e
from urllib.parse import quote
from typing import Any, Sequence

from shared.categories import CATEGORIES
from shared.levels import LEVEL_RANK
from shared.decisions import ReportRef
from shared.times import rfc3339
from shared.verifications import REJECTED, VERIFIED
from shared.words import words
from services.notify.incident import Incident
from services.notify.messages import category_name, local_time
from services.notify.region_map import COLOURS, INK

WORDS = words("console")
STATUS = {"id": {"triggered": "baru", "escalated": "dieskalasi", "acknowledged": "dikonfirmasi",
                 "resolved": "selesai"},
          "en": {"triggered": "new", "escalated": "escalated", "acknowledged": "acknowledged",
                 "resolved": "resolved"}}

# The timeline's entry kinds in words; an unknown kind shows as it is.
KINDS = {"id": {"opened": "dibuka", "level": "tingkat berubah", "step": "langkah eskalasi", "delivery": "pengiriman",
                "notified": "diberitahu", "acknowledged": "dikonfirmasi", "resolved": "diselesaikan",
                "unacknowledged": "konfirmasi dibatalkan", "quiet": "tenang", "exhausted": "semua langkah habis",
                "silenced": "dibisukan", "inhibited": "ditahan", "resumed": "dilanjutkan",
                "no_policy": "tidak ada kebijakan", "verification": "verifikasi laporan"},
         "en": {"no_policy": "no policy", "unacknowledged": "acknowledgement voided", "exhausted": "steps exhausted",
                "step": "escalation step", "verification": "report decision"}}

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'",
}

_CSS = ("*{box-sizing:border-box}body{font-family:sans-serif;margin:0;padding:.5em;max-width:60em;"
        "margin-inline:auto;color:#1b2a22;background:#fff}header{display:flex;flex-wrap:wrap;gap:.5em;"
        "align-items:center;justify-content:space-between}header div{display:flex;flex-wrap:wrap;gap:.5em;"
        "align-items:center}h1{font-size:1.25em;margin:.3em 0}"
        "h2{font-size:1.1em}form.inline{display:inline}button,select,input{font-size:1em;padding:.45em .7em;"
        "max-width:100%}.filters{display:flex;flex-wrap:wrap;gap:.4em;align-items:end}.filters label{display:flex;"
        "flex-direction:column;font-size:.9em}.map svg{width:100%;height:auto;display:block}"
        ".inc{border:1px solid #c9d3cc;border-left:.5em solid var(--c);border-radius:.3em;padding:.5em;"
        "margin:.6em 0}.lvl{display:inline-block;padding:.1em .5em;border-radius:.2em;font-weight:bold}"
        ".actions{display:flex;flex-wrap:wrap;gap:.5em;margin-top:.4em}.actions button{flex:1 1 10em}"
        ".rep{list-style:none;margin:.4em 0;padding:.4em 0;border-top:1px solid #e3e8e4;overflow-wrap:anywhere}"
        ".rep form{display:flex;flex-wrap:wrap;gap:.4em;margin-top:.3em}.rep input{flex:1 1 100%}"
        ".rep button{flex:1 1 6em}details{margin-top:.3em}ul{padding-left:1.2em;margin:.3em 0}small{color:#555}"
        ".note{background:#eef6ee;padding:.4em;border-radius:.3em}.err{background:#fde8e6}")


def page(title: str, body: str, language: str) -> str:
    return (f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{e(title)}</title><style>{_CSS}</style></head>'
            f'<body>{body}</body></html>')


def login_html(language: str, error: bool = False) -> str:
    w = WORDS[language]
    other = "en" if language == "id" else "id"
    err = f'<p class="note err" role="alert">{e(w["bad_token"])}</p>' if error else ""
    body = (f'<header><h1>{e(w["title"])}</h1><a href="/console?lang={other}">{e(w["lang"])}</a></header>{err}'
            f'<form method="post" action="/console/login"><input type="hidden" name="lang" value="{language}">'
            f'<p><label>{e(w["token"])}<br><input type="password" name="token" autocomplete="current-password" '
            f'required style="width:100%"></label></p><button type="submit">{e(w["login"])}</button></form>')
    return page(w["title"], body, language)


def _timeline(entries: Sequence[dict[str, Any]], region: str, language: str) -> str:
    items = []
    for t in entries:
        kind = str(t.get("kind", ""))
        rest = ", ".join(f"{k}: {v}" for k, v in t.items() if k not in ("at", "kind") and v not in (None, "", []))
        items.append(f"<li><small>{e(local_time(str(t.get('at', '')), region, language))}</small> "
                     f"<b>{e(KINDS[language].get(kind, kind))}</b>{' — ' + e(rest) if rest else ''}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _state(ref: ReportRef, w: dict[str, str]) -> str:
    if ref.decision == VERIFIED:
        return w["verified"]
    if ref.decision == REJECTED:
        return w["rejected"]
    return w["by_source"] if ref.verified else w["unverified"]


def reports_html(refs: Sequence[ReportRef], region: str, hidden: str, language: str) -> str:
    """The incident's reports, each with its state and a Verifikasi / Tolak form (one note for
    both buttons)."""
    w = WORDS[language]
    items = []
    for ref in refs:
        action = f"/console/reports/{quote(ref.source, safe='')}/{quote(ref.event_id, safe='')}"
        items.append(
            f'<li class="rep" data-report="{e(ref.source)}/{e(ref.event_id)}"><small>'
            f'{e(local_time(ref.occurred_at, region, language))}</small> <b>{e(ref.event_id)}</b> · '
            f'{e(ref.source)} · <span class="decision">{e(_state(ref, w))}</span>'
            f'<form method="post" action="{e(action)}">{hidden}<input name="note" maxlength="1000" '
            f'aria-label="{e(w["note"])}" placeholder="{e(w["note"])}">'
            f'<button type="submit" name="decision" value="verify">{e(w["verify"])}</button>'
            f'<button type="submit" name="decision" value="reject">{e(w["reject"])}</button></form></li>')
    return f'<b>{e(w["reports"])}</b><ul class="reps">{"".join(items)}</ul>' if items else ""


def incident_html(inc: Incident, timeline: Sequence[dict[str, Any]], csrf: str, back: str, language: str,
                  reports: Sequence[ReportRef] = ()) -> str:
    w = WORDS[language]
    reasons = "".join(f"<li>{e(r)}</li>" for r in inc.reasons)
    hidden = f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="back" value="{e(back)}">'
    buttons = []
    if inc.is_open:
        buttons.append(f'<form class="inline" method="post" action="/console/incidents/{e(inc.id)}/ack">{hidden}'
                       f'<button type="submit" name="action" value="ack">{e(w["ack"])}</button></form>')
    buttons.append(f'<form class="inline" method="post" action="/console/incidents/{e(inc.id)}/resolve">{hidden}'
                   f'<button type="submit" name="action" value="resolve">{e(w["resolve"])}</button></form>')
    by = f" {e(w['by'])} {e(inc.acknowledged_by)}" if inc.acknowledged_by else ""
    opened = local_time(rfc3339(inc.opened_at), inc.region_code, language)
    return (f'<article class="inc" data-incident="{e(inc.id)}" data-region="{e(inc.region_code)}" '
            f'style="--c:{COLOURS[inc.level]}"><div><span class="lvl" style="background:{COLOURS[inc.level]};'
            f'color:{INK[inc.level]}">{e(inc.level.upper())}</span> <b>{e(inc.region_name)}</b> · '
            f'{e(category_name(inc.category, language))}</div><small>{e(w["status"])}: '
            f'<span class="status">{e(STATUS[language][inc.status])}</span>{by} · {e(w["opened"])} {e(opened)}</small>'
            f'<p>{e(inc.summary)}</p>' + (f"<b>{e(w['reasons'])}</b><ul>{reasons}</ul>" if reasons else "")
            + reports_html(reports, inc.region_code, hidden, language)
            + f'<details><summary>{e(w["timeline"])} ({len(timeline)})</summary>'
              f'{_timeline(timeline, inc.region_code, language)}</details>'
            + f'<div class="actions">{"".join(buttons)}</div></article>')


def console_html(operator_name: str, csrf: str, language: str, region: str | None, category: str | None,
                 provinces: Sequence[tuple[str, str]], svg: str,
                 incidents: Sequence[tuple[Incident, Sequence[dict[str, Any]]]], notice: str | None,
                 total: int | None = None, reports: dict[str, Sequence[ReportRef]] | None = None) -> str:
    """The whole console: filters, the map (inline SVG, so the page needs nothing else), and the
    open incidents, highest level first."""
    w = WORDS[language]
    other = "en" if language == "id" else "id"
    query = "&".join(f"{k}={v}" for k, v in (("region", region), ("category", category)) if v)
    back = "/console" + (f"?{query}" if query else "")
    opts = [f'<option value="">{e(w["all_regions"])}</option>'] + [
        f'<option value="{c}"{" selected" if c == region else ""}>{e(n)}</option>' for c, n in provinces]
    cats = [f'<option value="">{e(w["all"])}</option>'] + [
        f'<option value="{c}"{" selected" if c == category else ""}>{e(category_name(c, language))}</option>'
        for c in CATEGORIES]
    ordered = sorted(incidents, key=lambda it: (-LEVEL_RANK.get(it[0].level, 0), -it[0].opened_at))
    reports = reports or {}
    items = "".join(incident_html(i, t, csrf, back, language, reports.get(i.id, ())) for i, t in ordered) or f"<p>{e(w['none'])}</p>"
    note = f'<p class="note" role="status">{e(notice)}</p>' if notice else ""
    total = len(incidents) if total is None else total
    shown = str(total) if total == len(incidents) else f"{len(incidents)} / {total}"
    lang_link = f'/console?lang={other}' + (f"&{query}" if query else "")
    body = (f'<header><h1>{e(w["title"])}</h1><div><small>{e(w["hello"])} {e(operator_name)}</small>'
            f'<a href="{e(lang_link)}">{e(w["lang"])}</a><form class="inline" method="post" '
            f'action="/console/logout"><input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<button type="submit">{e(w["logout"])}</button></form></div></header>{note}'
            f'<form class="filters" method="get" action="/console"><label>{e(w["region"])}<select name="region">'
            f'{"".join(opts)}</select></label><label>{e(w["category"])}<select name="category">{"".join(cats)}'
            f'</select></label><button type="submit">{e(w["show"])}</button></form>'
            f'<div class="map">{svg}</div><h2>{e(w["open"])} ({shown})</h2>{items}')
    return page(w["title"], body, language)


__all__ = ["HEADERS", "STATUS", "WORDS", "console_html", "incident_html", "login_html", "page", "reports_html"]
