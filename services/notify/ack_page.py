"""The ack page: the HTML a coordinator sees on opening a signed link from a page, in their
language, with headers that keep it out of caches, frames and referrers."""

from __future__ import annotations

import html

from fastapi import Request
from fastapi.responses import HTMLResponse

from shared.words import words
from services.notify.incident import Incident
from services.notify.messages import category_name


WORDS = words("ack_page")
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f'<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,'
           f'initial-scale=1"><title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:36em;'
           f'margin:1em auto;padding:0 1em}}button{{font-size:1.3em;padding:.7em 1.2em;width:100%}}'
           f'.lvl{{font-weight:bold}}</style></head><body>{body}</body></html>')
    return HTMLResponse(doc, status_code=status, headers=_PAGE_HEADERS)


def incident_html(inc: Incident, language: str) -> str:
    w = WORDS[language]
    e = html.escape
    reasons = "".join(f"<li>{e(r)}</li>" for r in inc.reasons)
    return (f"<h1>{e(category_name(inc.category, 'en' if language == 'en' else 'id'))} — {e(inc.region_name)}</h1>"
            f"<p>{e(w['level'])}: <span class=lvl>{e(inc.level.upper())}</span> · {e(w['status'])}: {e(inc.status)}</p>"
            f"<p>{e(inc.summary)}</p>" + (f"<p>{e(w['reasons'])}:</p><ul>{reasons}</ul>" if reasons else ""))


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept or request.method == "POST" and "application/x-www-form-urlencoded" in \
        request.headers.get("content-type", "")
