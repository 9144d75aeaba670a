"""The one change Pantau makes to Faust's internals, kept here so the wiring does not hide it."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from shared.kafka import FETCH_MAX_WAIT_MS


def short_fetch_wait() -> None:
    """Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting to
    change it; on Tansu that wait is paid on most hops (shared/kafka.py), so a report sat up
    to 1.5 s before scoring saw it. Set before the consumer starts, when its fetcher reads it."""
    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "pantau_patched", False):
        return

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    create_worker_consumer.pantau_patched = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
