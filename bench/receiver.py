"""A webhook receiver for the benchmarks: an HTTP/1.1 server on a bare asyncio Protocol
(uvloop) that answers every request `200 ok`, after `--delay-ms` if asked (a slow
receiver), and notes when each request arrived and what its JSON body said.

    python -m bench.receiver --port P [--delay-ms 200] --progress FILE --out FILE

It rewrites FILE `--progress` with its count of requests every 0.1 s; on SIGTERM it writes
one JSON line per request to `--out` (`t` = arrival, wall clock; `path`; the body's
`status`, `region_code`, `category`, `report_ids`, `opened_at`, `updated_at`) and exits.
The same code answers the services and the baselines, so its own cost is the same for both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import orjson

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
FIELDS = ("status", "region_code", "category", "report_ids", "opened_at", "updated_at")
PROGRESS_S = 0.1


class Received:
    """What arrived: (wall time, path, the body's FIELDS) per request."""

    def __init__(self) -> None:
        self.items: list[tuple[float, str, dict]] = []

    def add(self, t: float, path: str, body: bytes) -> None:
        try:
            d = orjson.loads(body)
            kept = {k: d.get(k) for k in FIELDS} if isinstance(d, dict) else {}
        except orjson.JSONDecodeError:
            kept = {}
        self.items.append((t, path, kept))

    def dump(self, out: Path) -> None:
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for t, path, d in self.items:
                f.write(orjson.dumps({"t": t, "path": path, **d}) + b"\n")
        os.replace(tmp, out)


class _Conn(asyncio.Protocol):
    """One keep-alive connection: read a request (head + Content-Length body), answer it."""

    def __init__(self, received: Received, delay_s: float) -> None:
        self.received = received
        self.delay_s = delay_s
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            t = time.time()
            path = head.split(b" ", 2)[1].decode(errors="replace")
            self.received.add(t, path, bytes(self.buf[end + 4:end + 4 + length]))
            del self.buf[:end + 4 + length]
            if self.delay_s > 0:
                self.loop.call_later(self.delay_s, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ANSWER)


async def serve(port: int, delay_s: float, progress: Path, out: Path) -> None:
    loop = asyncio.get_running_loop()
    received = Received()
    server = await loop.create_server(lambda: _Conn(received, delay_s), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = progress.with_suffix(".tmp")
    written = -1
    while not stop.is_set():
        n = len(received.items)
        if n != written:
            tmp.write_text(str(n))
            os.replace(tmp, progress)
            written = n
        try:
            await asyncio.wait_for(stop.wait(), PROGRESS_S)
        except asyncio.TimeoutError:
            pass
    server.close()
    received.dump(out)


def read(out: Path) -> list[dict]:
    """The requests a stopped receiver wrote to `out`."""
    if not out.exists():
        return []
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line]


def count(progress: Path) -> int:
    try:
        return int(progress.read_text() or 0)
    except (OSError, ValueError):
        return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.receiver")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--progress", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.delay_ms / 1000, args.progress, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
