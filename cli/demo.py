"""A replayed Pilkada scenario for `pantau up --demo`: a quiet week across Kalimantan Utara,
then a vote-count dispute surging in Nunukan and a clash with casualties in Tarakan.

Reports go in over the public HTTP API with the demo source's key, like any publisher's.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

import httpx
from rich.console import Console

from shared.config import Config

WITA = timezone(timedelta(hours=8))
KABKOTA = ["65.01", "65.02", "65.03", "65.04", "65.71"]
DEMO_SOURCE = "demo-fkdm-kaltara"
DEMO_KEY = "demo-key-kaltara"


def scenario(now: datetime, seed: int = 27112024) -> list[dict]:
    """The reports of the scenario, in the order they are sent."""
    rnd = random.Random(seed)
    out: list[dict] = []

    def add(region: str, category: str, severity: int, title: str, when: datetime, **extra) -> None:
        out.append({
            "event_id": f"demo-{int(now.timestamp())}-{len(out)}",
            "source": DEMO_SOURCE,
            "region_code": region,
            "category": category,
            "severity": severity,
            "occurred_at": when.isoformat(timespec="seconds"),
            "title": title,
            **extra,
        })

    # Background: a few routine reports a day in each kabupaten/kota over the past week.
    for day in range(7, 0, -1):
        for kab in KABKOTA:
            for _ in range(rnd.randint(0, 2)):
                add(kab, rnd.choice(["hoax_disinformation", "mass_mobilization", "other"]), 1,
                    "Laporan rutin FKDM", now - timedelta(days=day, hours=rnd.randint(0, 10)))
    # Today: a dispute over the vote count in Nunukan grows through the afternoon.
    for i in range(9):
        add("65.03.02", "election_dispute", 3 if i < 6 else 4,
            "Massa pendukung paslon menuntut PSU di TPS", now - timedelta(minutes=90 - i * 10),
            participants=150 + 40 * i)
    # And a clash between supporters in Tarakan with casualties.
    add("65.71.02", "communal_clash", 5, "Bentrok antarpendukung di depan kantor KPU Tarakan",
        now - timedelta(minutes=5), casualties=2, verified=True)
    return out


class DemoFeed(threading.Thread):
    """Sends the scenario in a background thread and prints what the pipeline answered."""

    def __init__(self, config: Config, console: Console, pace_s: float = 0.05):
        super().__init__(daemon=True, name="demo-feed")
        self.base = f"http://{config.ingest.host}:{config.ingest.port}"
        self.console = console
        self.pace_s = pace_s
        self.done = threading.Event()
        self.reported = False
        self.counts: dict[str, int] = {}

    def run(self) -> None:
        reports = scenario(datetime.now(WITA))
        with httpx.Client(base_url=self.base, timeout=30,
                          headers={"Authorization": f"Bearer {DEMO_KEY}", "Content-Type": "application/json"}) as c:
            for r in reports:
                try:
                    resp = c.post("/v1/reports", json=r)
                except httpx.HTTPError as e:
                    self.console.print(f"[red]demo: gateway unreachable: {e}[/]")
                    break
                status = resp.json().get("status", str(resp.status_code))
                self.counts[status] = self.counts.get(status, 0) + 1
                if r["severity"] >= 3:
                    self.console.print(f"demo → {r['region_code']:<9} {r['category']:<18} severity {r['severity']}: {status}")
                time.sleep(self.pace_s)
        self.done.set()

    def report(self) -> None:
        self.reported = True
        summary = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        self.console.print(f"demo: scenario sent ({summary}). Reports are on pantau.reports.v1.")


RECEIVER_PORT = 18099
_LEVEL_STYLE = {"waspada": "yellow", "siaga": "dark_orange", "awas": "bold red", "normal": "green"}


class DemoReceiver(threading.Thread):
    """Stands in for the coordinators' phones: a webhook receiver on 127.0.0.1:18099 that
    checks each message's signature and prints it."""

    def __init__(self, console: Console, secret: str, port: int = RECEIVER_PORT):
        super().__init__(daemon=True, name="demo-receiver")
        from pantau.webhook import Rejected, SeenDeliveries, verify

        receiver = self
        seen = SeenDeliveries()

        class Handler(BaseHTTPRequestHandler):
            """Verifies each signed webhook page and prints it as a phone would show it."""

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                delivery = self.headers.get("x-pantau-delivery", "")
                try:
                    verify(secret, body, self.headers.get("x-pantau-signature"), delivery, seen)
                    why = ""
                except Rejected as e:
                    why = e.reason
                # A repeat of a delivery already shown was received: answer 200 so it stops.
                self.send_response(401 if why and why != "replayed" else 200)
                self.end_headers()
                receiver.show(self.path.strip("/"), body, why, delivery)

            def log_message(self, *args) -> None:
                pass

        self.console = console
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def show(self, who: str, body: bytes, rejected: str, delivery: str) -> None:
        if rejected == "replayed":
            self.console.print(f"[dim]webhook → {who}: repeat of delivery {delivery[:8]}, dropped[/]")
            return
        try:
            m = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        style = _LEVEL_STYLE.get(m.get("level"), "")
        reason = (m.get("reasons") or [""])[0]
        self.console.print(
            f"[bold]📟 {who}[/] [{style}]{m.get('status', '').upper()} {m.get('level')}[/] "
            f"{m.get('region_name')} · {m.get('category')} (step {m.get('step')})"
            f"{f' [red]REJECTED ({rejected})[/]' if rejected else ''}\n    {reason}\n    ack: {m.get('ack_url')}")
