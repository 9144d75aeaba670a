"""`pantau verify SOURCE EVENT_ID [--reject] --note ...`: an operator's decision on one report,
sent to the ingest API (`POST /v1/reports/{source}/{event_id}/verify` or `/reject`).

The API is found at `--url` (or `PANTAU_INGEST_URL`), else at the config's `ingest.host`/`port`;
the operator token comes from `--token` or `PANTAU_OPERATOR_TOKEN` and is never printed.
Failures end with the exit codes of `pantau ack` (cli/incidents.py `EXIT`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import httpx
import typer

from cli.incidents import EXIT, CliError, base_url


def decide(url: str, token: str, source: str, event_id: str, reject: bool, note: str | None,
           timeout_s: float = 10.0) -> dict[str, Any]:
    """Send the decision; the API's answer, or CliError worded for the operator."""
    path = f"/v1/reports/{quote(source, safe='')}/{quote(event_id, safe='')}/{'reject' if reject else 'verify'}"
    try:
        with httpx.Client(base_url=url, timeout=timeout_s) as c:
            resp = c.post(path, json={"note": note} if note else {},
                          headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    except httpx.ConnectError:
        raise CliError(f"cannot reach the ingest API at {url}; is ingest running? (--url or the config's "
                       f"ingest.host/port)", EXIT["unreachable"]) from None
    except httpx.HTTPError as e:
        raise CliError(f"cannot talk to the ingest API at {url}: {type(e).__name__}", EXIT["unreachable"]) from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code in (200, 202):
        return body
    detail = body.get("detail") if isinstance(body, dict) else None
    detail = detail or resp.text.strip()[:200]
    if resp.status_code == 401:
        raise CliError(f"the ingest API refused the operator token ({detail}); give a valid one with --token "
                       f"or PANTAU_OPERATOR_TOKEN", EXIT["unauthorized"])
    if resp.status_code == 404:
        raise CliError(f"not found: {detail}", EXIT["not_found"])
    raise CliError(f"the ingest API answered {resp.status_code}: {detail}", EXIT["error"])


def verify(
    source: str = typer.Argument(..., help="the report's source id"),
    event_id: str = typer.Argument(..., help="the report's event_id"),
    reject: bool = typer.Option(False, "--reject", help="reject the report instead of verifying it"),
    note: Optional[str] = typer.Option(None, "--note", help="why (kept with the decision)"),
    url: Optional[str] = typer.Option(None, "--url", envvar="PANTAU_INGEST_URL",
                                      help="ingest API base URL (default: the config's ingest.host and ingest.port)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="PANTAU_OPERATOR_TOKEN", show_default=False,
                                        help="operator token (better: the PANTAU_OPERATOR_TOKEN environment variable)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="config file (default: $PANTAU_CONFIG)"),
) -> None:
    """Verify a report (it counts at full weight) or, with --reject, reject it (it no longer counts)."""
    from cli.main import _config_or_exit, _refused, console

    if not token:
        _refused("verify", ValueError("no operator token: give --token or set PANTAU_OPERATOR_TOKEN"))
        raise typer.Exit(EXIT["usage"])
    if not url:
        cfg = _config_or_exit(config)
        url = base_url(cfg.ingest.host, cfg.ingest.port)
    try:
        body = decide(url.rstrip("/"), token, source, event_id, reject, note)
    except CliError as e:
        _refused("verify", e)
        raise typer.Exit(e.code)
    what = "rejected" if reject else "verified"
    said = f"{source}/{event_id}: {what}" + (" (it already was)" if body.get("status") == "unchanged" else "")
    console.print(said, markup=False, highlight=False)
