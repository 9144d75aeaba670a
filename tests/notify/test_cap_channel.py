"""The `cap` channel against a real HTTP receiver on loopback: it POSTs the incident's CAP 1.2
alert (valid against the OASIS XSD) as application/cap+xml, signed exactly like a webhook."""

from __future__ import annotations

import pytest
from lxml import etree

from pantau.webhook import Rejected, SeenDeliveries, verify
from services.notify.channels import build_channels
from shared.channels_config import ContactConfig
from shared.config import ConfigError, parse
from tests.notify.conftest import FAST, WEBHOOK_SECRET, contact, notice, run
from tests.notify.peers import HttpReceiver
from tests.notify.test_cap import XSD, text


def cap_cfg(url: str, **kw) -> dict:
    return {"id": "cap-bpbd", "type": "cap", "url": url, "secret": WEBHOOK_SECRET, **FAST, **kw}


async def send(cfg: dict, delivery_id: str, **notice_kw):
    channels = build_channels([cfg])
    try:
        return await channels[cfg["id"]].send(ContactConfig(**contact()), notice(**notice_kw), delivery_id)
    finally:
        await channels.aclose()


def test_cap_channel_posts_a_valid_signed_cap_alert(receiver: HttpReceiver) -> None:
    assert run(send(cap_cfg(receiver.url + "/cap", sender="pantau@pantau.kaltaraprov.go.id"), "d-cap-1")).ok
    assert run(send(cap_cfg(receiver.url + "/cap"), "d-cap-2", status="resolved")).ok
    first, cancel = receiver.requests
    assert (first.method, first.path) == ("POST", "/cap")
    assert first.headers["content-type"] == "application/cap+xml"
    assert first.headers["x-pantau-delivery"] == "d-cap-1"
    seen = SeenDeliveries()
    verify(WEBHOOK_SECRET, first.body, first.headers["x-pantau-signature"], "d-cap-1", seen)
    with pytest.raises(Rejected):
        verify(WEBHOOK_SECRET, first.body.replace(b"Alert", b"Cancel"), first.headers["x-pantau-signature"],
               "d-cap-1b", seen)

    alert = etree.fromstring(first.body)
    assert XSD.validate(alert), XSD.error_log
    assert text(alert, "/c:alert/c:msgType") == ["Alert"]
    assert text(alert, "/c:alert/c:sender") == ["pantau@pantau.kaltaraprov.go.id"]
    assert set(text(alert, "//c:area/c:geocode/c:value")) == {"65.71"}

    done = etree.fromstring(cancel.body)
    assert XSD.validate(done), XSD.error_log
    assert text(done, "/c:alert/c:msgType") == ["Cancel"]
    # The Cancel references the Alert the first request carried.
    (ref,) = text(done, "/c:alert/c:references")
    assert ref.split(",")[1] == text(alert, "/c:alert/c:identifier")[0]


def test_cap_channel_config_needs_a_real_secret() -> None:
    with pytest.raises(ConfigError) as e:
        parse('channels:\n  - {id: cap-bpbd, type: cap, url: "https://cap.example.go.id/in", secret: short}\n')
    assert "channels[0].secret" in str(e.value)
