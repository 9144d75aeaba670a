"""What the notify API reads from a request: the JSON bodies it accepts, checked strictly, and
the reading itself (at most 64 KiB, refused as a problem with every bad field named)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import WithJsonSchema

from shared.categories import CATEGORIES
from shared.problems import Refusal
from shared.regions import CODE_PATTERN, known_region
from shared.strict import Strict as _Strict
from shared.times import parse_ts, rfc3339


class NoteBody(_Strict):
    """An optional note on an acknowledgement or a resolution."""

    note: str | None = Field(None, max_length=2000)


# The rules below in JSON Schema, for the OpenAPI document; the validators check them in code
# and name what is wrong. A silence with no matcher would hold every incident.
_RFC3339 = Field(json_schema_extra={"format": "date-time"})


class Matchers(_Strict):
    """Which incidents a silence holds: a region prefix, a category, or both."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    region: Annotated[str, AfterValidator(known_region),
                      WithJsonSchema({"type": "string", "pattern": CODE_PATTERN.pattern})] | None = None
    category: Annotated[str, WithJsonSchema({"type": "string", "enum": list(CATEGORIES)})] | None = None

    @field_validator("category")
    @classmethod
    def _category(cls, v: str | None) -> str | None:
        if v is not None and v not in CATEGORIES:
            raise ValueError(f"must be one of {', '.join(CATEGORIES)}")
        return v


class SilenceBody(_Strict):
    """A new silence: its matchers, when it ends, and why."""

    matchers: Matchers
    ends_at: Annotated[str, _RFC3339]
    reason: str = Field(min_length=1, max_length=500)

    @field_validator("ends_at")
    @classmethod
    def _ts(cls, v: str) -> str:
        try:
            ts = parse_ts(v)
        except ValueError:
            raise ValueError("must be an RFC 3339 time with offset, e.g. 2024-11-28T08:00:00+08:00") from None
        try:
            rfc3339(ts)  # 9999-12-31T23:59:59-14:00 is year 10000 in UTC: it could be stored, never shown
        except (ValueError, OverflowError):
            raise ValueError("is out of range: it must fall before 9999-12-31T23:59:59Z") from None
        return v


class OverrideBody(_Strict):
    """A stand-in on a rotation: who, from when to when, and why."""

    contact: str
    start: Annotated[str, _RFC3339]
    end: Annotated[str, _RFC3339]
    reason: str | None = Field(None, max_length=500)


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        out.append({"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": msg})
    return out


MAX_BODY = 64 * 1024


async def _read_capped(request: Request) -> bytes:
    """The body, refused (413) as soon as it is known to exceed MAX_BODY: by its declared length
    before any of it is read, else once the bytes received pass the limit, so a stranger cannot
    make notify hold a body of any size in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > MAX_BODY):
        raise Refusal(413, "too_large", "body is over 64 KiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refusal(413, "too_large", "body is over 64 KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, model: type[BaseModel], optional: bool = False) -> Any:
    """The body of `request` as `model` (an empty one as `model()` when `optional`), or a Refusal."""
    raw = await _read_capped(request)
    if not raw.strip():
        if optional:
            return model()
        raise Refusal(422, "invalid", "a JSON body is required", errors=[{"field": "(body)", "message": "required"}])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refusal(422, "invalid", "invalid JSON", errors=[{"field": "(body)", "message": "invalid JSON"}]) from None
    if not isinstance(data, dict):
        raise Refusal(422, "invalid", "must be a JSON object", errors=[{"field": "(body)", "message": "must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Refusal(422, "invalid", "invalid body", errors=_errors(exc)) from None
