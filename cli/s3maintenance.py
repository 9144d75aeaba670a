"""What the durable broker's store does in the background while it serves: deleting the old
ticks (cli/s3expiry.py) and merging old record batches (cli/s3merge.py), each on its own timer,
in a worker thread, the store's listing index updated on the event loop when a pass is done."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from cli.s3expiry import expired
from cli.s3merge import merge
from cli.s3requests import MERGED

if TYPE_CHECKING:
    from cli.s3store import Store

Hook = Callable[[web.Application], Awaitable[None]]


def background(store: "Store", expire: Sequence[tuple[str, float]], merges: Sequence[tuple[str, float]],
               counts: Counter) -> tuple[Hook, Hook]:
    """(on_startup, on_cleanup) hooks that start and stop the passes."""

    async def expiring(pattern: str, max_age_s: float) -> None:
        while True:
            await asyncio.sleep(min(60.0, max_age_s / 10))
            try:
                gone = await asyncio.to_thread(expired, store.root, pattern, max_age_s)
            except OSError as e:  # a folder removed with its topic: the next sweep sees the rest
                print(f"s3store: expiring {pattern}: {e}", flush=True)
                continue
            store.removed(gone)

    async def merging(pattern: str, age_s: float) -> None:
        while True:
            await asyncio.sleep(min(60.0, age_s / 10))
            try:
                gone = await asyncio.to_thread(merge, store.root, pattern, age_s, store.retire)
            except OSError as e:
                print(f"s3store: merging {pattern}: {e}", flush=True)
                continue
            store.removed(gone)
            counts[MERGED] += len(gone)
            store.forget_retired()

    async def start(application: web.Application) -> None:
        application["passes"] = [asyncio.create_task(expiring(p, age)) for p, age in expire] + \
            [asyncio.create_task(merging(p, age)) for p, age in merges]

    async def stop(application: web.Application) -> None:
        for task in application["passes"]:
            task.cancel()

    return start, stop
