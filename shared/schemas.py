"""The ReportEvent v1 schema and its validation, shared by the HTTP gateway, the raw-topic
validator and every consumer of `pantau.reports.v1`.

Validation is strict: no type coercion ("5" is not a severity), unknown fields are refused
by name, and every problem is reported, not just the first one.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic.json_schema import WithJsonSchema

from shared.categories import Category
from shared.ids import SOURCE_ID_MAX, SOURCE_ID_PATTERN
from shared.regions import CODE_PATTERN, known_region, registry

MAX_FUTURE_S = 300.0
# Integers beyond 2^53 do not survive a round trip through most JSON readers.
MAX_COUNT = 2**53 - 1


_RFC3339 = re.compile(r"^(\d{4})-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Nothing Pantau scores happened before this; earlier dates also overflow UTC conversions.
MIN_OCCURRED_S = 0.0


def _rfc3339_not_future(value: str) -> str:
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError("must be an RFC 3339 timestamp with offset, e.g. 2024-11-27T09:30:00+08:00")
    text = value.replace("z", "Z").replace("t", "T")
    if m.group(2) == "60":
        # A leap second: RFC 3339 allows it, Python's parser does not; one second early is fine.
        text = text[: m.start(2)] + "59" + text[m.end(2):]
    frac = m.group(3)
    if frac and len(frac) > 7:
        # Python's parser takes at most 6 fractional digits; RFC 3339 allows any number.
        text = text.replace(frac, frac[:7], 1)
    try:
        ts = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise ValueError("is not a valid date and time") from None
    if ts < MIN_OCCURRED_S:
        raise ValueError("is before 1970-01-01T00:00:00Z")
    if ts - time.time() > MAX_FUTURE_S:
        raise ValueError("is more than 5 minutes in the future")
    return value


ATTRIBUTES_MAX_KEYS = 32
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_VALUE_MAX = 500


def _attributes(attrs: dict[str, str]) -> dict[str, str]:
    if len(attrs) > ATTRIBUTES_MAX_KEYS:
        raise ValueError(f"has more than {ATTRIBUTES_MAX_KEYS} keys")
    for k, v in attrs.items():
        if not k or len(k) > ATTRIBUTE_KEY_MAX:
            raise ValueError(f"key {k[:ATTRIBUTE_KEY_MAX]!r} must be 1-{ATTRIBUTE_KEY_MAX} characters")
        if len(v) > ATTRIBUTE_VALUE_MAX:
            raise ValueError(f"value of {k!r} is longer than {ATTRIBUTE_VALUE_MAX} characters")
    return attrs


# What `_attributes` checks, as JSON Schema says it (the OpenAPI document's ReportEvent).
_ATTRIBUTES_SCHEMA = WithJsonSchema({
    "type": "object", "maxProperties": ATTRIBUTES_MAX_KEYS,
    "propertyNames": {"minLength": 1, "maxLength": ATTRIBUTE_KEY_MAX},
    "additionalProperties": {"type": "string", "maxLength": ATTRIBUTE_VALUE_MAX},
})


class Location(BaseModel):
    """A point inside Indonesia's bounding box."""

    model_config = ConfigDict(extra="forbid")
    lat: Annotated[StrictFloat, Field(ge=-11, le=6.5)]
    lon: Annotated[StrictFloat, Field(ge=94, le=141.5)]


class ReportEvent(BaseModel):
    """One report from an integrated government system (contract: ReportEvent v1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    source: Annotated[StrictStr, Field(min_length=1, max_length=SOURCE_ID_MAX, pattern=SOURCE_ID_PATTERN)]
    # The pattern is documentation (known_region checks the code and names what is wrong).
    region_code: Annotated[StrictStr, Field(max_length=13, description="a Kemendagri region code in the registry, "
                                             "at any level", json_schema_extra={"pattern": CODE_PATTERN.pattern}),
                           AfterValidator(known_region)]
    category: Category
    severity: Annotated[StrictInt, Field(ge=1, le=5)]
    occurred_at: Annotated[StrictStr, Field(max_length=40, description="RFC 3339 with offset; not before 1970, at "
                                            "most 5 minutes ahead", json_schema_extra={"format": "date-time"}),
                           AfterValidator(_rfc3339_not_future)]
    title: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    description: Annotated[StrictStr, Field(max_length=5000)] | None = None
    verified: StrictBool = False
    casualties: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] = 0
    participants: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] | None = None
    location: Location | None = None
    attributes: Annotated[dict[StrictStr, StrictStr], AfterValidator(_attributes), _ATTRIBUTES_SCHEMA] | None = None
    schema_version: Annotated[StrictInt, Field(ge=1, le=1)] | None = None


def errors_of(exc: ValidationError) -> list[dict[str, str]]:
    """Turn pydantic's errors into the contract's `{"field", "message"}` list, one per field
    problem, with the offending input never echoed back (it may be personal data)."""
    out = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        # Union members show up as loc parts ("float", "int", "constrained-str"): drop them.
        loc = [p for p in loc if p not in _UNION_PARTS]
        field = ".".join(loc) or "(body)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"field": field, "message": msg})
    # A union failing both ways reports twice for one field; keep one line per (field, message).
    seen, unique = set(), []
    for item in out:
        key = (item["field"], item["message"])
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


_UNION_PARTS = {"float", "int", "str", "constrained-str", "function-after[_attributes(), dict[str,str]]"}


def validate_json(payload: bytes) -> tuple[ReportEvent | None, list[dict[str, str]]]:
    """Parse and validate one report from raw bytes: the report, or the list of errors."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        return None, [{"field": "(body)", "message": f"invalid JSON: {e.args[0] if e.args else e}"}]
    return validate_obj(obj)


def validate_obj(obj: Any) -> tuple[ReportEvent | None, list[dict[str, str]]]:
    """Validate one already-parsed JSON value as a ReportEvent."""
    if not isinstance(obj, dict):
        return None, [{"field": "(body)", "message": "must be a JSON object"}]
    try:
        return ReportEvent.model_validate(obj), []
    except ValidationError as exc:
        return None, errors_of(exc)
    except RecursionError:
        return None, [{"field": "(body)", "message": "nested too deeply"}]


def partition_key(region_code: str) -> str:
    """The key of `pantau.reports.v1`: the kabupaten/kota, or the province itself."""
    return registry().kabkota_of(region_code)


def enriched(report: ReportEvent, received_at: str, ingest_id: str) -> bytes:
    """The value written to `pantau.reports.v1`: the report as given plus when (RFC 3339)
    and under which id it entered Pantau."""
    body = report.model_dump(mode="json", exclude_none=True)
    body["received_at"] = received_at
    body["ingest_id"] = ingest_id
    return orjson.dumps(body)


def now() -> float:
    return time.time()
