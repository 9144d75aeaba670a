"""Operators verify or reject a report: `POST /v1/reports/{source}/{event_id}/verify` and
`/reject`, body `{"note"?}`, operator token (the config's `operators`, as notify checks them).

The report must be one ingest accepted (its index entry, written with the accept mark, says
where it counted); the decision goes to `pantau.verifications.v1`, keyed like the report, so
the scoring worker that owns its cell applies it. Asking for the decision a report already has
answers 200 `unchanged` and sends nothing. The rule lives in shared/decisions.py, which
notify's console takes its decisions through too.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from shared import decisions, problems
from shared.config import Config, Operator, sha256_hex
from shared.problems import Refusal
from shared.strict import Strict
from shared.verifications import REJECTED, VERIFIED


class DecisionBody(Strict):
    """Why the operator decided so (optional, kept on the decision event)."""

    note: str | None = Field(None, max_length=1000)


class DecisionTaken(BaseModel):
    """The answer: the decision sent now, or `unchanged` when the report already had it."""

    source: str
    event_id: str
    decision: Literal["verified", "rejected"]
    status: Literal["accepted", "unchanged"]


_PROBLEMS = problems.responses({
    401: "missing or unknown operator token",
    404: "no report with this source and event_id was accepted (within the dedup window)",
    422: "invalid body; `errors` names every bad field",
    503: "broker or state store unreachable; nothing was decided, retry",
})


def operator_auth(config: Config) -> Callable[[Request], Operator]:
    """The operator a request's bearer token belongs to (401 otherwise), checked against
    every configured operator's token hash in constant time."""
    hashes = [(op.token_hash(), op) for op in config.operators]

    def operator(request: Request) -> Operator:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "unauthorized", "send the operator token as 'Authorization: Bearer <token>'",
                          {"WWW-Authenticate": "Bearer"})
        presented, found = sha256_hex(token.strip()), None
        for h, op in hashes:
            if hmac.compare_digest(h, presented):
                found = op
        if found is None:
            raise Refusal(401, "unauthorized", "unknown operator token", {"WWW-Authenticate": "Bearer"})
        return found

    return operator


async def send_decision(gw: Any, source: str, event_id: str, decision: str, by: str, by_name: str,
                        note: str | None) -> str:
    """The decision taken through ingest's own Redis and producer (shared/decisions.py)."""
    return await decisions.decide(gw.redis, gw.producer, gw.state_ttl_ms, source, event_id, decision, by,
                                  by_name, note)


def router(gw: Any) -> APIRouter:
    """The two decision endpoints, for the ingest app to include."""
    api = APIRouter()
    operator = operator_auth(gw.config)

    async def _decide(request: Request, source: str, event_id: str, decision: str) -> Response:
        op = operator(request)
        raw = await request.body()
        try:
            body = DecisionBody.model_validate(orjson.loads(raw) if raw.strip() else {})
        except orjson.JSONDecodeError:
            raise Refusal(422, "invalid", "invalid JSON", errors=[{"field": "(body)", "message": "invalid JSON"}]) from None
        except ValidationError as e:
            raise Refusal(422, "invalid", "invalid decision", errors=[
                {"field": ".".join(map(str, x["loc"])) or "(body)", "message": x["msg"]}
                for x in e.errors(include_url=False)]) from None
        status = await send_decision(gw, source, event_id, decision, f"operator:{op.id}", op.name, body.note)
        answer = {"source": source, "event_id": event_id, "decision": decision, "status": status}
        return Response(orjson.dumps(answer), status_code=202 if status == "accepted" else 200,
                        media_type="application/json")

    extra = {"requestBody": {"required": False, "content": {"application/json": {
        "schema": DecisionBody.model_json_schema()}}}, "security": [{"operatorToken": []}]}

    @api.post("/v1/reports/{source}/{event_id}/verify", status_code=202, response_model=DecisionTaken,
              responses={200: {"model": DecisionTaken, "description": "the report was already verified"},
                         **_PROBLEMS}, openapi_extra=extra)
    async def verify(request: Request, source: str, event_id: str) -> Response:
        """Verify a report: it counts at full weight in its region's score."""
        return await _decide(request, source, event_id, VERIFIED)

    @api.post("/v1/reports/{source}/{event_id}/reject", status_code=202, response_model=DecisionTaken,
              responses={200: {"model": DecisionTaken, "description": "the report was already rejected"},
                         **_PROBLEMS}, openapi_extra=extra)
    async def reject(request: Request, source: str, event_id: str) -> Response:
        """Reject a report: it no longer counts in its region's score."""
        return await _decide(request, source, event_id, REJECTED)

    return api
