"""A per-client-address token bucket for the unauthenticated ack pages, so a stranger cannot
try link after link (or make notify read Redis for each) as fast as the network allows."""

from __future__ import annotations

import math
import time
from typing import Callable


class AddressLimiter:
    """`per_minute` requests per address, in bursts of up to that many; kept in this process
    (each notify replica limits on its own)."""

    MAX_ADDRESSES = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait_s(self, address: str) -> int:
        """0 when this request may go ahead (and it is counted), else whole seconds to wait."""
        now = self.clock()
        if len(self._buckets) >= self.MAX_ADDRESSES:
            # Drop the full buckets (addresses quiet long enough to have refilled): forgetting
            # them changes nothing. Under a spray of addresses, start over rather than grow.
            self._buckets = {a: b for a, b in self._buckets.items()
                             if b[0] + (now - b[1]) * self.rate < self.burst}
            if len(self._buckets) >= self.MAX_ADDRESSES:
                self._buckets.clear()
        tokens, at = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[address] = (tokens - 1.0, now)
        return 0
