"""Lua calls that many tasks make at the same moment, sent to Redis as one pipeline.

Notify's scheduler fires a claimed batch of incidents side by side, and each firing submits
its deliveries and then saves the incident: one script call each, so one round trip per
incident and per page; the gateway claims and marks each request's report the same way. On a
busy 2-core machine the client's per-call work (packing, a timeout task, a retry wrapper, a
socket write and a wake-up per reply) was most of notify's CPU, and the firings queued
behind it (docs/history.md, issue 18). Here every call made while a pipeline is out, or in
the same turn of the event loop, waits for the next pipeline, so a batch of firings (or of
concurrent requests) costs a round trip per stage, not per incident.

Nothing about a single call changes: each script still runs atomically on its own and each
caller gets its own reply (or its own error) back; the calls of one task stay in order,
since a task waits for one reply before it makes its next call. Only calls from different
tasks share a pipeline, and those had no order between them before either.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

_Call = tuple[Any, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """`await call(script, keys, args)` as `await script(keys=keys, args=args)` would, with the
    calls of concurrent tasks coalesced into one pipeline (at most one out at a time)."""

    def __init__(self, r: aioredis.Redis, max_batch: int = 1000) -> None:
        self.r = r
        self.max_batch = max_batch
        self._queue: list[_Call] = []
        self._drainer: asyncio.Task | None = None
        self.pipelines = 0  # sent so far, and calls made: how much was shared
        self.calls = 0

    async def call(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.calls += 1
        self._queue.append((script, keys, args, fut))
        d = self._drainer
        if d is None or d.done() or d.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain(), name="pantau-script-batch")
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # the other tasks woken with this one add their calls first
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            batch = [c for c in batch if not c[3].done()]  # callers cancelled meanwhile
            if not batch:
                continue
            try:
                replies = await self._send(batch)
            except asyncio.CancelledError:
                for c in batch + self._queue:
                    c[3].cancel()
                self._queue = []
                raise
            except Exception as e:  # the connection failed: every caller of this pipeline hears it
                for c in batch:
                    if not c[3].done():
                        c[3].set_exception(e)
                continue
            for c, reply in zip(batch, replies):
                if c[3].done():
                    continue
                if isinstance(reply, Exception):
                    c[3].set_exception(reply)
                else:
                    c[3].set_result(reply)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        replies = await self._pipeline(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Redis restarted (or its script cache was flushed): load the scripts and run
            # again only the calls that did not run.
            for sha, script in {batch[i][0].sha: batch[i][0] for i in missing}.items():
                await self.r.script_load(script.script)
            again = await self._pipeline([batch[i] for i in missing])
            for i, r in zip(missing, again):
                replies[i] = r
        return replies

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        self.pipelines += 1
        async with self.r.pipeline(transaction=False) as p:
            for script, keys, args, _ in batch:
                p.evalsha(script.sha, len(keys), *keys, *args)
            return await p.execute(raise_on_error=False)
