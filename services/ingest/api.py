"""The ingest HTTP gateway (contract: Ingest HTTP API): authenticate the source, check the
body, validate, and hand valid reports to the Intake; every refusal says why, in JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Literal

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from shared import heap, metrics, openapi, problems, redis_client
from shared.config import Config, Source, sha256_hex
from shared.kafka import producer_settings
from shared.problems import FieldError, Problem, Refusal
from shared.schemas import ReportEvent
from services.ingest.hot_routes import BATCH, INTERNAL_DETAIL, MAX_BATCH, REPORTS, Front, Publishing
from services.ingest.intake import Intake
from services.ingest.state import IntakeState, claim_lease_s
from services.ingest import telegram_intake
from services.ingest.sms_intake import router as sms_router
from services.ingest.verify_api import router as verify_router

log = logging.getLogger("pantau.ingest")

# The security scheme of the publishing routes in the OpenAPI document.
_KEY = "sourceApiKey"


# --- response shapes, for the OpenAPI document ----------------------------------------------
class Accepted(BaseModel):
    """The answer to one report taken: accepted now, or a duplicate of one accepted before."""

    event_id: str
    status: Literal["accepted", "duplicate"]


class ItemResult(BaseModel):
    """The outcome of one item of a batch, in input order."""

    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    errors: list[FieldError] | None = None


class BatchResults(BaseModel):
    """The answer to a batch: one result per item."""

    results: list[ItemResult]


# The OpenAPI document's; Publishing.batch checks the same rules itself, naming the field.
class BatchBody(BaseModel):
    """A batch of 1-500 reports."""

    model_config = ConfigDict(extra="forbid")

    reports: list[ReportEvent] = Field(min_length=1, max_length=MAX_BATCH)


_PROBLEMS = problems.responses({
    401: "missing or unknown API key",
    403: "source or region outside the key's scope",
    413: "body too large",
    415: "not application/json",
    422: "invalid report; `errors` names every bad field",
    429: "over the source's rate limit; see Retry-After",
    503: "broker or state store unreachable; retry with the same event_id "
         "(`detail` says whether the report may have been accepted)",
})


class Gateway:
    """Everything the handlers need, built once from the config."""

    def __init__(self, config: Config):
        self.config = config
        self.by_key_hash = {s.key_hash(): s for s in config.sources}
        self.known_sources = frozenset(s.id for s in config.sources)
        self.producer: AIOKafkaProducer | None = None
        self.redis: aioredis.Redis | None = None
        self.intake: Intake | None = None
        self.state_ttl_ms = config.ingest.dedup_ttl_days * 86_400_000

    def authenticate(self, header: str) -> Source:
        """The source whose key the Authorization header carries, else a 401."""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Refusal(401, "unauthorized", "send the source API key as 'Authorization: Bearer <key>'",
                          {"WWW-Authenticate": "Bearer"})
        # Look up by the key's hash: keys are stored hashed, and the lookup reveals nothing of them.
        source = self.by_key_hash.get(sha256_hex(key.strip()))
        if source is None:
            raise Refusal(401, "unauthorized", "unknown API key", {"WWW-Authenticate": "Bearer"})
        return source

    def rate_limit(self, source: Source) -> int:
        return source.rate_limit_per_minute or self.config.ingest.default_rate_limit_per_minute


def create_app(config: Config) -> Front:
    """The gateway's ASGI application: the publishing routes' front ahead of the FastAPI app."""
    gw = Gateway(config)
    publishing = Publishing(gw)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gw.redis = redis_client.connect(config.redis.url, 2)
        gw.producer = AIOKafkaProducer(
            bootstrap_servers=config.kafka.bootstrap_servers, **producer_settings(config.ingest.send_timeout_s)
        )
        await gw.producer.start()
        lease_s = claim_lease_s(config.ingest.send_timeout_s)
        gw.intake = Intake(gw.producer, IntakeState(gw.redis, config.ingest.dedup_ttl_days * 86400),
                           config.kafka.bootstrap_servers, config.ingest.send_timeout_s, lease_s,
                           wait_for_peer_s=lease_s + 1)
        await gw.intake.start()
        bot = telegram_intake.start(gw, config)
        heap.settle()
        try:
            yield
        finally:
            if bot is not None:
                bot.cancel()
            await gw.intake.close()
            await gw.producer.stop()
            await gw.redis.aclose()

    app = FastAPI(title="Pantau ingest", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw
    app.include_router(verify_router(gw))
    app.include_router(sms_router(gw))

    def _crash(request: Request, exc: Exception) -> None:
        log.exception("unhandled error on %s", request.url.path)

    problems.install(app, INTERNAL_DETAIL,
                     field_of=lambda loc: ".".join(map(str, loc)), on_crash=_crash)

    @app.post(REPORTS, status_code=202, response_model=Accepted,
              responses={200: {"model": Accepted, "description": "a duplicate of an accepted report"}, **_PROBLEMS},
              openapi_extra={"requestBody": openapi.json_body(ReportEvent), "security": openapi.bearer(_KEY)})
    async def post_report(request: Request) -> Response:
        """Publish one report; 202 once the broker has durably acknowledged it."""
        # Served by the Front; here for the document, and for the app served alone.
        return _json(*await publishing.report(request.headers, request.stream()))

    @app.post(BATCH, response_model=BatchResults, responses=_PROBLEMS,
              openapi_extra={"requestBody": openapi.json_body(BatchBody), "security": openapi.bearer(_KEY)})
    async def post_batch(request: Request) -> Response:
        """Publish 1-500 reports; one result per item, in input order."""
        return _json(*await publishing.batch(request.headers, request.stream()))

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", responses=problems.responses({503: "broker or Redis unreachable"}))
    async def readyz() -> Response:
        """Broker and Redis both reachable."""
        down = []
        try:
            await asyncio.wait_for(gw.redis.ping(), 2)  # type: ignore[union-attr]
        except Exception:
            down.append("redis unreachable")
        try:
            await asyncio.wait_for(gw.producer.client.fetch_all_metadata(), 3)  # type: ignore[union-attr]
        except Exception:
            down.append("broker unreachable")
        if down:
            return problems.problem(503, "not_ready", "; ".join(down), {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        """Prometheus text format."""
        try:
            # Redis memory beside Pantau's own series, so one scrape job can warn before Redis
            # is full (it never evicts: full means every new report is refused).
            mem = await asyncio.wait_for(gw.redis.info("memory"), 1)  # type: ignore[union-attr]
            metrics.REDIS_USED_MEMORY.set(mem["used_memory"])
            metrics.REDIS_MAXMEMORY.set(mem["maxmemory"])
        except Exception:
            pass  # unreachable Redis shows on /readyz; the gauges keep their last values
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # Publishing needs the source's API key; the document says so, so clients and tools know.
    openapi.install(app, "Pantau ingest gateway, contract v1", (ReportEvent, BatchBody, Problem),
                    {_KEY: "the source's API key", "operatorToken": "an operator's token"})
    app.add_middleware(_Timing)
    return Front(app, publishing)


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


class _Timing:
    """Request timing as plain ASGI: Starlette's @app.middleware("http") wraps every request
    in a task group and memory streams, which cost the gateway ~1 ms of CPU per request. The
    Front times the publishing POSTs itself; other methods on their paths are timed here."""

    _ENDPOINTS = (REPORTS, BATCH)

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in self._ENDPOINTS else "other"
            metrics.INGEST_REQUEST_SECONDS.labels(endpoint, str(status[0])).observe(time.perf_counter() - t0)
