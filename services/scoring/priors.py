"""Cold start: the expected count of a region that has too little history for its method.

In order: the vulnerability map's rate for the region (peta rawan konflik), the map's rate
for its province divided among the province's kabupaten/kota, or the configured default
daily rate. The bound is a Poisson upper quantile at the method's alpha, and the source is
named, so the reasons can say which prior was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from shared.regions import registry
from shared.scoring_config import ScoringSettings, read_vulnerability_map

MAP = "vulnerability_map"          # the region's own row in the map
PROVINCE = "province_rate"         # the province's row, divided among its kabupaten/kota
DEFAULT = "default_rate"           # scoring.fallback_daily_rate


@dataclass(frozen=True, slots=True)
class Prior:
    """Expected reports per bucket and where that number came from."""

    rate: float
    source: str          # MAP, PROVINCE or DEFAULT
    daily_rate: float    # the rate per day the source gave (before scaling to the bucket)


@lru_cache(maxsize=1)
def _kabkota_per_province() -> dict[str, int]:
    counts: dict[str, int] = {}
    for code in registry().codes(2):
        counts[code[:2]] = counts.get(code[:2], 0) + 1
    return counts


def kabkota_in(province: str) -> int:
    """How many kabupaten/kota the province has (at least 1)."""
    return _kabkota_per_province().get(province[:2], 0) or 1


@lru_cache(maxsize=4096)
def poisson_upper(rate: float, alpha: float) -> float:
    """The smallest k with P(X <= k) >= 1 - alpha for X ~ Poisson(rate): a count above it
    has probability below alpha."""
    if rate <= 0:
        return 0.0
    if rate > 500:  # e^-rate underflows; the normal approximation is close there
        return float(math.ceil(rate + NormalDist().inv_cdf(1 - alpha) * math.sqrt(rate)))
    k, p = 0, math.exp(-rate)
    cdf = p
    while cdf < 1 - alpha:
        k += 1
        p *= rate / k
        cdf += p
    return float(k)


class Priors:
    """Answers "how many reports would we expect here" for regions without history."""

    def __init__(self, settings: ScoringSettings):
        self.rates = read_vulnerability_map(settings.vulnerability_map) if settings.vulnerability_map else {}
        self.default = settings.fallback_daily_rate
        self.per_bucket = settings.bucket_seconds / 86400

    def _map_rate(self, region: str, category: str) -> float | None:
        rate = self.rates.get((region, category))
        return self.rates.get((region, "*")) if rate is None else rate

    @lru_cache(maxsize=8192)
    def for_region(self, region: str, category: str) -> Prior:
        """Prior of a kabupaten/kota, or of a province (region code of two digits)."""
        daily, source = self._map_rate(region, category), MAP
        kabkota = kabkota_in(region)
        if daily is None and len(region) > 2:
            province = self._map_rate(region[:2], category)
            if province is not None:
                daily, source = province / kabkota, PROVINCE
        if daily is None:
            daily, source = self.default * (kabkota if len(region) == 2 else 1), DEFAULT
        return Prior(rate=daily * self.per_bucket, source=source, daily_rate=daily)
