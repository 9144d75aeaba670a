"""The scoring worker's changelogged tables: each cell lives in the changelog partition of its
region, and a batch's cells are written durably (awaited) before they count."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.table import Table

from services.scoring.agents import meta_partition, partition_of, region_of


class PartitionedTable(Table):
    """A table whose key `b"<region>|<category>"` lives in the changelog partition of its
    region, whichever event (or none) is being processed when it is written; a `~name|<p>`
    key lives in partition p."""

    def partition_for_key(self, key: Any) -> int:
        p = meta_partition(key)
        return partition_of(region_of(key), self.app.conf.topic_partitions) if p is None else p

    async def write(self, cells: dict[bytes, bytes], closing: dict[bytes, bytes]) -> None:
        """Write cells durably, then `closing` (one record per partition, e.g. its progress):
        to the changelog, awaiting the broker's acknowledgement, then to the local store.

        Two broker facts shape this. `table[key] = v` queues the changelog record in Faust's
        producer buffer, whose flush before an offset commit gives up after 0.1 s without a
        send. And Tansu 0.6.0 reports a partition's end offset as the base offset of its last
        record batch + 1, so Faust's recovery stops after the first record of that batch and
        restores older versions of the cells behind it: each write therefore ends, in every
        partition it touched, with a batch of a single record."""
        send, topic = self.app.producer.send, self.changelog_topic_name
        await self._send_in_batches(cells)
        groups = [cells, *self._one_per_partition(closing)]
        for group in groups[1:]:
            futures = [await send(topic, key, value, self.partition_for_key(key), None, None)
                       for key, value in group.items()]
            if futures:
                await asyncio.gather(*futures)
        for group in groups:
            for key, value in group.items():
                self.data[key] = value

    async def _send_in_batches(self, records: dict[bytes, bytes]) -> None:
        """Send records to the changelog as whole record batches, one future per batch: sent
        one by one, each cell of a busy batch cost as much as the rest of its report's work."""
        producer = self.app.producer._ensure_producer()  # aiokafka's own, for send_batch
        topic = self.changelog_topic_name
        batches: dict[int, Any] = {}
        futures = []
        for key, value in records.items():
            p = self.partition_for_key(key)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: a first record always fits
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for p, batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=p))
        if futures:
            await asyncio.gather(*futures)

    def _one_per_partition(self, records: dict[bytes, bytes]) -> list[dict[bytes, bytes]]:
        """Split `records` into rounds holding at most one record per partition, in order, so
        that each round, sent and awaited alone, ends its partitions with a one-record batch
        (a partition may close with two progress records: reports and backfill)."""
        rounds: list[dict[bytes, bytes]] = []
        used: list[set[int]] = []
        for key, value in records.items():
            p = self.partition_for_key(key)
            i = next((i for i, ps in enumerate(used) if p not in ps), len(rounds))
            if i == len(rounds):
                rounds.append({})
                used.append(set())
            rounds[i][key] = value
            used[i].add(p)
        return rounds
