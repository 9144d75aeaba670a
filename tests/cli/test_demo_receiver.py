"""The demo's stand-in for coordinators' phones verifies contract 1.1 signatures as a real
receiver must: a genuine page is shown, a replay under a new delivery id is refused."""

from __future__ import annotations

import io
import time

import httpx
from rich.console import Console

from cli.demo import DemoReceiver
from cli.stack import free_port
from pantau.webhook import sign
from shared.signing import fresh


def test_the_demo_receiver_accepts_a_signed_page_and_refuses_a_replay() -> None:
    secret, port, out = fresh(), free_port(), io.StringIO()
    receiver = DemoReceiver(Console(file=out, width=200), secret, port=port)
    receiver.start()
    body = b'{"status": "triggered", "level": "awas", "region_name": "Kota Tarakan"}'
    header = sign(secret, "d-1", body, int(time.time()))
    try:
        url = f"http://127.0.0.1:{port}/kota-tarakan"
        ok = httpx.post(url, content=body, headers={"X-Pantau-Signature": header, "X-Pantau-Delivery": "d-1"})
        replayed = httpx.post(url, content=body, headers={"X-Pantau-Signature": header, "X-Pantau-Delivery": "d-2"})
        again = httpx.post(url, content=body, headers={"X-Pantau-Signature": header, "X-Pantau-Delivery": "d-1"})
    finally:
        receiver.stop()
    assert (ok.status_code, replayed.status_code, again.status_code) == (200, 401, 200)
    shown = out.getvalue()
    assert "TRIGGERED awas" in shown and "Kota Tarakan" in shown
    assert "REJECTED (bad_signature)" in shown and "repeat of delivery" in shown
