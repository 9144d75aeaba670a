"""Console sessions: an operator who logged in with their token holds a random session id in an
HttpOnly, SameSite=Strict cookie; Redis keeps, under the id's sha256, who it is and the
session's CSRF token, for `TTL_S`. Every form that changes something carries the CSRF token.

`operator_of` is the one way a console request is authenticated: a bearer token (as the API)
or a live session; neither answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Sequence

import redis.asyncio as aioredis
from fastapi import Request, Response

from shared.config import Operator, sha256_hex
from shared.problems import Refusal

COOKIE = "pantau_console"
TTL_S = 12 * 3600  # one working shift
_KEY = "pantau:notify:console:session:{}"


@dataclass(frozen=True)
class Session:
    """A logged-in operator's console session: who, the CSRF token its forms carry, the language."""

    sid: str
    operator: Operator
    csrf: str
    language: str


def _key(sid: str) -> str:
    return _KEY.format(hashlib.sha256(sid.encode()).hexdigest())


def operator_for_token(token: str, hashes: Sequence[tuple[str, Operator]]) -> Operator | None:
    """The operator whose token this is; every hash compared, in constant time each."""
    presented = sha256_hex(token.strip())
    found = None
    for h, op in hashes:
        if hmac.compare_digest(h, presented):
            found = op
    return found


async def create(r: aioredis.Redis, op: Operator, language: str) -> Session:
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await r.hset(_key(sid), mapping={"operator": op.id, "csrf": csrf, "lang": language})
    await r.expire(_key(sid), TTL_S)
    return Session(sid, op, csrf, language)


async def load(r: aioredis.Redis, request: Request, operators: Sequence[Operator]) -> Session | None:
    sid = request.cookies.get(COOKIE)
    if not sid or len(sid) > 128:
        return None
    doc: dict[Any, Any] = await r.hgetall(_key(sid))
    doc = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in doc.items()}
    op = next((o for o in operators if o.id == doc.get("operator")), None)
    if op is None:  # expired, logged out, or the operator was removed from the config
        return None
    return Session(sid, op, doc["csrf"], doc.get("lang", "id"))


async def set_language(r: aioredis.Redis, s: Session, language: str) -> None:
    await r.hset(_key(s.sid), "lang", language)


async def end(r: aioredis.Redis, s: Session) -> None:
    await r.delete(_key(s.sid))


def set_cookie(resp: Response, sid: str, secure: bool) -> None:
    resp.set_cookie(COOKIE, sid, max_age=TTL_S, path="/console", httponly=True, samesite="strict", secure=secure)


def clear_cookie(resp: Response, secure: bool) -> None:
    resp.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=secure)


def csrf_ok(s: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(s.csrf.encode(), (presented or "").encode())


async def operator_of(request: Request, r: aioredis.Redis, operators: Sequence[Operator]) -> Operator:
    """Bearer token first (scripts, `pantau report`), else the console session."""
    if request.headers.get("authorization"):
        return request.app.state.authenticate(request)
    s = await load(r, request, operators)
    if s is None:
        raise Refusal(401, "unauthorized", "send the operator token as 'Authorization: Bearer <token>' "
                      "or log in at /console", {"WWW-Authenticate": "Bearer"})
    return s.operator


__all__ = ["COOKIE", "Session", "create", "load", "end", "operator_of", "operator_for_token", "csrf_ok",
           "set_cookie", "clear_cookie", "set_language"]
