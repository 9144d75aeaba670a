"""Notify's Prometheus endpoint, on its own port (`notify.metrics_port`, default 9102) so that
the public port the ack pages face the internet from never serves it.

Each scrape counts open incidents by level from Redis (a chunk at a time), which is work a
stranger must not be able to make the service do."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import metrics, problems
from services.notify.store import IncidentStore

log = logging.getLogger("pantau.notify.metrics")


def create_metrics_app(store: IncidentStore) -> FastAPI:
    app = FastAPI(title="Pantau notify metrics", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else "http_error"
        return problems.problem(exc.status_code, code, "only /metrics is served here")

    @app.get("/metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        try:
            for lv, n in (await store.open_counts()).items():
                metrics.OPEN_INCIDENTS.labels(lv).set(n)
        except Exception:
            log.warning("could not count open incidents for /metrics")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


__all__ = ["create_metrics_app"]
