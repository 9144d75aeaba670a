"""What the broker asks of its store, counted: requests by method and kind of object, the time
spent answering them, and the keys listings returned (`GET /_requests` on the store, JSON).

The durable broker's speed is decided by what Tansu asks per fetch, and that is cheaper to
count than to guess: a listing of a partition's records whose cost grows with the partition is
what made a consumer at the end of a large partition fall behind (README, One machine). `_` is
not allowed in an S3 bucket name, so the path never shadows a bucket.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

PATH = "/_requests"
LISTED = "keys listed"  # the key under which listings add the keys they returned
MERGED = "batches merged away"  # by the store's merging while it runs (cli/s3merge.py)


def kind(method: str, path: str, query: dict[str, str]) -> str:
    """`LIST records`, `GET batch`, `PUT watermark`...: the method and what the object is."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not key:
        prefix = query.get("prefix", "")
        what = "records" if "/records" in prefix else "offsets" if "/offsets/" in prefix else "other"
        # Tansu 0.6 never asks from an offset (start-after): counted apart, so a Tansu that does shows.
        after = " start-after" if "start-after" in query else ""
        after += " max-keys" if "max-keys" in query else ""
        return f"{'LIST' if method == 'GET' else method} {what}{after}" if bucket else f"{method} root"
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".batch"):
        what = "batch"
    elif name in ("watermark.json", "meta.json"):
        what = name.removesuffix(".json")
    elif "/groups/" in f"/{key}":
        what = "group"
    else:
        what = "other"
    return f"{method} {what}"


class Requests:
    """Counts and seconds per kind, since the store started."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def as_json(self) -> dict[str, dict[str, float]]:
        return {k: {"count": self.count[k], "seconds": round(self.seconds[k], 6)} for k in sorted(self.count)}

    def middleware(self) -> Callable:
        @web.middleware
        async def counting(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
            if request.path == PATH:
                return web.json_response(self.as_json())
            what = kind(request.method, request.path, dict(request.query))
            t0 = time.perf_counter()
            try:
                return await handler(request)
            finally:
                self.count[what] += 1
                self.seconds[what] += time.perf_counter() - t0

        return counting
