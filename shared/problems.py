"""The one error-response shape of every Pantau HTTP API: RFC 9457 `application/problem+json`.

Every 4xx/5xx body is

    {"type": "urn:pantau:problem:<code>", "title": "<what kind of problem>", "status": <int>,
     "detail": "<this occurrence, in words>", "errors": [{"field": ..., "message": ...}, ...]}

`errors` names every bad field of a 422 (contract: ingest 422 `{"errors": [...]}`) and is an
empty list otherwise; `<code>` (e.g. `not_found`, `rate_limited`) is stable for programs to
branch on. `install(app, ...)` gives a FastAPI app the handlers that answer this way.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:pantau:problem:"

# Titles by code: the same for every occurrence, as RFC 9457 asks of `title`.
TITLES = {
    "unauthorized": "Authentication required",
    "forbidden": "Not allowed",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflicts with the current state",
    "too_large": "Body too large",
    "unsupported_media_type": "Unsupported media type",
    "invalid": "Invalid request",
    "rate_limited": "Too many requests",
    "unavailable": "Service unavailable",
    "not_ready": "Not ready",
    "internal": "Internal error",
    "expired": "Link expired",
    "bad_signature": "Link not genuine",
    "malformed": "Link malformed",
    "stale_link": "Link outdated",
}
_CODE_OF_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                   409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid",
                   429: "rate_limited", 503: "unavailable"}


class FieldError(BaseModel):
    """One bad field and what is wrong with it."""

    field: str
    message: str


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details, with Pantau's `errors` list)."""

    type: str = Field(description=f"`{TYPE_PREFIX}<code>`; the code is stable for programs to branch on")
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list, description="every bad field (422); else empty")


class Refusal(Exception):
    """A request refused as a whole: status, a machine-readable code, words, and any bad fields."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.errors = status, code, message, headers, errors


def code_of(body: dict[str, Any]) -> str:
    """The code of a problem body (`not_found` from `urn:pantau:problem:not_found`)."""
    t = body.get("type", "")
    return t[len(TYPE_PREFIX):] if isinstance(t, str) and t.startswith(TYPE_PREFIX) else ""


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            errors: list[dict[str, str]] | None = None) -> Response:
    """The problem+json response."""
    body = {"type": TYPE_PREFIX + code, "title": TITLES.get(code, "Error"), "status": status,
            "detail": detail, "errors": errors or []}
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=MEDIA_TYPE)


def refusal_response(exc: Refusal) -> Response:
    return problem(exc.status, exc.code, exc.message, exc.headers, exc.errors)


def install(app: FastAPI, internal_detail: str, field_of: Callable[[tuple], str],
            on_crash: Callable[[Request, Exception], None],
            on_refusal: Callable[[Request, Refusal], Awaitable[Response | None]] | None = None) -> None:
    """Answer every refusal, routing error, parameter error and crash of `app` as a problem.

    `field_of` names a parameter from pydantic's location; `on_crash` logs an unhandled error
    (each service decides what may be logged); `on_refusal` may answer a refusal otherwise
    (notify's ack pages answer a browser in HTML) by returning a response.
    """

    @app.exception_handler(Refusal)
    async def _refusal(request: Request, exc: Refusal) -> Response:
        if on_refusal is not None and (custom := await on_refusal(request, exc)) is not None:
            return custom
        return refusal_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _CODE_OF_STATUS.get(exc.status_code, "http_error")
        # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110).
        return problem(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": field_of(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return problem(422, "invalid", "invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        on_crash(request, exc)
        return problem(500, "internal", internal_detail)


def responses(descriptions: dict[int, str]) -> dict[int, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each a Problem in problem+json."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {status: {"description": why, "content": content} for status, why in descriptions.items()}


__all__ = ["MEDIA_TYPE", "TYPE_PREFIX", "FieldError", "Problem", "Refusal", "code_of", "problem", "install",
           "responses"]
