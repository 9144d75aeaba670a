"""Run the scoring worker: `python -m services.scoring [--web-port N]` (config from PANTAU_CONFIG).

Several workers share the partitions as one consumer group. On one machine each needs its own
web port: `--web-port` overrides `scoring.web_port` for this process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys

from shared import heap
from shared.config import Config, load_for
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


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; argparse exits with status 2 and a usage line on anything else."""
    parser = argparse.ArgumentParser(prog="python -m services.scoring",
                                     description="Run the scoring worker (config from PANTAU_CONFIG).")
    parser.add_argument("--web-port", type=_port, default=None,
                        help="this worker's web port, overriding scoring.web_port (one per worker on a machine)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    web_port = parse_args(argv).web_port
    setup_logging()
    config = load_for("scoring")
    if web_port is not None:
        config = config.model_copy(update={"scoring": config.scoring.model_copy(update={"web_port": web_port})})

    from shared import topics
    from shared.kafka import ensure_topics

    # Scoring's own topics too, before Faust starts: workers started together otherwise race
    # to create them, and one could send its first tick before its metadata knew the partitions
    # ("Unrecognized partition", bench/results/2026-12-02-scaling.md).
    ensure_topics(config.kafka.bootstrap_servers, config.kafka.partitions, config.kafka.replication_factor,
                  names=(*topics.ALL, topics.SCORING_TICKS, topics.SCORING_PROVINCE, topics.SCORING_BACKFILL))
    problem = asyncio.run(_check_partitions(config))
    if problem:
        print(f"pantau scoring: invalid configuration: {problem}", file=sys.stderr)
        return 2

    import faust
    import uvloop

    from services.scoring.app import create_app

    # uvloop for Faust's loop and for the loop of its consumer thread: each socket write cost
    # ~13% of the worker's CPU on asyncio's own loop. Set before the app is made, which is when
    # mode picks (and keeps) the thread's loop; asyncio.run above closed its own.
    uvloop.install()
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = create_app(config)
    level = _FAUST_LEVELS.get(os.environ.get("PANTAU_LOG_LEVEL", "WARNING").upper(), "warn")
    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.spinner = None  # a log file is no terminal
    # Faust's events, decoded reports and cells' updates are containers by the hundred
    # thousand: at the default threshold (700) the collector ran ~1,200 times per 50,000
    # reports, and its full passes over the long-lived objects (Faust's, the region registry's)
    # took ~10% of the worker's CPU. What exists now lives as long as the process: freeze it.
    heap.settle()
    gc.set_threshold(50_000, 20, 10)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
