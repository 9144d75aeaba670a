"""The one way services open Redis: a pool that makes a burst wait for a connection.

redis-py's default pool (100 connections since redis-py 6) raises `MaxConnectionsError` at
once when every connection is busy. Under a burst that turned into answers that lie: 250
reports POSTed at once got 503 "state store unreachable" with Redis healthy, and notify's
scheduler, firing 128 incidents side by side, left pages to wait out a 30 s timer lease. A
blocking pool queues the extra commands instead, each waiting at most `timeout_s` for a
connection (then a ConnectionError, as for a Redis that is really gone).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

POOL_SIZE = 100  # connections per process, redis-py's own default cap


def connect(url: str, timeout_s: float, *, pool_size: int = POOL_SIZE, **kw: Any) -> aioredis.Redis:
    """A client for `url` whose socket and pool waits are bounded by `timeout_s`; `kw` goes to
    each connection (e.g. `retry`)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout_s,
        socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **kw)
    return aioredis.Redis.from_pool(pool)
