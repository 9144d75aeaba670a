"""The ingest HTTP gateway (contract: Ingest HTTP API): authenticate the source, check the
body, validate, and hand valid reports to the Intake; every refusal says why, in JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
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
from shared.regions import in_scope
from shared.schemas import ReportEvent, validate_obj
from services.ingest.intake import Intake, RateLimited, Unavailable
from services.ingest.state import IntakeState, claim_lease_s
from services.ingest import telegram_intake
from services.ingest.sms_intake import router as sms_router
from services.ingest.verify_api import router as verify_router

log = logging.getLogger("pantau.ingest")

MAX_BATCH = 500
# The security scheme of the publishing routes in the OpenAPI document.
_KEY = "sourceApiKey"
RETRY_AFTER_UNAVAILABLE_S = 5


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


# The OpenAPI document's; post_batch checks the same rules itself, naming the field.
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

    def authenticate(self, request: Request) -> Source:
        header = request.headers.get("authorization", "")
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


def _check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise Refusal(415, "unsupported_media_type", "send the body as Content-Type: application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too_large", f"body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Refusal(422, "invalid", "invalid JSON",
                      errors=[{"field": "(body)", "message": f"invalid JSON: {e.args[0] if e.args else e}"}]) from None


def _scope_errors(source: Source, report: ReportEvent) -> list[dict[str, str]]:
    errors = []
    if report.source != source.id:
        errors.append({"field": "source", "message": f"this API key publishes as {source.id!r} only"})
    if not in_scope(report.region_code, source.regions):
        errors.append({"field": "region_code", "message": f"{report.region_code!r} is outside the regions this API key "
                                                          f"may report on ({', '.join(source.regions)})"})
    return errors


def create_app(config: Config) -> FastAPI:
    gw = Gateway(config)

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

    problems.install(app, "internal error; the report was not accepted",
                     field_of=lambda loc: ".".join(map(str, loc)), on_crash=_crash)

    def _count_rejected(source: str, reason: str, n: int = 1) -> None:
        metrics.REPORTS_REJECTED.labels(metrics.source_label(source, gw.known_sources), reason).inc(n)

    async def _take(source: Source, reports: list[ReportEvent]):
        try:
            return await gw.intake.take(source.id, gw.rate_limit(source), reports)  # type: ignore[union-attr]
        except RateLimited as e:
            _count_rejected(source.id, "rate_limited", len(reports))
            raise Refusal(429, "rate_limited", f"over the rate limit of {gw.rate_limit(source)} reports per minute",
                          {"Retry-After": str(e.retry_after_s)}) from None
        except Unavailable as e:
            _count_rejected(source.id, "unavailable", len(reports))
            # After an ambiguous failure the report may be on the topic: saying "nothing was
            # accepted" would be a guess. The retry with the same event_id learns the outcome.
            outcome = ("it may have been accepted: retry with the same event_id to learn the outcome "
                       "(it is never published twice)" if e.maybe_accepted else "nothing was accepted, retry later")
            raise Refusal(503, "unavailable", f"{e}; {outcome}",
                          {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}) from None

    def _count_outcomes(source: str, outcomes) -> None:
        accepted = sum(1 for o in outcomes if o.status == "accepted")
        if accepted:
            metrics.REPORTS_ACCEPTED.labels(source, "http").inc(accepted)
            metrics.SOURCE_LAST_REPORT.labels(source).set(time.time())
        if len(outcomes) - accepted:
            metrics.REPORTS_DUPLICATE.labels(source, "http").inc(len(outcomes) - accepted)

    def _source_of(request: Request) -> Source:
        """The source the request's key belongs to, else a 401 (counted)."""
        try:
            return gw.authenticate(request)
        except Refusal:
            _count_rejected("other", "unauthorized")
            raise

    @app.post("/v1/reports", status_code=202, response_model=Accepted,
              responses={200: {"model": Accepted, "description": "a duplicate of an accepted report"}, **_PROBLEMS},
              openapi_extra={"requestBody": openapi.json_body(ReportEvent), "security": openapi.bearer(_KEY)})
    async def post_report(request: Request) -> Response:
        """Publish one report; 202 once the broker has durably acknowledged it."""
        source = _source_of(request)
        metrics.REPORTS_RECEIVED.labels(source.id, "http").inc()
        try:
            _check_content_type(request)
            body = await _read_body(request, config.ingest.max_body_bytes)
            report, errors = validate_obj(_parse(body))
            if report is None:
                raise Refusal(422, "invalid", "invalid report", errors=errors)
            scope = _scope_errors(source, report)
            if scope:
                raise Refusal(403, "forbidden", "; ".join(f"{e['field']}: {e['message']}" for e in scope))
        except Refusal as r:
            _count_rejected(source.id, r.code)
            raise
        (outcome,) = await _take(source, [report])
        _count_outcomes(source.id, [outcome])
        status = 202 if outcome.status == "accepted" else 200
        return Response(orjson.dumps({"event_id": outcome.event_id, "status": outcome.status}),
                        status_code=status, media_type="application/json")

    @app.post("/v1/reports:batch", response_model=BatchResults, responses=_PROBLEMS,
              openapi_extra={"requestBody": openapi.json_body(BatchBody), "security": openapi.bearer(_KEY)})
    async def post_batch(request: Request) -> Response:
        """Publish 1-500 reports; one result per item, in input order."""
        source = _source_of(request)
        try:
            _check_content_type(request)
            body = await _read_body(request, config.ingest.max_batch_body_bytes)
            doc = _parse(body)
            if not isinstance(doc, dict) or set(doc) != {"reports"} or not isinstance(doc["reports"], list):
                raise Refusal(422, "invalid", "invalid batch", errors=[
                    {"field": "(body)", "message": 'must be an object with exactly one field, "reports": [ ... ]'}])
            items = doc["reports"]
            if not 1 <= len(items) <= MAX_BATCH:
                raise Refusal(422, "invalid", "invalid batch", errors=[
                    {"field": "reports", "message": f"must hold 1 to {MAX_BATCH} reports, got {len(items)}"}])
        except Refusal as r:
            _count_rejected(source.id, r.code)
            raise
        metrics.REPORTS_RECEIVED.labels(source.id, "http").inc(len(items))
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, ReportEvent]] = []
        for i, item in enumerate(items):
            report, errors = validate_obj(item)
            if report is not None:
                errors = _scope_errors(source, report)
            event_id = item.get("event_id") if isinstance(item, dict) and isinstance(item.get("event_id"), str) else None
            if errors:
                _count_rejected(source.id, "invalid" if report is None else "forbidden")
                results.append({"event_id": event_id, "status": "rejected", "errors": errors})
            else:
                results.append({"event_id": event_id, "status": None})
                valid.append((i, report))
        if len(valid) > gw.rate_limit(source):
            # GCRA allows at most one minute's worth at once; such a batch could never pass.
            raise Refusal(422, "invalid", "batch over the rate limit", errors=[{
                "field": "reports", "message": f"{len(valid)} valid reports exceed this source's limit of "
                                              f"{gw.rate_limit(source)} per minute; split the batch"}])
        if valid:
            outcomes = await _take(source, [r for _, r in valid])
            _count_outcomes(source.id, outcomes)
            for (i, _), o in zip(valid, outcomes):
                results[i]["status"] = o.status
        return Response(orjson.dumps({"results": results}), media_type="application/json")

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
    return app


class _Timing:
    """Request timing as plain ASGI: Starlette's @app.middleware("http") wraps every request
    in a task group and memory streams, which cost the gateway ~1 ms of CPU per request."""

    _ENDPOINTS = ("/v1/reports", "/v1/reports:batch")

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
