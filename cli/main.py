"""The `pantau` command line (contract: Command line)."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from shared.config import ConfigError, load

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Pantau: alert escalation for regional early warning.")
console = Console(width=140) if not sys.stdout.isatty() else Console()
err = Console(stderr=True)

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "config" / "pantau.demo.yaml"


def _config_or_exit(path: Optional[Path]):
    try:
        return load(path)
    except ConfigError as e:
        err.print(f"[red]pantau:[/] {e}")
        raise typer.Exit(2)


@app.command()
def up(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="config file (default: the demo config)"),
    demo: bool = typer.Option(False, "--demo", help="replay a Pilkada scenario through the pipeline (ephemeral)"),
    ephemeral: bool = typer.Option(False, "--ephemeral",
                                   help="keep topics in the broker's memory and start Redis empty: nothing survives"),
    workdir: Optional[Path] = typer.Option(None, help="where the broker's and Redis's data and the logs go"),
    redis_maxmemory: str = typer.Option("256mb", "--redis-maxmemory",
                                        help="Redis memory bound; when full, ingest answers 503 (README, Redis memory)"),
) -> None:
    """Run the embedded stack in the foreground: broker, Redis and every service. Ctrl-C stops all.

    Durable by default: every report acknowledged is still there after a restart or a power cut.
    --ephemeral (and --demo) trade that for speed and start from nothing each time."""
    from cli.stack import INFRA, EmbeddedStack, default_workdir, missing_servers

    config = config or DEMO_CONFIG
    cfg = _config_or_exit(config)
    # A demo replays its own scenario from scratch; state kept from an earlier one would replay
    # that run's overdue escalation steps.
    durable = not (ephemeral or demo)
    workdir = workdir or default_workdir(durable)
    if missing := missing_servers():
        err.print(f"[red]pantau up:[/] the embedded stack's servers are not installed ({', '.join(missing)}): "
                  f"pip install 'pantau[embedded]'")
        raise typer.Exit(2)
    stack = EmbeddedStack(config, workdir, durable=durable, redis_maxmemory=redis_maxmemory)
    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    receiver = None
    try:
        with console.status("starting broker, Redis and services..."):
            stack.start()
        for note in stack.notes:
            console.print(note, markup=False, highlight=False)
        _print_endpoints(stack, cfg)
        feed = None
        if demo:
            from cli.demo import DemoFeed, DemoReceiver

            hooks = [c for c in cfg.channels if c.type == "webhook"]
            if hooks:
                receiver = DemoReceiver(console, hooks[0].secret.get_secret_value())
                receiver.start()
            feed = DemoFeed(cfg, console)
            feed.start()
        restarts: dict[str, float] = {}
        while not stopping:
            for name in stack.crashed():
                if name in INFRA:
                    err.print(f"[red]{name} exited; see {stack.logdir / (name + '.log')}. Stopping.[/]")
                    stopping = True
                elif time.monotonic() - restarts.get(name, 0) > 2:
                    err.print(f"[yellow]{name} exited; restarting (log: {stack.logdir / (name + '.log')})[/]")
                    restarts[name] = time.monotonic()
                    stack.start_service(name, wait=False)
            if feed is not None and feed.done.is_set() and not feed.reported:
                feed.report()
            time.sleep(0.2)
    except (RuntimeError, TimeoutError) as e:
        err.print(f"[red]pantau up:[/] {e}")
        raise typer.Exit(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with console.status("stopping..."):
            stack.stop()
            if receiver is not None:
                receiver.stop()
        console.print("stopped: every process ended, every port released.")


def _print_endpoints(stack, cfg) -> None:
    t = Table(title="Pantau embedded stack", show_lines=False)
    t.add_column("part")
    t.add_column("listens on")
    t.add_column("log")
    t.add_row("Kafka broker (Tansu)", cfg.kafka.bootstrap_servers, str(stack.logdir / "broker.log"))
    if stack.durable:
        t.add_row("broker storage (S3 over a folder)", f"http://127.0.0.1:{stack.store_port}  ({stack.workdir / 'broker'})",
                  str(stack.logdir / "store.log"))
    t.add_row("Redis (Valkey)", cfg.redis.url, str(stack.logdir / "redis.log"))
    t.add_row("ingest gateway", f"http://{cfg.ingest.host}:{cfg.ingest.port}  (/v1/reports, /metrics, /openapi.json)",
              str(stack.logdir / "ingest-gateway.log"))
    t.add_row("ingest validator", f"metrics http://{cfg.ingest.host}:{cfg.ingest.metrics_port}/metrics",
              str(stack.logdir / "ingest-validator.log"))
    if "scoring" in stack.service_names:
        t.add_row("scoring (faust)", f"http://127.0.0.1:{cfg.scoring.web_port}/metrics", str(stack.logdir / "scoring.log"))
    if "notify" in stack.service_names:
        t.add_row("notify API", f"http://{cfg.notify.host}:{cfg.notify.port}/v1/incidents", str(stack.logdir / "notify.log"))
    console.print(t)
    if stack.durable:
        console.print(f"mode: [bold]durable[/]: topics, consumer offsets and Redis are kept in {stack.workdir}; "
                      f"a restart with the same --workdir carries on where this one stopped.")
        if stack.workdir.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
            console.print("[yellow]that folder is under the temporary directory, which may be emptied at boot: "
                          "give --workdir for data you keep[/]")
    else:
        console.print(f"mode: [bold yellow]ephemeral[/]: the broker keeps topics in memory and Redis started "
                      f"empty; nothing survives a stop. Without --ephemeral/--demo, pantau up is durable.")
    console.print("Ctrl-C stops everything.")


@app.command()
def send(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines, one ReportEvent per line"),
    url: str = typer.Option("http://127.0.0.1:8080", envvar="PANTAU_INGEST_URL", help="ingest gateway base URL"),
    key: str = typer.Option(..., envvar="PANTAU_API_KEY", help="the source's API key"),
) -> None:
    """Publish reports from a JSON Lines file and print each result."""
    import httpx
    import orjson

    failed = 0
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}",
                                                       "Content-Type": "application/json"}) as client:
        for n, line in enumerate(file.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = client.post("/v1/reports", content=line)
            except httpx.HTTPError as e:
                err.print(f"line {n}: cannot reach {url}: {e}")
                raise typer.Exit(1)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code in (200, 202):
                console.print(f"line {n}: {body.get('event_id')} {body.get('status')}")
            else:
                failed += 1
                detail = body.get("errors") or body.get("message") or r.text
                if isinstance(detail, list):
                    detail = "; ".join(f"{e['field']}: {e['message']}" for e in detail)
                console.print(f"line {n}: [red]{r.status_code}[/] {detail}")
    if failed:
        raise typer.Exit(1)


@app.command()
def backtest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with header period,count, oldest first"),
    method: str = typer.Option(..., "--method", help="ears-c1 | ears-c2 | ears-c3 | cusum | ewma"),
    baseline: Optional[int] = typer.Option(None, "--baseline", help="baseline length in buckets"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="significance level"),
    min_sigma: Optional[float] = typer.Option(None, "--min-sigma", help="floor for the standard deviation"),
) -> None:
    """Score a count series and write period,count,expected,upper,alarm as CSV to stdout."""
    from services.scoring.backtest import run_backtest

    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            run_backtest(method, f, sys.stdout, baseline=baseline, alpha=alpha, min_sigma=min_sigma)
    except ValueError as e:
        err.print(f"pantau backtest: {file}: {e}")
        raise typer.Exit(2)


@app.command()
def backfill(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines or CSV of ReportEvents"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="config file (default: PANTAU_CONFIG)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and count, send nothing"),
) -> None:
    """Load historical reports (JSON Lines or CSV) into the scoring baselines."""
    import asyncio

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from cli.backfill import SHOWN_ERRORS, FileProblem, Unreachable, deliver, file_format, plan, read
    from services.scoring.baseline import Scoring
    from shared.topics import SCORING_BACKFILL

    cfg = _config_or_exit(config)
    sc = Scoring.from_settings(cfg.scoring)
    with file.open("rb") as f:
        fmt = file_format(file, f.read(64))
        f.seek(0)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TextColumn("{task.fields[rows]:,} rows"), TimeRemainingColumn(), console=err) as bar:
                task = bar.add_task(f"reading {file.name}", total=file.stat().st_size, rows=0)
                loaded = read(f, fmt, sc, lambda done, rows: bar.update(task, completed=done, rows=rows))
        except FileProblem as e:
            err.print(f"pantau backfill: {file}: {e}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2)
    for row in loaded.bad:
        err.print(f"{file.name} {row}", markup=False, highlight=False, soft_wrap=True)
    if loaded.bad_count > len(loaded.bad):
        err.print(f"... and {loaded.bad_count - SHOWN_ERRORS:,} more bad rows")
    p = plan(loaded, sc)
    console.print(f"{file.name}: {loaded.rows:,} rows: {loaded.valid:,} valid ({loaded.agg.duplicates:,} repeating "
                  f"an earlier source and event_id, counted once), {loaded.bad_count:,} bad (not loaded)")
    if p.left_out.too_old or p.left_out.running:
        console.print(f"left out: {p.left_out.too_old:,} reports older than the {sc.history} closed buckets scoring "
                      f"keeps, {p.left_out.running:,} in the running bucket (live reports count there)")
    if dry_run:
        console.print(f"dry run: {len(p.msgs):,} cells (kabupaten/kota × category) to load; nothing sent")
    elif p.msgs:
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          console=err) as bar:
                task = bar.add_task(f"sending to {SCORING_BACKFILL}", total=len(p.msgs))
                asyncio.run(deliver(cfg, p.msgs, lambda n: bar.update(task, completed=n)))
        except Unreachable as e:
            err.print(f"pantau backfill: {e}. Run it again when the broker is back: loading a file twice "
                      f"changes nothing more than loading it once.", markup=False, highlight=False)
            raise typer.Exit(1)
        console.print(f"sent {len(p.msgs):,} cells (kabupaten/kota × category) to {SCORING_BACKFILL}; "
                      f"each scoring worker merges its own into the baselines")
    if loaded.bad_count:
        raise typer.Exit(1)


# --- operator commands against the notify API (cli/incidents.py) ---------------------------------
def _notify_client(url: Optional[str], token: Optional[str], config: Optional[Path]):
    from cli.incidents import EXIT, NotifyClient, base_url

    if not token:
        err.print("[red]pantau:[/] no operator token: give --token or set PANTAU_OPERATOR_TOKEN", soft_wrap=True)
        raise typer.Exit(EXIT["usage"])
    if not url:
        cfg = _config_or_exit(config)
        url = base_url(cfg.notify.host, cfg.notify.port)
    return NotifyClient(url.rstrip("/"), token)


def _refused(command: str, e: Exception) -> None:
    from rich.markup import escape

    err.print(f"[red]pantau {command}:[/] {escape(str(e))}", highlight=False, soft_wrap=True)


_URL = typer.Option(None, "--url", envvar="PANTAU_NOTIFY_URL",
                    help="notify API base URL (default: the config's notify.host and notify.port)")
_TOKEN = typer.Option(None, "--token", envvar="PANTAU_OPERATOR_TOKEN", show_default=False,
                      help="operator token (better: the PANTAU_OPERATOR_TOKEN environment variable)")
_CONFIG = typer.Option(None, "--config", "-c", help="config file (default: $PANTAU_CONFIG)")


@app.command()
def incidents(
    status: str = typer.Option("open", "--status", help="open | acknowledged | resolved | all"),
    region: Optional[str] = typer.Option(None, "--region", help="region code prefix, e.g. 65 or 65.71"),
    category: Optional[str] = typer.Option(None, "--category", help="one category, e.g. election_dispute"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="at most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="print the API's JSON instead of a table"),
    url: Optional[str] = _URL,
    token: Optional[str] = _TOKEN,
    config: Optional[Path] = _CONFIG,
) -> None:
    """List incidents from the notify API: id, region, category, level, status, age."""
    import orjson

    from cli.incidents import EXIT, CliError, table

    if status not in ("open", "acknowledged", "resolved", "all"):
        _refused("incidents", ValueError(f"--status must be open, acknowledged, resolved or all, not {status!r}"))
        raise typer.Exit(EXIT["usage"])
    client = _notify_client(url, token, config)
    try:
        body = client.incidents(None if status == "all" else status, region, category, limit)
    except CliError as e:
        _refused("incidents", e)
        raise typer.Exit(e.code)
    if as_json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    found = body.get("incidents", [])
    what = "" if status == "all" else status + " "
    if not found:
        console.print(f"no {what}incidents")
        return
    console.print(table(found, f"{len(found)} {what}incident(s)"))


@app.command()
def ack(
    incident_id: str = typer.Argument(..., metavar="ID", help="the incident id, as `pantau incidents` shows it"),
    note: Optional[str] = typer.Option(None, "--note", help="a note for the incident's timeline"),
    as_json: bool = typer.Option(False, "--json", help="print the incident as JSON"),
    url: Optional[str] = _URL,
    token: Optional[str] = _TOKEN,
    config: Optional[Path] = _CONFIG,
) -> None:
    """Acknowledge an incident: its escalation stops and everyone paged hears who took it."""
    import orjson

    from cli.incidents import CliError

    client = _notify_client(url, token, config)
    try:
        inc = client.ack(incident_id, note)
    except CliError as e:
        _refused("ack", e)
        raise typer.Exit(e.code)
    if as_json:
        sys.stdout.write(orjson.dumps(inc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console.print(f"{inc.get('id')}: acknowledged by {inc.get('acknowledged_by')} at {inc.get('acknowledged_at')} "
                  f"({inc.get('level')}, {inc.get('region_name')})", markup=False, highlight=False)


if __name__ == "__main__":
    app()
