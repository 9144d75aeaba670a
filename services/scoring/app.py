"""The scoring worker, wired in one place: a Faust app reading `pantau.reports.v1`, keeping
baseline cells in changelogged tables, and writing `pantau.scores.v1`.

    reports.v1 ───────┐                                ┌─► scores.v1 (kabupaten/kota)
    backfill ─────────┤                                │
    verifications.v1 ─┤ (verification.py)              │
    ticks ────────────┴─► score_reports ─► baselines ──┴─► scoring.province ─┐
    ticks ───────────────────────────────────────────────────────────────────┴─► score_provinces
                                                          ─► provinces ─► scores.v1 (province)

Faust constraints this works around (faust-streaming 0.15.3):
- A table write normally takes its changelog partition from the current event. Cells are
  written once per batch and from ticks, so `PartitionedTable` picks the partition from the
  key's region with Kafka's own partitioner: a cell's changelog partition is the partition
  of `pantau.reports.v1` (or `pantau.scoring.province`) that carries its region.
- Windowed tables lose windows on rebalance, so buckets are closed by our own ticks: the
  leader sends one tick per partition of `pantau.scoring.ticks` (co-partitioned with the
  sources, hence owned by the same worker), and the owner rolls that partition's cells.
- Per-event processing tops out near 3,000 table updates/s, so the agents take batches and
  write each touched cell once per batch, after the batch's updates and snapshots have been
  acknowledged by the broker (a cell never claims an update that was not sent).
- Faust's buffered changelog writes are not reliably flushed before an offset commit, and
  Faust can commit offsets past messages it has not delivered (around rebalances). So the
  cells, then each partition's progress, are written with awaited sends
  (`PartitionedTable.write`, services/scoring/tables.py), and the agents apply messages in strict offset order from that
  progress, seeking back when the consumer runs ahead (services/scoring/agents.py). Faust's
  own commits only decide how much is read again after a restart, never what counts.
- Tansu 0.6.0 reports a partition's end offset as the base offset of its last record batch
  + 1; every write ends with single-record batches so that changelog recovery reads it all.
- An exception mid-batch ends the process (`_die`): Faust would otherwise ack the batch and
  carry on without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST

from services.scoring.agents import Outbox, ProvinceScorer, ReportScorer, stalled
from services.scoring.baseline import Scoring
from services.scoring.datadir import worker_datadir
from services.scoring.faust_patches import short_fetch_wait
from services.scoring.holes import first_offset_from
from services.scoring.intake import BulkIntake
from services.scoring.tables import PartitionedTable
from shared import metrics, topics
from shared.config import Config

log = logging.getLogger("pantau.scoring")

APP_ID = "pantau-scoring"
BATCH_SIZE = 2000
# Faust's take_events waits this long after each batch whatever the rate, so it is a floor on
# an alert's latency: 0.1 s instead of 0.5 s cut reports.v1 → scores.v1 p50 from ~770 to ~500 ms
# at 200 reports/s for ~7% more CPU per report (README, Benchmarks).
BATCH_WITHIN_S = 0.1


def received_header(received_at: str | None) -> list[tuple[str, bytes]] | None:
    return None if received_at is None else [(topics.RECEIVED_AT_HEADER, received_at.encode())]


def _die(exc: BaseException) -> None:
    """An I/O failure mid-batch: stop hard, before Faust acks the batch and commits past it.
    The supervisor restarts the worker, which replays from the last commit; the cells'
    offsets make the replay count nothing twice."""
    log.critical("scoring batch failed, exiting for a clean replay: %r", exc)
    logging.shutdown()
    os._exit(70)


def create_app(config: Config) -> faust.App:
    cfg = config.scoring
    partitions = config.kafka.partitions
    short_fetch_wait()
    app = faust.App(
        APP_ID,
        broker=[f"kafka://{b.strip()}" for b in config.kafka.bootstrap_servers.split(",")],
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=config.kafka.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        # Tansu completes a group join after half the session timeout (measured.md).
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_host=cfg.web_host,
        web_bind=cfg.web_host,
        web_port=cfg.web_port,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        datadir=worker_datadir(),
    )
    sc = Scoring.from_settings(cfg)

    def table(name: str) -> PartitionedTable:
        return app.tables.add(PartitionedTable(
            app, name=name, default=None, key_type=bytes, value_type=bytes,
            partitions=partitions, beacon=app.tables.beacon,
            help=f"scoring cells ({name}), compact JSON per region and category"))

    baselines = table("baselines")
    provinces = table("provinces")
    reports = ReportScorer(baselines, sc, partitions)
    rollups = ProvinceScorer(provinces, sc, partitions)

    def internal(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions, internal=True)

    ticks = internal(topics.SCORING_TICKS)
    internal(topics.SCORING_PROVINCE)
    internal(topics.SCORING_BACKFILL)

    async def publish(box: Outbox, scorer: ReportScorer | ProvinceScorer, cells: PartitionedTable) -> None:
        send = app.producer.send
        futures = [await send(topics.SCORES_V1, u.region_code.encode(), u.to_json(), None, None,
                              received_header(box.received.get(key)))
                   for key, u in box.updates.items()]
        futures += [await send(topics.SCORING_PROVINCE, key, value, None, None, None)
                    for key, value in box.province_messages()]
        if futures:
            await asyncio.gather(*futures)
        # Only now the cells (a cell never records an update or snapshot that was not sent),
        # and after them the progress (it never runs ahead of the cells).
        await cells.write(box.writes, box.progress)
        for (topic, p), offset in box.reseek.items():
            await reseek(scorer, topic, p, offset)
        metrics.SCORING_LAST_BATCH.set(time.time())
        for u in box.updates.values():
            metrics.SCORE_UPDATES.labels(u.level).inc()
        if scorer is reports:
            for outcome, n in box.outcomes.items():
                metrics.SCORING_REPORTS.labels(outcome).inc(n)

    async def reseek(scorer: ReportScorer | ProvinceScorer, topic: str, p: int, offset: int,
                     why: str = "consumer ran ahead of the applied offsets") -> None:
        """The consumer went past messages not yet applied: read partition p again from `offset`
        (or from the oldest message the broker still has, if retention took the rest)."""
        tp = TP(topic, p)
        earliest = (await app.consumer.earliest_offsets(tp)).get(tp) or 0
        if earliest > offset:
            log.error("%s[%d]: offsets %d..%d were deleted before scoring read them", topic, p,
                      offset, earliest - 1)
            offset = earliest
        log.warning("%s[%d]: %s; reading again from %d", topic, p, why, offset)
        scorer.skip_to(p, offset, topic)
        await app.consumer.seek(tp, offset)

    async def apply(messages: list[Any], scorer: ReportScorer | ProvinceScorer, cells: PartitionedTable) -> None:
        try:
            await publish(scorer.handle(messages, time.time()), scorer, cells)
        except Exception as exc:  # noqa: BLE001 — see _die
            _die(exc)

    async def score_fetched(records: list[Any]) -> None:
        await apply(records, reports, baselines)

    # Reports and backfill skip Faust's per-event path (services/scoring/intake.py); ticks
    # still come as events, and take the same lock, since they write the same cells.
    intake = BulkIntake(app, (topics.REPORTS_V1, topics.SCORING_BACKFILL, topics.VERIFICATIONS_V1),
                        score_fetched, BATCH_SIZE)

    async def run(stream: Any, scorer: ReportScorer | ProvinceScorer, cells: PartitionedTable,
                  lock: asyncio.Lock | None = None) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            if lock is None:
                await apply([e.message for e in events], scorer, cells)
            else:
                async with lock:
                    await apply([e.message for e in events], scorer, cells)

    # Subscribed here so that Faust assigns reports.v1 and backfill with the ticks and the
    # cells' changelog; their records never reach this stream.
    @app.agent(app.topic(topics.REPORTS_V1, topics.SCORING_TICKS, topics.SCORING_BACKFILL,
                         topics.VERIFICATIONS_V1, key_type=bytes, value_type=bytes))
    async def score_reports(stream: Any) -> None:
        await run(stream, reports, baselines, intake.lock)

    # Held by the province batches only so that the stall check below never seeks under one.
    rollup_lock = asyncio.Lock()

    @app.agent(app.topic(topics.SCORING_PROVINCE, topics.SCORING_TICKS, key_type=bytes, value_type=bytes))
    async def score_provinces(stream: Any) -> None:
        await run(stream, rollups, provinces, rollup_lock)

    @app.timer(cfg.tick_interval_s, on_leader=True)
    async def tick() -> None:
        for p in range(partitions):
            await ticks.send(key=None, value=b"", partition=p)

    @app.timer(5.0)
    async def lag() -> None:
        """pantau_consumer_lag_messages from the offsets actually applied to the cells (not
        Faust's fetch position, which runs ahead by its buffers); and the commit of those
        offsets, so that a restart does not read from the start."""
        async with intake.lock:
            await unstall(reports)
            applied = dict(reports.expected)
        async with rollup_lock:
            await unstall(rollups)
        await intake.commit(applied)
        for tp in app.consumer.assignment():
            applied = reports.expected.get((tp.topic, tp.partition), rollups.expected.get((tp.topic, tp.partition)))
            if applied is not None:
                hw = app.consumer.highwater(tp)
                if hw is not None:
                    metrics.CONSUMER_LAG.labels(APP_ID, tp.topic, str(tp.partition)).set(max(0, hw - applied))

    looked: dict[int, dict[tuple[str, int], int]] = {}  # id(scorer) → next offsets at the last look

    async def unstall(scorer: ReportScorer | ProvinceScorer) -> None:
        """Read again the partitions that stopped short of the broker's end (see `stalled`);
        called under the lock of the scorer's batches, between two looks 5 s apart."""
        if not app.tables.recovery.completed.is_set() or app.rebalancing or not app.consumer.flow_active:
            looked.pop(id(scorer), None)
            return
        now: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for tp in app.consumer.assignment():
            if tp.topic in scorer.progress_names:
                now[(tp.topic, tp.partition)] = scorer.next_offset(tp.partition, tp.topic)
                hw = app.consumer.highwater(tp)
                if hw is not None:
                    ends[(tp.topic, tp.partition)] = hw
        for topic, p in stalled(now, looked.get(id(scorer), {}), ends):
            offset = now[(topic, p)]
            if scorer.seeking.get((topic, p)) == offset:
                # Read again from here once already and still stuck: a hole? (holes.py)
                first = await first_offset_from(config.kafka.bootstrap_servers, topic, p, offset)
                if first is not None and first > offset:
                    await reseek(scorer, topic, p, first,
                                 f"offsets {offset}..{first - 1} hold no record (a hole the broker left)")
                    continue
            await reseek(scorer, topic, p, offset, "stalled short of the broker's end")
        looked[id(scorer)] = {tp: scorer.next_offset(tp[1], tp[0]) for tp in now}

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await intake.on_revoked()

    @app.on_partitions_assigned.connect
    async def reassigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        reports.on_assignment()
        rollups.on_assignment()
        looked.clear()

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web.json({"status": "ready" if ready else "starting"}, status=200 if ready else 503)

    intake.install()
    return app
