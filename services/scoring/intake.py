"""Reports reach the scorer in whole fetches, not one Faust event at a time.

Faust's per-event path (a Message, a task per delivery, an Event, a queue, a stream, an ack)
cost ~250 µs of the ~360 µs scoring spent per report, more than the scoring itself. So the
records of `pantau.reports.v1` and of the backfill topic are taken out of each fetch the
Faust consumer makes, before that path, and handed to the scorer as one list. Everything
else stays Faust's: the group membership and partition assignment, table recovery and the
changelogs, the pausing of partitions during recovery, and the other topics (ticks, province
roll-ups), which still arrive as events.

What makes this as safe as Faust's own streams:
- Records of a partition Faust would not deliver (paused during recovery, flow stopped for a
  rebalance, generation changed) are dropped, as Faust drops them; the scorer's offset check
  asks for a seek back when the next records skip past them, so they come again.
- One lock serialises these batches with the event batches (ticks) that write the same cells.
- A revocation waits for the batch in flight (the lock) and bumps the generation, so a batch
  fetched before the rebalance is never applied after it.
- The batch runs shielded: Faust cancels its fetcher on assignment, and a batch cut between
  two awaited writes would leave its cells ahead of the partition's progress.
- Offsets are committed from the progress actually written (`commit`), since Faust commits
  only the messages its streams acknowledged.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable

from faust.types import TP

Handler = Callable[[list[Any]], Awaitable[None]]


class BulkIntake:
    """Takes the report records out of each fetch of the Faust consumer and scores them as one list."""

    def __init__(self, app: Any, topics: Iterable[str], handle: Handler, batch_size: int):
        self.app = app
        self.topics = frozenset(topics)
        self.handle = handle
        self.batch_size = batch_size
        self.lock = asyncio.Lock()
        self.generation = 0

    def install(self) -> None:
        """Put the split in front of the Faust consumer's fetch (it calls this method of its own
        instance for every fetch, from the app's event loop)."""
        consumer = self.app.consumer
        fetch = consumer._wait_next_records

        async def wait_next_records(timeout: float) -> tuple[Any, Any]:
            records, active = await fetch(timeout)
            if not records:
                return records, active
            mine = [tp for tp in records if tp.topic in self.topics]
            if not mine:
                return records, active
            ours = [r for tp in mine if self._deliverable(consumer, tp, active) for r in records[tp]]
            if ours:
                await asyncio.shield(self._run(ours, self.generation))
            return {tp: rs for tp, rs in records.items() if tp.topic not in self.topics}, active

        consumer._wait_next_records = wait_next_records

    @staticmethod
    def _deliverable(consumer: Any, tp: TP, active: set[TP] | None) -> bool:
        # The same test Faust's getmany applies before it turns a record into an event.
        return consumer.flow_active and (active is None or tp in active or tp in consumer._buffered_partitions)

    async def _run(self, records: list[Any], generation: int) -> None:
        async with self.lock:
            for i in range(0, len(records), self.batch_size):
                if generation != self.generation or not self.app.consumer.flow_active:
                    return  # a rebalance began: these come again from the committed offsets
                await self.handle(records[i:i + self.batch_size])

    async def on_revoked(self) -> None:
        """Called from Faust's revocation: no batch runs past it, none fetched before it runs after."""
        async with self.lock:
            self.generation += 1

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit `offsets` ((topic, partition) → next offset to read) for the partitions this
        worker still holds; they decide only where a restart reads from, never what counts."""
        assigned = self.app.consumer.assignment()
        mine = {TP(t, p): o for (t, p), o in offsets.items() if t in self.topics and TP(t, p) in assigned}
        if mine:
            await self.app.consumer._commit(mine)
