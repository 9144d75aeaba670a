"""`pantau incidents` and `pantau ack`: an operator's client for the notify HTTP API.

The API is found at `--url`, else at the config's `notify.host`/`notify.port`; the operator
token comes from `--token` or `PANTAU_OPERATOR_TOKEN` and is never printed. Every failure
becomes one line on stderr and an exit code a script can branch on (`EXIT`), never a
traceback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

# Exit codes, documented in the README's command-line section.
EXIT = {
    "ok": 0,
    "error": 1,  # the API answered with something unexpected (5xx, invalid request)
    "usage": 2,  # no token, bad config file or option
    "unreachable": 3,  # connection refused, DNS failure, timeout
    "unauthorized": 4,  # 401: missing or unknown operator token
    "not_found": 5,  # 404: no such incident
    "conflict": 6,  # 409: e.g. acknowledging a resolved incident
}


class CliError(Exception):
    """A failure worded for the operator, with the exit code it ends the command with."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class NotifyClient:
    """The notify API as `pantau incidents`, `ack` and `report` call it, with an operator token."""

    url: str
    token: str
    timeout_s: float = 10.0

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout_s, headers=headers) as c:
                resp = c.request(method, path, **kw)
        except httpx.ConnectError:
            raise CliError(f"cannot reach the notify API at {self.url} (connection refused or unknown host); "
                           f"is notify running? (--url or the config's notify.host/port)", EXIT["unreachable"]) from None
        except httpx.TimeoutException:
            raise CliError(f"the notify API at {self.url} did not answer within {self.timeout_s:g} s",
                           EXIT["unreachable"]) from None
        except httpx.HTTPError as e:
            raise CliError(f"cannot talk to the notify API at {self.url}: {type(e).__name__}",
                           EXIT["unreachable"]) from None
        return _answer(resp)

    def incidents(self, status: str | None, region: str | None = None, category: str | None = None,
                  limit: int = 100) -> dict[str, Any]:
        params = {k: v for k, v in (("status", status), ("region", region), ("category", category)) if v}
        params["limit"] = str(limit)
        return self._request("GET", "/v1/incidents", params=params)

    def ack(self, incident_id: str, note: str | None) -> dict[str, Any]:
        body = {"note": note} if note else {}
        return self._request("POST", f"/v1/incidents/{quote(incident_id, safe='')}/ack", json=body)


def _answer(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if 200 <= resp.status_code < 300 and body is not None:
        return body
    message = body.get("detail") if isinstance(body, dict) else None
    message = message or (resp.text.strip()[:200] or resp.reason_phrase)
    if isinstance(body, dict) and body.get("errors"):
        message += ": " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in body["errors"])
    code = resp.status_code
    if code == 401:
        raise CliError(f"the notify API refused the operator token ({message}); "
                       f"give a valid one with --token or PANTAU_OPERATOR_TOKEN", EXIT["unauthorized"])
    if code == 404:
        raise CliError(f"not found: {message}", EXIT["not_found"])
    if code == 409:
        raise CliError(f"refused: {message}", EXIT["conflict"])
    raise CliError(f"the notify API answered {code}: {message}", EXIT["error"])


def base_url(host: str, port: int) -> str:
    """The notify API's address from its listen address (a wildcard listens on loopback too)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def age(opened_at: str | None, now: float | None = None) -> str:
    """`3d4h`, `2h05m`, `7m`, `40s`: how long ago an incident opened."""
    if not opened_at:
        return "?"
    try:
        t = datetime.fromisoformat(opened_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "?"
    s = max(0, int((time.time() if now is None else now) - t))
    if s < 60:
        return f"{s}s"
    m = s // 60
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h}h"


LEVEL_STYLE = {"waspada": "yellow", "siaga": "dark_orange", "awas": "bold red", "normal": "green"}


def status_text(inc: dict[str, Any]) -> str:
    """The status, with who acknowledged it or which province incident holds its pages back."""
    st = str(inc.get("status", "?"))
    if st == "acknowledged" and inc.get("acknowledged_by"):
        return f"{st} ({inc['acknowledged_by']})"
    if inc.get("inhibited_by"):
        return f"{st}, held by {inc['inhibited_by']}"
    return st


def table(incidents: list[dict[str, Any]], title: str):
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title)
    for name in ("id", "region", "category", "level", "status", "age"):
        # ids are copied into `pantau ack`: fold a long one rather than cut it with an ellipsis
        t.add_column(name, no_wrap=name in ("id", "level", "age"), overflow="fold")
    for inc in incidents:
        level = str(inc.get("level", "?"))
        region = f"{inc.get('region_code', '?')} {inc.get('region_name') or ''}".strip()
        t.add_row(str(inc.get("id")), region, str(inc.get("category")),
                  Text(level, style=LEVEL_STYLE.get(level, "")), status_text(inc), age(inc.get("opened_at")))
    return t


__all__ = ["EXIT", "CliError", "NotifyClient", "base_url", "age", "status_text", "table"]
