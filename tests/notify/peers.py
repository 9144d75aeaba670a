"""Real protocol peers on loopback for the notify tests: an HTTP receiver (webhooks, Slack,
SMS gateways), a Telegram Bot API server speaking `sendMessage` and `getUpdates`, and an SMTP
server.

Each runs in its own thread, records everything it receives, can be told how to answer the
next requests (fail, rate-limit, refuse, hold), and lets a test wait for a condition on
what it has seen without sleeping (`wait_for`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cli.stack import free_port

HOLD_LIMIT_S = 30.0


class _Recorder:
    """A list of things seen, with a condition variable to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 20.0) -> list[Any]:
        """Block until `predicate(items)` holds; raise with what was seen if it does not in time."""
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.items), timeout):
                raise TimeoutError(f"condition not met within {timeout}s; seen: {self.items!r}")
            return list(self.items)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None = None  # what the peer answered (None: no answer written yet / never)

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str, body: bytes | None = None) -> bool:
        """Whether the X-Pantau-Signature holds over this delivery id and `body` (default: the
        body received) under `secret` (the MAC only: time and replay are pantau.webhook.verify's)."""
        from pantau.webhook import Rejected, check_signature

        try:
            check_signature(secret, self.body if body is None else body, self.headers.get("x-pantau-signature"),
                            self.headers.get("x-pantau-delivery"))
            return True
        except Rejected:
            return False


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # wait for this before answering


class HttpPeer:
    """A threaded HTTP/1.1 server on 127.0.0.1. `respond(request)` decides each answer unless
    a planned answer is queued (`fail_next`, `answer_next`, `hold_next`)."""

    def __init__(self) -> None:
        self.log = _Recorder()
        self._plan: deque[Answer] = deque()
        self._plan_lock = threading.Lock()
        self._holds: list[threading.Event] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                u = urlsplit(self.path)
                req = Request(self.command, u.path, parse_qs(u.query), {k.lower(): v for k, v in self.headers.items()},
                              body)
                peer.log.add(req)
                answer = peer._next_answer() or peer.respond(req)
                if answer.hold is not None:
                    answer.hold.wait(HOLD_LIMIT_S)
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    # A 204 or 304 carries no content (RFC 9110), whatever the test planned.
                    body = b"" if answer.status in (204, 304) else answer.body
                    if body or answer.status not in (204, 304):
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client went away while we held the answer
                    self.close_connection = True
                    return
                req.status = answer.status
                peer.log.changed()

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        with self.log.cond:
            return list(self.log.items)

    def wait_for(self, predicate: Callable[[list[Request]], bool], timeout: float = 20.0) -> list[Request]:
        return self.log.wait_for(predicate, timeout)

    def respond(self, req: Request) -> Answer:
        return Answer()

    def _next_answer(self) -> Answer | None:
        with self._plan_lock:
            return self._plan.popleft() if self._plan else None

    def answer_next(self, n: int, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        with self._plan_lock:
            self._plan.extend(Answer(status, body, dict(headers or {})) for _ in range(n))

    def fail_next(self, n: int, status: int = 500) -> None:
        self.answer_next(n, status, b'{"error": "unavailable"}', {"Content-Type": "application/json"})

    def hold_next(self, n: int = 1, status: int = 200) -> threading.Event:
        """The next `n` requests are recorded but not answered until the returned event is set."""
        ev = threading.Event()
        self._holds.append(ev)
        with self._plan_lock:
            self._plan.extend(Answer(status, b"ok", {}, ev) for _ in range(n))
        return ev

    def close(self) -> None:
        for ev in self._holds:
            ev.set()
        self.server.shutdown()
        self.server.server_close()


class HttpReceiver(HttpPeer):
    """A webhook / Slack / SMS gateway endpoint: answers 200 unless told otherwise."""

    def pages(self, who: str, category: str, status: str | None = None, step: int | None = None) -> list[Request]:
        """Answered (2xx) webhook pages to `/who` about incidents of `category` (with this
        status and step, if given), in arrival order."""
        out = []
        for r in self.requests:
            if r.path != f"/{who}" or r.status is None or not 200 <= r.status < 300:
                continue
            b = r.json()
            if b["category"] == category and status in (None, b["status"]) and step in (None, b["step"]):
                out.append(r)
        return out

    def wait_page(self, who: str, category: str, status: str, step: int | None = None,
                  timeout: float = 60) -> Request:
        """The first such page, waiting for it up to `timeout` seconds."""
        self.wait_for(lambda _: bool(self.pages(who, category, status, step)), timeout)
        return self.pages(who, category, status, step)[0]

    def delivered(self, delivery_id: str) -> list[Request]:
        """Requests for `delivery_id` that were answered 2xx."""
        return [r for r in self.requests if r.headers.get("x-pantau-delivery") == delivery_id
                and r.status is not None and 200 <= r.status < 300]


class TelegramBotApi(HttpPeer):
    """The Bot API's `sendMessage` and `getUpdates` as Telegram speaks them: `POST
    /bot<token>/<method>` with JSON, answering `{"ok": true, "result": ...}` or `{"ok": false,
    "error_code", "description"[, "parameters": {"retry_after"}]}`.

    `getUpdates` keeps a queue of updates the test pushes (`reply`, `push_message`): a call
    with `offset` confirms (forgets) every update below it, returns the rest, and when there
    is none waits up to its `timeout` for one (long polling). As Telegram does, a second
    getUpdates while one is waiting ends the first with 409 Conflict (counted in `conflicts`)."""

    def __init__(self, token: str, chats: set[int | str]):
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.chats = set(chats)
        self.sent = _Recorder()  # (chat_id, text) of every message accepted
        self.messages: dict[int, dict[str, Any]] = {}  # message_id → the Message sent
        self._floods: deque[int] = deque()
        self._message_id = 0
        self._updates: list[dict[str, Any]] = []  # pushed, not yet confirmed
        self.pushed: dict[int, dict[str, Any]] = {}  # update_id → every update ever pushed
        self._update_id = 1000
        self._updates_cond = threading.Condition()
        self._poll_generation = 0
        self._closing = False
        self.conflicts = 0
        super().__init__()

    def push_message(self, chat_id: int, text: str, reply_to: int | None = None, from_id: int | None = None,
                     chat_type: str = "private", is_bot: bool = False) -> int:
        """A message from a user arrives for the bot; returns its update_id."""
        with self._updates_cond:
            self._update_id += 1
            self._message_id += 1
            sender = from_id if from_id is not None else chat_id
            msg: dict[str, Any] = {"message_id": self._message_id, "date": int(time.time()), "text": text,
                                   "from": {"id": sender, "is_bot": is_bot, "first_name": "Koordinator"},
                                   "chat": {"id": chat_id, "type": chat_type}}
            if reply_to is not None:
                msg["reply_to_message"] = self.messages.get(reply_to) or {
                    "message_id": reply_to, "date": int(time.time()), "chat": {"id": chat_id, "type": chat_type}}
            update = {"update_id": self._update_id, "message": msg}
            self._updates.append(update)
            self.pushed[self._update_id] = update
            self._updates_cond.notify_all()
            return self._update_id

    def reply(self, message_id: int, text: str, chat_id: int | None = None, **kw: Any) -> int:
        """A reply to the bot's message `message_id`, from its chat unless `chat_id` is given."""
        chat = chat_id if chat_id is not None else self.messages[message_id]["chat"]["id"]
        return self.push_message(chat, text, reply_to=message_id, **kw)

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        """The messages the bot sent to `chat_id`, oldest first."""
        with self._updates_cond:
            return [m for m in self.messages.values() if m["chat"]["id"] == chat_id]

    def polls(self) -> list[dict[str, Any]]:
        """The JSON body of every getUpdates call, in order."""
        return [r.json() for r in self.requests if r.path.endswith("/getUpdates")]

    def _get_updates(self, payload: dict[str, Any]) -> Answer:
        offset, limit = payload.get("offset"), int(payload.get("limit") or 100)
        deadline = time.monotonic() + min(float(payload.get("timeout") or 0), HOLD_LIMIT_S)
        with self._updates_cond:
            self._poll_generation += 1
            me = self._poll_generation
            self._updates_cond.notify_all()
            if isinstance(offset, int):
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._closing and self._poll_generation == me:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._updates_cond.wait(left)
            if self._poll_generation != me:
                self.conflicts += 1
                return self._error(409, "Conflict: terminated by other getUpdates request; make sure that only "
                                        "one bot instance is running")
            result = self._updates[:limit]
        return Answer(200, json.dumps({"ok": True, "result": result}).encode(), {"Content-Type": "application/json"})

    def close(self) -> None:
        with self._updates_cond:
            self._closing = True
            self._updates_cond.notify_all()
        super().close()

    def flood_next(self, n: int, retry_after: int) -> None:
        """The next `n` sendMessage calls hit flood control (429 with retry_after)."""
        self._floods.extend([retry_after] * n)

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> Answer:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return Answer(code, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def respond(self, req: Request) -> Answer:
        prefix, _, method = req.path.rpartition("/")
        if not prefix.startswith("/bot") or prefix[4:] != self.token:
            return self._error(401, "Unauthorized")
        if method not in ("sendMessage", "getUpdates"):
            return self._error(404, "Not Found")
        if req.method != "POST" or not req.headers.get("content-type", "").startswith("application/json"):
            return self._error(400, "Bad Request: message text is empty")
        try:
            payload = req.json()
        except ValueError:
            return self._error(400, "Bad Request: can't parse JSON")
        if method == "getUpdates":
            return self._get_updates(payload)
        if self._floods:
            after = self._floods.popleft()
            return self._error(429, f"Too Many Requests: retry after {after}", retry_after=after)
        chat_id, text = payload.get("chat_id"), payload.get("text")
        if not text:
            return self._error(400, "Bad Request: message text is empty")
        if chat_id not in self.chats:
            return self._error(400, "Bad Request: chat not found")
        if len(text) > 4096:
            return self._error(400, "Bad Request: message is too long")
        with self._updates_cond:
            self._message_id += 1
            result = {"message_id": self._message_id, "date": int(time.time()), "text": text,
                      "from": {"id": self.bot_id, "is_bot": True, "first_name": "Pantau"},
                      "chat": {"id": chat_id, "type": "private"}}
            self.messages[self._message_id] = result
        self.sent.add((chat_id, text))
        return Answer(200, json.dumps({"ok": True, "result": result}).encode(), {"Content-Type": "application/json"})


# --------------------------------------------------------------------------- SMTP


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


class SmtpServer:
    """An aiosmtpd server on loopback. `refuse_next(n)` answers the next `n` DATA commands
    with a temporary failure (451 by default); with `credentials`, AUTH is offered (without
    TLS, for the test only) and required."""

    def __init__(self, credentials: tuple[str, str] | None = None):
        self.mails = _Recorder()
        self.refusals = _Recorder()
        self._refuse: deque[str] = deque()
        self.credentials = credentials
        peer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if peer._refuse:
                    reply = peer._refuse.popleft()
                    peer.refusals.add(reply)
                    return reply
                peer.mails.add(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or
                                    envelope.content))
                return "250 2.0.0 Message accepted for delivery"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and credentials is not None and (
                auth_data.login.decode(), auth_data.password.decode()) == credentials
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def refuse_next(self, n: int, reply: str = "451 4.3.0 Temporary local problem, try again later") -> None:
        self._refuse.extend([reply] * n)

    def wait_for(self, predicate: Callable[[list[Mail]], bool], timeout: float = 20.0) -> list[Mail]:
        return self.mails.wait_for(predicate, timeout)

    @property
    def received(self) -> list[Mail]:
        with self.mails.cond:
            return list(self.mails.items)

    def close(self) -> None:
        self.controller.stop()


def kaltara_people_yaml(receiver: str, op_token: str, hook_secret: str, max_attempts: int = 5,
                        backoff_max_s: float = 0.2) -> str:
    """The operators, contacts and webhook channel the notify stack tests share: one operator,
    the Tarakan (kab), Kaltara (prov) and operator (ops) contacts, each paged at its own path
    of `receiver` through one signed webhook channel."""
    return f"""
operators:
  - id: op-kesbangpol
    name: Piket Kesbangpol Kaltara
    token: "{op_token}"
contacts:
  - id: kab-tarakan
    name: Koordinator Kota Tarakan
    webhook: "{receiver}/kab"
  - id: prov-kaltara
    name: Koordinator Provinsi Kaltara
    webhook: "{receiver}/prov"
  - id: piket-ops
    name: Piket Operator
    webhook: "{receiver}/ops"
channels:
  - id: hook
    type: webhook
    url: "{receiver}/default"
    secret: "{hook_secret}"
    timeout_s: 2
    max_attempts: {max_attempts}
    backoff_initial_s: 0.05
    backoff_max_s: {backoff_max_s}
"""


# Who is on call for Kota Tarakan (kab-tarakan) and for Kalimantan Utara (prov-kaltara), for
# the policies' `oncall:kabkota` and `oncall:province` steps.
KALTARA_ROTATIONS_YAML = """rotations:
  - region: "65.71"
    members: [kab-tarakan]
    start: 2024-11-04
  - region: "65"
    members: [prov-kaltara]
    start: 2024-11-04
"""
