"""What the benchmarks send: valid, distinct ReportEvents spread over real regions and
categories, as single bodies, batch bodies or raw-topic messages.

Module-level functions only, so that a load-generator process can build its bodies itself
(before its clock starts) from a picklable `functools.partial` of one of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

import orjson
from shared.categories import CATEGORIES

SOURCE = "bench-feed"
API_KEY = "bench-key-not-a-secret"
# The source's scope: five provinces in three time zones (Aceh, DKI Jakarta, Jawa Barat,
# Kalimantan Utara, Papua).
PROVINCES = ("11", "31", "32", "65", "91")


@lru_cache(maxsize=1)
def regions() -> tuple[str, ...]:
    """Kecamatan codes in the bench source's provinces, from the shipped registry."""
    from shared.regions import registry

    codes = [c for c in registry().codes(3) if c[:2] in PROVINCES]
    if not codes:
        raise RuntimeError("no kecamatan found in the region registry for the bench provinces")
    return tuple(codes)


def report(tag: str, i: int, occurred_at: str) -> dict:
    """Report number `i` of run `tag`: a typical FKDM forum report, ~450 bytes of JSON."""
    rs = regions()
    return {
        "event_id": f"bench-{tag}-{i:08d}",
        "source": SOURCE,
        "region_code": rs[(i * 7919) % len(rs)],
        "category": CATEGORIES[i % len(CATEGORIES)],
        "severity": 1 + i % 5,
        "occurred_at": occurred_at,
        "title": "Pengerahan massa di depan kantor KPU kabupaten menjelang rekapitulasi suara",
        "description": "Sekitar 300 orang berkumpul menuntut penghitungan ulang; aparat berjaga, "
                       "belum ada bentrokan. Laporan dari anggota FKDM kecamatan.",
        "verified": i % 3 == 0,
        "participants": 300 + i % 200,
        "attributes": {"reporter": "fkdm", "channel": "app"},
    }


def _occurred_at() -> str:
    return (datetime.now(timezone(timedelta(hours=8))) - timedelta(minutes=10)).isoformat(timespec="seconds")


def single_bodies(tag: str, n: int) -> list[bytes]:
    """`n` bodies for POST /v1/reports, each a different report."""
    at = _occurred_at()
    return [orjson.dumps(report(tag, i, at)) for i in range(n)]


def batch_bodies(tag: str, batches: int, size: int) -> list[bytes]:
    """`batches` bodies for POST /v1/reports:batch of `size` different reports each."""
    at = _occurred_at()
    return [orjson.dumps({"reports": [report(tag, b * size + i, at) for i in range(size)]}) for b in range(batches)]


def raw_messages(tag: str, n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs for `pantau.reports.raw`: keyed by region_code, as the contract says."""
    at = _occurred_at()
    out = []
    for i in range(n):
        r = report(tag, i, at)
        out.append((r["region_code"].encode(), orjson.dumps(r)))
    return out


# --- the whole pipeline: reports that page ------------------------------------------------------
def all_provinces() -> tuple[str, ...]:
    """Every province code: the scope of the pipeline's source (it reports anywhere)."""
    from shared.regions import registry

    return tuple(registry().codes(1))


def local_today(region: str, now: float) -> str:
    """A time within the region's local today, 30 s ago (never before local midnight)."""
    from shared.regions import registry

    tz = registry().timezone_of(region)
    local = datetime.fromtimestamp(now, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(midnight, local - timedelta(seconds=30)).isoformat(timespec="seconds")


def cells() -> list[tuple[str, str]]:
    """Every (kabupaten/kota, category) scoring cell, kabupaten/kota first: consecutive cells
    are in different regions (and partitions)."""
    from shared.regions import registry

    kabkota = registry().codes(2)
    return [(k, c) for c in CATEGORIES for k in kabkota]


def paging_requests(tag: str, first: int, n: int) -> list[tuple[str, bytes]]:
    """(event_id, body) for cells first..first+n-1: one severity-5 report each, which scoring
    raises to `awas` at once and notify opens an incident for and pages."""
    import time

    all_cells = cells()
    if first + n > len(all_cells):
        raise ValueError(f"only {len(all_cells)} cells; asked for {first}..{first + n - 1}")
    now = time.time()
    out = []
    for i in range(first, first + n):
        region, category = all_cells[i]
        eid = f"bench-{tag}-{i:06d}"
        out.append((eid, orjson.dumps({
            "event_id": eid, "source": SOURCE, "region_code": region, "category": category, "severity": 5,
            "occurred_at": local_today(region, now),
            "title": "Bentrokan antarpendukung calon di depan kantor KPU kabupaten",
            "description": "Dua kelompok pendukung bentrok setelah rekapitulasi; aparat menengahi. "
                           "Laporan dari anggota FKDM kecamatan.",
            "verified": True, "participants": 400, "attributes": {"reporter": "fkdm", "channel": "app"},
        })))
    return out


def steady_requests(tag: str, open_cells: int, first_fresh: int, n: int, page_every: int) -> list[tuple[str, bytes]]:
    """(event_id, body) for a steady day at the pipeline stage: one request in `page_every` is a
    severity-5 report for a fresh cell (first_fresh, first_fresh + 1, ...: it opens an incident
    and pages); the others are severity 1-3 reports on cells 0..open_cells-1, already at `awas`
    with their incidents open from the stage's warm-up, so they change no level and page
    nobody. The severity-5 event ids end in "-page"."""
    import time

    all_cells = cells()
    fresh = (n + page_every - 1) // page_every
    if first_fresh + fresh > len(all_cells) or open_cells > first_fresh:
        raise ValueError(f"only {len(all_cells)} cells; asked for {first_fresh}..{first_fresh + fresh - 1}")
    now = time.time()
    out = []
    for i in range(n):
        if i % page_every == 0:
            (region, category), severity = all_cells[first_fresh + i // page_every], 5
            eid = f"bench-{tag}-{i:06d}-page"
        else:
            (region, category), severity = all_cells[(i * 7919) % open_cells], 1 + i % 3
            eid = f"bench-{tag}-{i:06d}"
        out.append((eid, orjson.dumps({
            "event_id": eid, "source": SOURCE, "region_code": region, "category": category, "severity": severity,
            "occurred_at": local_today(region, now),
            "title": "Pengerahan massa di depan kantor KPU kabupaten menjelang rekapitulasi suara",
            "description": "Sekitar 300 orang berkumpul menuntut penghitungan ulang; aparat berjaga, "
                           "belum ada bentrokan. Laporan dari anggota FKDM kecamatan.",
            "verified": severity == 5, "participants": 300 + i % 200, "attributes": {"reporter": "fkdm", "channel": "app"},
        })))
    return out


def mixed_requests(tag: str, first: int, n: int, page_every: int) -> list[tuple[str, bytes]]:
    """(event_id, body) for a long steady run: kecamatan all over Indonesia, every category,
    mostly severity 1-3; one report in `page_every` is severity 5 (pages). Cells repeat, so
    counts grow and incidents stay open, as on a busy election day."""
    import time

    from shared.regions import registry

    kec = registry().codes(3)
    now = time.time()
    today: dict[str, str] = {}
    out = []
    for i in range(first, first + n):
        region = kec[(i * 7919) % len(kec)]
        prov = region[:2]
        if prov not in today:
            today[prov] = local_today(region, now)
        eid = f"bench-{tag}-{i:08d}"
        out.append((eid, orjson.dumps({
            "event_id": eid, "source": SOURCE, "region_code": region, "category": CATEGORIES[i % len(CATEGORIES)],
            "severity": 5 if i % page_every == 0 else 1 + i % 3, "occurred_at": today[prov],
            "title": "Pengerahan massa di depan kantor KPU kabupaten menjelang rekapitulasi suara",
            "description": "Sekitar 300 orang berkumpul menuntut penghitungan ulang; aparat berjaga, "
                           "belum ada bentrokan. Laporan dari anggota FKDM kecamatan.",
            "verified": i % 3 == 0, "participants": 300 + i % 200,
            "attributes": {"reporter": "fkdm", "channel": "app"},
        })))
    return out
