"""Delivery channels: one module per channel type, all of one shape (`base.Channel`), and the
one place that builds them from the config.

    channels = build_channels(config.channels)
    result = await channels["ops-telegram"].send(contact, notice, delivery_id)
    await channels.aclose()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Iterable

import httpx

from services.notify.channels.base import OK, REASONS, Channel, Reason, Result
from services.notify.channels.email import EmailChannel
from services.notify.channels.slack import SlackChannel
from services.notify.channels.sms import SmsChannel
from services.notify.channels.telegram import TelegramChannel
from services.notify.channels.webhook import WebhookChannel
from shared.channels_config import channel_configs

REGISTRY: dict[str, type[Channel]] = {
    "webhook": WebhookChannel,
    "email": EmailChannel,
    "telegram": TelegramChannel,
    "slack": SlackChannel,
    "sms": SmsChannel,
}

__all__ = ["OK", "REASONS", "REGISTRY", "Channel", "ChannelSet", "HttpPool", "Reason", "Result", "build_channels"]


class HttpPool:
    """The HTTP client the channels share: several small httpx clients behind the calls the
    channels make (`post`, `request`), each call going to the client with the fewest requests
    in flight.

    Why not one client with every connection: httpcore scans its whole pool, pairwise, on each
    request, so with 64 connections busy on a slow receiver that scan cost ~14 ms of CPU per
    request; sixteen clients of four connections cost ~1.5 ms, eight of eight ~2 ms
    (bench.receiver answering after 100 ms, 64 in flight, on the 2-core bench machine)."""

    def __init__(self, max_connections: int = 64, per_client: int = 4):
        n = max(1, -(-max_connections // per_client))
        size = -(-max_connections // n)
        # No redirects followed: a redirect is a misconfigured endpoint, not a delivery. Every
        # connection is kept alive between requests (httpx keeps 20 by default, so bursts
        # reconnected).
        self.clients = [httpx.AsyncClient(follow_redirects=False,
                                          limits=httpx.Limits(max_connections=size, max_keepalive_connections=size))
                        for _ in range(n)]
        self._busy = [0] * n

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        i = min(range(len(self.clients)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            return await self.clients[i].request(method, url, **kw)
        finally:
            self._busy[i] -= 1

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    @property
    def is_closed(self) -> bool:
        return all(c.is_closed for c in self.clients)

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()


class ChannelSet(Mapping[str, Channel]):
    """The configured channels by id, sharing one HTTP connection pool."""

    def __init__(self, channels: dict[str, Channel], http: "httpx.AsyncClient | HttpPool", owns_http: bool):
        self._channels = channels
        self.http = http
        self._owns_http = owns_http

    def __getitem__(self, channel_id: str) -> Channel:
        return self._channels[channel_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    async def aclose(self) -> None:
        for c in self._channels.values():
            await c.aclose()
        if self._owns_http:
            await self.http.aclose()


def build_channels(configs: Iterable[Any], http: httpx.AsyncClient | None = None) -> ChannelSet:
    """Channels from the `channels` config section (typed models, or dicts checked here).

    `http` is the client every HTTP channel uses; by default an `HttpPool` of 64 connections
    is made and closed by `aclose`."""
    owns = http is None
    pool: httpx.AsyncClient | HttpPool = HttpPool(64) if http is None else http
    built: dict[str, Channel] = {}
    for cfg in channel_configs(configs):
        if cfg.id in built:
            raise ValueError(f"channel id {cfg.id!r} is used twice")
        built[cfg.id] = REGISTRY[cfg.type](cfg, pool)  # type: ignore[arg-type]
    return ChannelSet(built, pool, owns)
