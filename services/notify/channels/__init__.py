"""Delivery channels: one module per channel type, all of one shape (`base.Channel`), and the
one place that builds them from the config.

    channels = build_channels(config.channels)
    result = await channels["ops-telegram"].send(contact, notice, delivery_id)
    await channels.aclose()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Iterable

from services.notify.channels.base import OK, REASONS, Channel, Reason, Result
from services.notify.channels.cap import CapChannel
from services.notify.channels.email import EmailChannel
from services.notify.channels.http import HttpPool
from services.notify.channels.slack import SlackChannel
from services.notify.channels.sms import SmsChannel
from services.notify.channels.telegram import TelegramChannel
from services.notify.channels.webhook import WebhookChannel
from shared.channels_config import channel_configs

REGISTRY: dict[str, type[Channel]] = {
    "webhook": WebhookChannel,
    "cap": CapChannel,
    "email": EmailChannel,
    "telegram": TelegramChannel,
    "slack": SlackChannel,
    "sms": SmsChannel,
}

__all__ = ["OK", "REASONS", "REGISTRY", "Channel", "ChannelSet", "HttpPool", "Reason", "Result", "build_channels"]


class ChannelSet(Mapping[str, Channel]):
    """The configured channels by id, sharing one HTTP connection pool."""

    def __init__(self, channels: dict[str, Channel], http: HttpPool, owns_http: bool):
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


def build_channels(configs: Iterable[Any], http: HttpPool | None = None) -> ChannelSet:
    """Channels from the `channels` config section (typed models, or dicts checked here).

    `http` is the client every HTTP channel uses; by default an `HttpPool` of 64 connections
    is made and closed by `aclose`."""
    owns = http is None
    pool = HttpPool(64) if http is None else http
    built: dict[str, Channel] = {}
    for cfg in channel_configs(configs):
        if cfg.id in built:
            raise ValueError(f"channel id {cfg.id!r} is used twice")
        built[cfg.id] = REGISTRY[cfg.type](cfg, pool)  # type: ignore[arg-type]
    return ChannelSet(built, pool, owns)
