"""The demo's field reporter: a stand-in for the Telegram Bot API on 127.0.0.1:18098 (the demo
config's `reporting.telegram.base_url`), with a scripted FKDM member in Tarakan who answers the
bot's `/lapor` questions; then the demo operator verifies the report through the ingest API
and the incident's timeline shows it ("diverifikasi oleh ...").
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from rich.console import Console

from shared.config import Config

BOT_PORT = 18098
START_AFTER_S = 12.0   # after the scenario's first escalations, so the exchange reads on its own


class DemoReporter(threading.Thread):
    """Serves getUpdates/sendMessage/answerCallbackQuery and plays the reporter's side."""

    def __init__(self, config: Config, console: Console, port: int = BOT_PORT):
        super().__init__(daemon=True, name="demo-reporter")
        self.config, self.console = config, console
        reporters = [r for r in config.reporters if r.telegram_user_id is not None]
        self.user = reporters[0].telegram_user_id if reporters else None
        self.cond = threading.Condition()
        self.updates: list[dict[str, Any]] = []
        self.update_id = 0
        demo = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                method = self.path.rsplit("/", 1)[-1]
                payload = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                result = demo.answer(method, payload)
                body = json.dumps({"ok": True, "result": result}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Silent: the demo prints the conversation itself; an access log would drown it."""

        self.server: ThreadingHTTPServer | None = None
        if self.user is None or config.reporting.telegram is None:
            return  # a config without a reporter and a bot: nothing to play
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            self.server.daemon_threads = True
        except OSError as e:
            console.print(f"[yellow]demo: no field reporter (127.0.0.1:{port}: {e.strerror})[/]")

    def run(self) -> None:
        if self.server is None:
            return
        threading.Timer(START_AFTER_S, lambda: self.say_as_reporter("/lapor")).start()
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- the Bot API side -------------------------------------------------------------------
    def answer(self, method: str, payload: dict[str, Any]) -> Any:
        if method == "getUpdates":
            offset = payload.get("offset") or 0
            deadline = time.monotonic() + min(float(payload.get("timeout") or 0), 25)
            with self.cond:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                while not self.updates and time.monotonic() < deadline:
                    self.cond.wait(deadline - time.monotonic())
                return list(self.updates)
        if method == "sendMessage":
            text = str(payload.get("text", ""))
            self.console.print(f"[cyan]🤖 bot → pelapor:[/] {text.splitlines()[0]}", markup=True, highlight=False)
            buttons = [b["callback_data"] for row in (payload.get("reply_markup") or {}).get("inline_keyboard", [])
                       for b in row]
            threading.Timer(0.8, self.react, (text, buttons)).start()
            return {"message_id": int(time.time() * 1000) % 10**9, "date": int(time.time()), "text": text,
                    "chat": {"id": payload.get("chat_id"), "type": "private"}}
        return True

    # --- the reporter's side ----------------------------------------------------------------
    def react(self, text: str, buttons: list[str]) -> None:
        if "Pilih kategori" in text:
            self.press("cat:mass_mobilization")
        elif "Di mana kejadiannya" in text:
            self.say_as_reporter("Selumit")
        elif text.startswith("Tempat:"):
            self.say_as_reporter("Sekitar 300 orang berkumpul di depan kantor KPU Tarakan menuntut hitung ulang")
        elif "Seberapa parah" in text:
            self.press("sev:4")
        elif "Berapa korban" in text:
            self.say_as_reporter("0")
        elif "anonim?" in text:
            self.press("anon:0")
        elif text.startswith("Ringkasan laporan"):
            self.press(next(b for b in buttons if b.startswith("send:")))
        elif text.startswith("Laporan diterima. Nomor laporan: LAP-"):
            number = text.split("LAP-", 1)[1].split(".", 1)[0]
            threading.Timer(5.0, self.verify, (number,)).start()

    def _push(self, body: dict[str, Any]) -> None:
        with self.cond:
            self.update_id += 1
            self.updates.append({"update_id": self.update_id, **body})
            self.cond.notify_all()

    def say_as_reporter(self, text: str) -> None:
        self.console.print(f"[green]📱 pelapor → bot:[/] {text}", highlight=False)
        self._push({"message": {"message_id": self.update_id + 1, "date": int(time.time()), "text": text,
                                "from": {"id": self.user, "is_bot": False, "first_name": "Pelapor"},
                                "chat": {"id": self.user, "type": "private"}}})

    def press(self, data: str) -> None:
        self.console.print(f"[green]📱 pelapor → bot:[/] (tombol {data})", highlight=False)
        self._push({"callback_query": {"id": f"demo-{self.update_id}", "data": data, "chat_instance": "demo",
                                       "from": {"id": self.user, "is_bot": False, "first_name": "Pelapor"},
                                       "message": {"message_id": 1, "date": int(time.time()),
                                                   "chat": {"id": self.user, "type": "private"}}}})

    # --- the operator's side ----------------------------------------------------------------
    def verify(self, number: str) -> None:
        op = self.config.operators[0] if self.config.operators else None
        if op is None or op.token is None:
            return
        headers = {"Authorization": f"Bearer {op.token.get_secret_value()}"}
        reporter = next(r for r in self.config.reporters if r.telegram_user_id == self.user)
        ingest = f"http://{self.config.ingest.host}:{self.config.ingest.port}"
        try:
            r = httpx.post(f"{ingest}/v1/reports/{reporter.source}/lapor-{number}/verify",
                           json={"note": "dicek lewat telepon ke camat (demo)"}, headers=headers, timeout=10)
            self.console.print(f"[bold]✔ operator {op.name} memverifikasi LAP-{number}[/]: {r.status_code} "
                               f"{r.json().get('status')}", highlight=False)
            self.show_timeline(headers)
        except httpx.HTTPError as e:
            self.console.print(f"[red]demo: verify failed: {e}[/]")

    def show_timeline(self, headers: dict[str, str]) -> None:
        notify = f"http://{self.config.notify.host}:{self.config.notify.port}"
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=notify, headers=headers, timeout=10) as c:
            while time.monotonic() < deadline:
                found = c.get("/v1/incidents", params={"region": "65.71", "category": "mass_mobilization"}).json()
                for inc in found.get("incidents", []):
                    timeline = c.get(f"/v1/incidents/{inc['id']}").json().get("timeline", [])
                    for entry in timeline:
                        if entry.get("kind") == "verification":
                            self.console.print(f"[bold]🗒 timeline {inc['id']}:[/] {entry.get('message')}",
                                               highlight=False)
                            return
                time.sleep(1)
