"""The two publishing routes of the ingest gateway, `POST /v1/reports` and `POST
/v1/reports:batch`: their handlers, from plain inputs (the request's headers and the chunks of
its body), and the plain ASGI front that serves them ahead of the FastAPI app.

Why a front: per single report, FastAPI and Starlette (routing over ~25 routes, middleware,
exception handlers, the endpoint wrapper) cost about as much CPU as the Redis claim, the
produce and the accept together (bench/results/2026-12-02-profiles.md, section 2). The FastAPI
app keeps both routes declared, for its OpenAPI document, and answers them through the same
handlers if it is ever served alone; every other route, every other method on these paths
(FastAPI's 405) and the lifespan stay with it. Refusals are shared/problems.py's problems.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import orjson
from starlette.requests import ClientDisconnect

from shared import metrics, problems
from shared.config import Source
from shared.problems import Refusal
from shared.regions import in_scope
from shared.schemas import ReportEvent, validate_obj
from services.ingest.intake import RateLimited, Unavailable

if TYPE_CHECKING:
    from services.ingest.api import Gateway

log = logging.getLogger("pantau.ingest")

REPORTS, BATCH = "/v1/reports", "/v1/reports:batch"
MAX_BATCH = 500
RETRY_AFTER_UNAVAILABLE_S = 5
INTERNAL_DETAIL = "internal error; the report was not accepted"

# A handler's answer to a request it took: status and JSON body.
Answer = tuple[int, bytes]


# --- the checks, on plain inputs ---------------------------------------------------------------
def check_content_type(headers: Mapping[str, str]) -> None:
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise Refusal(415, "unsupported_media_type", "send the body as Content-Type: application/json")


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refused as soon as the declared or the received length passes `limit`."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"body is over {limit} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too_large", f"body is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Refusal(422, "invalid", "invalid JSON",
                      errors=[{"field": "(body)", "message": f"invalid JSON: {e.args[0] if e.args else e}"}]) from None


def scope_errors(source: Source, report: ReportEvent) -> list[dict[str, str]]:
    errors = []
    if report.source != source.id:
        errors.append({"field": "source", "message": f"this API key publishes as {source.id!r} only"})
    if not in_scope(report.region_code, source.regions):
        errors.append({"field": "region_code", "message": f"{report.region_code!r} is outside the regions this API key "
                                                          f"may report on ({', '.join(source.regions)})"})
    return errors


class Publishing:
    """The handlers of the two publishing routes: from the request's headers (lower-case name
    to first value) and its body's chunks to an answer, or a Refusal to answer as a problem."""

    def __init__(self, gw: Gateway):
        self.gw = gw

    def _count_rejected(self, source: str, reason: str, n: int = 1) -> None:
        metrics.REPORTS_REJECTED.labels(metrics.source_label(source, self.gw.known_sources), reason).inc(n)

    def _source_of(self, headers: Mapping[str, str]) -> Source:
        """The source the request's key belongs to, else a 401 (counted)."""
        try:
            return self.gw.authenticate(headers.get("authorization", ""))
        except Refusal:
            self._count_rejected("other", "unauthorized")
            raise

    async def _take(self, source: Source, reports: list[ReportEvent]):
        limit = self.gw.rate_limit(source)
        try:
            return await self.gw.intake.take(source.id, limit, reports)  # type: ignore[union-attr]
        except RateLimited as e:
            self._count_rejected(source.id, "rate_limited", len(reports))
            raise Refusal(429, "rate_limited", f"over the rate limit of {limit} reports per minute",
                          {"Retry-After": str(e.retry_after_s)}) from None
        except Unavailable as e:
            self._count_rejected(source.id, "unavailable", len(reports))
            # After an ambiguous failure the report may be on the topic: saying "nothing was
            # accepted" would be a guess. The retry with the same event_id learns the outcome.
            outcome = ("it may have been accepted: retry with the same event_id to learn the outcome "
                       "(it is never published twice)" if e.maybe_accepted else "nothing was accepted, retry later")
            raise Refusal(503, "unavailable", f"{e}; {outcome}",
                          {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}) from None

    @staticmethod
    def _count_outcomes(source: str, outcomes) -> None:
        accepted = sum(1 for o in outcomes if o.status == "accepted")
        if accepted:
            metrics.REPORTS_ACCEPTED.labels(source, "http").inc(accepted)
            metrics.SOURCE_LAST_REPORT.labels(source).set(time.time())
        if len(outcomes) - accepted:
            metrics.REPORTS_DUPLICATE.labels(source, "http").inc(len(outcomes) - accepted)

    async def report(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> Answer:
        """One report: 202 once the broker has durably acknowledged it, 200 for a duplicate."""
        source = self._source_of(headers)
        metrics.REPORTS_RECEIVED.labels(source.id, "http").inc()
        try:
            check_content_type(headers)
            body = await read_body(headers, chunks, self.gw.config.ingest.max_body_bytes)
            report, errors = validate_obj(parse(body))
            if report is None:
                raise Refusal(422, "invalid", "invalid report", errors=errors)
            scope = scope_errors(source, report)
            if scope:
                raise Refusal(403, "forbidden", "; ".join(f"{e['field']}: {e['message']}" for e in scope))
        except Refusal as r:
            self._count_rejected(source.id, r.code)
            raise
        (outcome,) = await self._take(source, [report])
        self._count_outcomes(source.id, [outcome])
        return (202 if outcome.status == "accepted" else 200,
                orjson.dumps({"event_id": outcome.event_id, "status": outcome.status}))

    async def batch(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> Answer:
        """1-500 reports: one result per item, in input order."""
        source = self._source_of(headers)
        try:
            check_content_type(headers)
            body = await read_body(headers, chunks, self.gw.config.ingest.max_batch_body_bytes)
            doc = parse(body)
            if not isinstance(doc, dict) or set(doc) != {"reports"} or not isinstance(doc["reports"], list):
                raise Refusal(422, "invalid", "invalid batch", errors=[
                    {"field": "(body)", "message": 'must be an object with exactly one field, "reports": [ ... ]'}])
            items = doc["reports"]
            if not 1 <= len(items) <= MAX_BATCH:
                raise Refusal(422, "invalid", "invalid batch", errors=[
                    {"field": "reports", "message": f"must hold 1 to {MAX_BATCH} reports, got {len(items)}"}])
        except Refusal as r:
            self._count_rejected(source.id, r.code)
            raise
        metrics.REPORTS_RECEIVED.labels(source.id, "http").inc(len(items))
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, ReportEvent]] = []
        for i, item in enumerate(items):
            report, errors = validate_obj(item)
            if report is not None:
                errors = scope_errors(source, report)
            event_id = item.get("event_id") if isinstance(item, dict) and isinstance(item.get("event_id"), str) else None
            if errors:
                self._count_rejected(source.id, "invalid" if report is None else "forbidden")
                results.append({"event_id": event_id, "status": "rejected", "errors": errors})
            else:
                results.append({"event_id": event_id, "status": None})
                valid.append((i, report))
        limit = self.gw.rate_limit(source)
        if len(valid) > limit:
            # GCRA allows at most one minute's worth at once; such a batch could never pass.
            raise Refusal(422, "invalid", "batch over the rate limit", errors=[{
                "field": "reports", "message": f"{len(valid)} valid reports exceed this source's limit of "
                                              f"{limit} per minute; split the batch"}])
        if valid:
            outcomes = await self._take(source, [r for _, r in valid])
            self._count_outcomes(source.id, outcomes)
            for (i, _), o in zip(valid, outcomes):
                results[i]["status"] = o.status
        return 200, orjson.dumps({"results": results})


# --- the front ---------------------------------------------------------------------------------
_READ = (b"authorization", b"content-type", b"content-length")
_JSON = b"application/json"


def _headers(scope: dict) -> dict[str, str]:
    """The headers the handlers read, the first of each name winning (as Starlette's `get`)."""
    got: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            got.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return got


async def _chunks(receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.request":
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class Front:
    """The gateway's ASGI application: POST to the two publishing paths is answered here, with
    its request timing; anything else goes to the FastAPI app behind."""

    def __init__(self, app, publishing: Publishing):
        self.app = app
        self._handlers = {REPORTS: publishing.report, BATCH: publishing.batch}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self._handlers:
            return await self.app(scope, receive, send)
        path, t0 = scope["path"], time.perf_counter()
        status, started = 500, False
        try:
            try:
                status, body = await self._handlers[path](_headers(scope), _chunks(receive))
                raw = [(b"content-length", b"%d" % len(body)), (b"content-type", _JSON)]
            except Refusal as r:
                resp = problems.refusal_response(r)
                status, body, raw = resp.status_code, resp.body, resp.raw_headers
            started = True
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        except Exception:
            # Logged here, whole; the client gets the problem without the trace.
            log.exception("unhandled error on %s", path)
            if not started:
                status = 500
                await problems.problem(500, "internal", INTERNAL_DETAIL)(scope, receive, send)
        finally:
            metrics.INGEST_REQUEST_SECONDS.labels(path, str(status)).observe(time.perf_counter() - t0)


__all__ = ["BATCH", "Front", "MAX_BATCH", "Publishing", "REPORTS"]
