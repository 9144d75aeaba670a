"""The notify service in one process: the one place its steps are wired.

    pantau.scores.v1 ─▶ ScoreConsumer ─▶ incidents (Redis) ─▶ Scheduler ─▶ Deliverer ─▶ channels
    pantau.reports.v1 ─▶ Watchdog ─────┘        │                │
                                            outbox ─▶ OutboxPublisher ─▶ pantau.escalations.v1
    HTTP API (ack, resolve, silences, ack links) ─┘
    Telegram getUpdates ─▶ ReplyPoller (a reply "terima" acks) ─┘   (channels with poll_replies)

Every loop runs until SIGTERM/SIGINT; if one of them fails, the process stops with status 1,
so a supervisor restarts it and the timers, deliveries and offsets resume from Redis and Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from aiokafka import AIOKafkaProducer
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import heap, redis_client
from shared.config import Config
from shared.kafka import producer_settings, started
from shared.notify_config import NotifyConfig
from services.notify.api import ApiContext, create_app
from services.notify.console_reports import ReportDesk
from services.notify.channels import build_channels
from services.notify.cap_api import set_cap_sender
from services.notify.consumer import ScoreConsumer, ScoreHandler, escalation_publisher
from services.notify.outbox import OutboxPublisher
from services.notify.delivery import Deliverer
from services.notify.store import IncidentStore
from services.notify.links import LinkMaker
from services.notify.metrics_app import create_metrics_app
from services.notify.policy import reach
from services.notify.ratelimit import AddressLimiter
from services.notify.replies import ReplyPoller, reply_pollers
from services.notify.rotations import OverrideStore
from services.notify.scheduler import Paging, Scheduler
from services.notify.watchdog import Watchdog, builtin_policy
from services.notify import fault_injection_for_tests

log = logging.getLogger("pantau.notify")

K_LINK_SECRET = "pantau:notify:link_secret"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service stops it."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()


async def link_secret(r: aioredis.Redis, nc: NotifyConfig) -> bytes:
    """The configured secret, else one generated once and shared through Redis."""
    if nc.settings.link_secret is not None:
        return nc.settings.link_secret.get_secret_value().encode()
    await r.set(K_LINK_SECRET, secrets.token_hex(32), nx=True)
    log.warning("notify.link_secret is not set: using a generated one kept in Redis (%s)", K_LINK_SECRET)
    raw = await r.get(K_LINK_SECRET)
    return raw if isinstance(raw, bytes) else str(raw).encode()


def paging_of(nc: NotifyConfig) -> Paging:
    watchdog = nc.policy(nc.settings.watchdog_policy) or builtin_policy(nc.settings.watchdog_reminder_minutes)
    return Paging(
        policies=nc.policies,
        rotations=nc.rotations,
        reaches=reach(nc.contacts, nc.channels),
        operator_contacts=nc.settings.operator_contacts,
        shared_channels=[c.id for c in nc.channels if c.type in ("webhook", "cap", "slack")],
        watchdog_policy=watchdog,
        extra_policies={watchdog.id: watchdog},
        inhibit=nc.settings.inhibit,
        group_pairs=frozenset((c.id, ch.id) for c in nc.contacts for ch in nc.channels
                              if ch.type == "telegram" and _group_chat(c.telegram_chat_id)),
    )


def _group_chat(chat_id: int | str | None) -> bool:
    # Telegram: users have positive ids; groups and supergroups negative ones; @name is a channel.
    return isinstance(chat_id, str) or (isinstance(chat_id, int) and chat_id < 0)


@dataclass
class Parts:
    """Everything `serve` starts, for tests and tools that want a piece of it."""

    redis: aioredis.Redis
    producer: AIOKafkaProducer
    store: IncidentStore
    deliverer: Deliverer
    scheduler: Scheduler
    consumer: ScoreConsumer
    publisher: OutboxPublisher
    watchdog: Watchdog
    app: Any
    metrics_app: Any
    channels: Any
    # One per Telegram channel with `poll_replies` (services.notify.replies).
    replies: list[ReplyPoller] = field(default_factory=list)


async def _start_producer(bootstrap: str, timeout_s: float = 30.0) -> AIOKafkaProducer:
    return await started(lambda: AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings()),
                         lambda p: p.stop(), timeout_s, 0.1, 0.5)


async def build(config: Config, nc: NotifyConfig) -> Parts:
    s = nc.settings
    # After a Redis restart every pooled connection is dead but still looks usable, and a
    # client made by from_url retries nothing: the first command on each would fail (an ack
    # answering 500, a delivery recorded late and so sent twice). A few quick retries on a
    # fresh connection ride over that. Only connection errors: a Redis that is down still
    # fails at once (refused), and a hung one after one socket timeout, not four.
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), 3, supported_errors=(RedisConnectionError,))
    r = redis_client.connect(config.redis.url, 5, retry=retry)
    links = LinkMaker(await link_secret(r, nc), s.public_url, s.link_ttl_minutes * 60.0)
    store = IncidentStore(r, ack_url=lambda inc: links.url(inc.id, time.time(), epoch=inc.rises),
                          retention_days=s.incident_retention_days)
    producer = await _start_producer(config.kafka.bootstrap_servers)
    channels = build_channels(nc.channels)
    set_cap_sender(channels, s.public_url)
    deliverer = Deliverer(nc.contacts, r, producer, channels, settings=s.delivery)
    paging = paging_of(nc)
    overrides = OverrideStore(r)
    scheduler = Scheduler(store, deliverer, paging, links, overrides, lease_s=s.timer_lease_s, poll_s=s.timer_poll_s)
    if fault_injection_for_tests.ENV in os.environ:  # only the crash tests set it
        fault_injection_for_tests.install(scheduler)
    handler = ScoreHandler(store, nc.policies, nc.auto_resolve_buckets(config.scoring), s.language,
                           wake=scheduler.wake)
    consumer = ScoreConsumer(config.kafka.bootstrap_servers, s.consumer_group, handler)
    publisher = escalation_publisher(r, producer)
    watched = [(src.id, src.silent_after_minutes * 60.0, src.regions[0])
               for src in config.sources if src.silent_after_minutes]
    watchdog = Watchdog(r, store, config.kafka.bootstrap_servers, s.watchdog_group, watched,
                        paging.watchdog_policy, s.silent_source_check_s, s.language, wake=scheduler.wake)

    async def ready() -> list[str]:
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 3)
            return []
        except Exception:
            return ["broker unreachable"]

    app = create_app(ApiContext(store=store, links=links, operators=config.operators, wake=scheduler.wake,
                                ready=ready, rotations=nc.rotations, overrides=overrides,
                                contact_ids=[c.id for c in nc.contacts], language=s.language,
                                ack_limiter=AddressLimiter(s.ack_rate_limit_per_minute),
                                reports=ReportDesk(producer, [src.id for src in config.sources],
                                                   config.ingest.dedup_ttl_days * 86_400_000)))
    replies = reply_pollers(r, channels, nc.contacts, store, scheduler.wake, s.incident_retention_days * 86400,
                            s.link_ttl_minutes * 60.0)
    return Parts(r, producer, store, deliverer, scheduler, consumer, publisher, watchdog, app,
                 create_metrics_app(store), channels, replies)


async def serve(config: Config, nc: NotifyConfig) -> int:
    parts = await build(config, nc)
    stop = asyncio.Event()
    server = _Server(uvicorn.Config(parts.app, host=nc.settings.host, port=nc.settings.port, log_level="warning",
                                    access_log=False, lifespan="off"))
    metrics_server = _Server(uvicorn.Config(parts.metrics_app, host=nc.settings.host, port=nc.settings.metrics_port,
                                            log_level="warning", access_log=False, lifespan="off"))
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        stop.set()
        server.should_exit = True
        metrics_server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)

    await parts.watchdog.start()
    heap.settle()
    loops = {
        "consumer": parts.consumer.run(stop),
        "scheduler": parts.scheduler.run(stop),
        "delivery": parts.deliverer.run(stop),
        "publisher": parts.publisher.run(stop),
        "watchdog": parts.watchdog.run(stop),
        **{f"replies-{p.channel.id}": p.run(stop) for p in parts.replies},
        "api": server.serve(),
        "metrics": metrics_server.serve(),
    }
    tasks = {asyncio.create_task(coro, name=f"notify-{name}"): name for name, coro in loops.items()}
    log.info("notify listening on %s:%d (metrics on %d)", nc.settings.host, nc.settings.port, nc.settings.metrics_port)
    status = 0
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None or (not stop.is_set() and tasks[t] != "watchdog"):
                    # The type only: a provider's exception may quote its URL (a bot token) or text.
                    log.error("notify %s stopped unexpectedly (%s); shutting down", tasks[t],
                              type(exc).__name__ if exc is not None else "returned")
                    status = 1
                    shutdown()
            if stop.is_set() and pending:
                _, still = await asyncio.wait(pending, timeout=10)
                for t in still:
                    t.cancel()
                pending = set()
    finally:
        await parts.consumer.stop()
        await parts.watchdog.stop()
        with contextlib.suppress(Exception):
            await parts.producer.stop()
        with contextlib.suppress(Exception):
            await parts.channels.aclose()
        await parts.redis.aclose()
    return status
