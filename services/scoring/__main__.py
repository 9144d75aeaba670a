"""Run the scoring worker: `python -m services.scoring` (config from PANTAU_CONFIG)."""

from __future__ import annotations

import asyncio
import os
import sys

from shared.config import Config, ConfigError, load
from shared.logging import setup_logging

_FAUST_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "crit"}


async def _check_partitions(config: Config) -> str | None:
    """pantau.reports.v1 must have kafka.partitions partitions: the ticks, the province topic and
    the changelogs are created with that many, and co-partitioning needs them equal."""
    from aiokafka.admin import AIOKafkaAdminClient

    from shared import topics

    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers, client_id="pantau-scoring-check")
    await admin.start()
    try:
        described = await admin.describe_topics([topics.REPORTS_V1])
    finally:
        await admin.close()
    found = len(described[0].get("partitions", [])) if described else 0
    if found != config.kafka.partitions:
        return (f"kafka.partitions is {config.kafka.partitions} but {topics.REPORTS_V1} has {found} "
                f"partitions; scoring needs them equal")
    return None


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m services.scoring", file=sys.stderr)
        return 2
    setup_logging()
    try:
        config = load()
    except ConfigError as e:
        print(f"pantau scoring: {e}", file=sys.stderr)
        return 2

    from shared.kafka import ensure_topics

    ensure_topics(config.kafka.bootstrap_servers, config.kafka.partitions, config.kafka.replication_factor)
    problem = asyncio.run(_check_partitions(config))
    if problem:
        print(f"pantau scoring: invalid configuration: {problem}", file=sys.stderr)
        return 2

    import faust

    from services.scoring.app import create_app

    app = create_app(config)
    level = _FAUST_LEVELS.get(os.environ.get("PANTAU_LOG_LEVEL", "WARNING").upper(), "warn")
    # A fresh event loop for Faust (asyncio.run above closed its own).
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.spinner = None  # a log file is no terminal
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
