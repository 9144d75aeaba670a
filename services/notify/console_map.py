"""`GET /console/map.svg?region=CODE[&category=C][&lang=en]` (contract: Notify HTTP API): the
region map for an operator (bearer token or console session); 401 without either.

The I/O edge of services/notify/region_map.py: read the open incidents, pick the children
of the region asked for, and hand both to the pure drawing.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from shared.boundaries import boundaries
from shared.categories import CATEGORIES
from shared import problems
from shared.problems import Refusal
from shared.regions import registry
from shared.times import rfc3339

LANGUAGES = ("id", "en")
from services.notify.console_session import operator_of
from services.notify.messages import category_name, local_time
from services.notify.region_map import WORDS, OpenIncident, draw_svg, region_levels
from services.notify.store import IncidentStore

_SVG_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}


def check_query(region: str | None, category: str | None, lang: str | None = None) -> None:
    """422 naming the field: a map is drawn for Indonesia (no region) or one province."""
    errors = []
    if lang is not None and lang not in LANGUAGES:
        errors.append({"field": "lang", "message": f"must be one of {', '.join(LANGUAGES)}, or left out"})
    if region is not None and not (len(region) == 2 and registry().exists(region)):
        errors.append({"field": "region", "message": "must be a province code such as 65, or left out for "
                                                     "the whole country"})
    if category is not None and category not in CATEGORIES:
        errors.append({"field": "category", "message": f"must be one of {', '.join(CATEGORIES)}"})
    if errors:
        raise Refusal(422, "invalid", "invalid query", errors=errors)


async def open_incidents(store: IncidentStore) -> list[OpenIncident]:
    """Every unresolved conflict incident (a silent source is not a level of any region)."""
    return [OpenIncident(i.region_code, i.category, i.level) for i in await store.open_incidents()
            if i.status != "resolved" and i.kind == "score"]


async def map_svg(store: IncidentStore, region: str | None, category: str | None, language: str,
                  now: float | None = None) -> str:
    reg, shapes = registry(), boundaries()
    codes = reg.children(region) if region else reg.codes(1)
    children = [(c, reg.name(c) or c, shapes.shapes[c]) for c in codes if c in shapes.shapes]
    incidents = await open_incidents(store)
    levels = region_levels([c for c, _, _ in children], incidents, category)
    lang = "en" if language == "en" else "id"
    title = (reg.name(region) or region) if region else WORDS[lang]["national"]
    label = category_name(category, lang) if category else WORDS[lang]["all"]
    if region:
        # An incident of the province itself has no kabupaten/kota to colour: the subtitle says it.
        own = region_levels([region], [i for i in incidents if i.region_code == region], category)[region]
        if own != "normal":
            label += f" · {WORDS[lang]['province']}: {own.upper()}"
    drawn = local_time(rfc3339(time.time() if now is None else now), region or "31", lang)
    return draw_svg(title, children, levels, label, drawn, lang)


def router(store: IncidentStore, operators_of, default_language: str) -> APIRouter:
    """`operators_of()` gives the configured operators (the API context owns them)."""
    api = APIRouter()

    @api.get("/console/map.svg", response_class=Response, openapi_extra={"security": [{"operatorToken": []}]},
             responses={200: {"content": {"image/svg+xml": {}}, "description": "the map"},
                        **problems.responses({401: "no operator token and no console session",
                                              422: "region is not a province code, or category not a category"})})
    async def console_map(request: Request,
                          region: str | None = Query(None, json_schema_extra={"enum": registry().codes(1)}),
                          category: str | None = Query(None, json_schema_extra={"enum": list(CATEGORIES)}),
                          lang: str | None = Query(None, json_schema_extra={"enum": list(LANGUAGES)})) -> Response:
        """One `<path>` per child region, with `data-region` and `data-level`."""
        await operator_of(request, store.r, operators_of())
        check_query(region, category, lang)
        svg = await map_svg(store, region, category, lang or default_language)
        return Response(svg, media_type="image/svg+xml", headers=_SVG_HEADERS)

    return api


__all__ = ["check_query", "map_svg", "open_incidents", "router"]
