"""Rebuild `shared/data/boundaries.json.gz`, the simplified region shapes the console map draws,
from a checkout of cahyadsn/wilayah_boundaries (MIT; Kepmendagri codes; SQL rows whose `path`
is a MultiPolygon of [lat, lng] pairs).

    git clone https://github.com/cahyadsn/wilayah_boundaries /tmp/wb
    git -C /tmp/wb checkout 3c5a7960f4d227a38489094d84252bdbb3f978a5
    python deploy/maps/build_map.py /tmp/wb

Every kabupaten/kota (db/kab) and province (db/prov) becomes rings of integer coordinates in
thousandths of a degree, Douglas-Peucker simplified, first point absolute and the rest as
deltas, so the file stays small and drawing a region is one string join. A province the
source has no outline for is drawn from its kabupaten/kota rings.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

SCALE = 1000  # units per degree: ~110 m at the equator
# Tolerances in degrees: a kabupaten/kota map is drawn a few hundred pixels across a province,
# the national map ~50 px per degree; below these no pixel moves.
TOLERANCE = {"kab": 0.0015, "prov": 0.008}
# Islands smaller than this (square degrees) are dropped, unless a region would lose its last ring.
MIN_AREA = {"kab": 0.00002, "prov": 0.0004}

ROW = re.compile(r"^\s*\('(?P<code>[0-9.]+)','(?P<name>(?:[^']|'')*)',[-0-9.eE]+,[-0-9.eE]+,'(?P<path>\[.*\])'\)[,;]?\s*$")
OUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "boundaries.json.gz"


def rows(sql: str):
    """(code, name, multipolygon) per INSERT row of one source file."""
    for line in sql.splitlines():
        m = ROW.match(line)
        if m:
            yield m["code"], m["name"].replace("''", "'"), json.loads(m["path"])


def _perp(p, a, b) -> float:
    (x, y), (x1, y1), (x2, y2) = p, a, b
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return ((x - x1) ** 2 + (y - y1) ** 2) ** 0.5
    return abs(dy * x - dx * y + x2 * y1 - y2 * x1) / (dx * dx + dy * dy) ** 0.5


def simplify(points: list[tuple[float, float]], tol: float) -> list[tuple[float, float]]:
    """Douglas-Peucker, iterative (rings run to tens of thousands of points)."""
    if len(points) < 4:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        best, at = 0.0, -1
        for k in range(i + 1, j):
            d = _perp(points[k], points[i], points[j])
            if d > best:
                best, at = d, k
        if best > tol and at > 0:
            keep[at] = True
            stack += [(i, at), (at, j)]
    return [p for p, k in zip(points, keep) if k]


def area(points: list[tuple[float, float]]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]))) / 2


def rings_of(nested) -> list:
    """Every ring, whatever the nesting (the source mixes Polygon and MultiPolygon depths)."""
    if nested and isinstance(nested[0], (int, float)):
        raise ValueError("a point where a ring was expected")
    if nested and isinstance(nested[0], list) and nested[0] and isinstance(nested[0][0], (int, float)):
        return [nested]
    return [r for part in nested for r in rings_of(part)]


def encode(multipolygon, kind: str) -> list[list[int]]:
    """Outer and inner rings as [x0, y0, dx1, dy1, ...] in 1/SCALE degree (x = lon, y = lat)."""
    rings = []
    for ring in rings_of(multipolygon):
        pts = [(float(lng), float(lat)) for lat, lng in ring]
        rings.append((area(pts), pts))
    rings.sort(key=lambda r: r[0], reverse=True)
    out: list[list[int]] = []
    for i, (a, pts) in enumerate(rings):
        if i > 0 and a < MIN_AREA[kind]:
            continue
        q: list[tuple[int, int]] = []
        for x, y in simplify(pts, TOLERANCE[kind]):
            p = (round(x * SCALE), round(y * SCALE))
            if not q or p != q[-1]:
                q.append(p)
        if len(q) > 1 and q[0] == q[-1]:
            q.pop()  # the path's `z` closes it
        if len(q) < 3 and i > 0:
            continue
        flat = [q[0][0], q[0][1]]
        for (x1, y1), (x2, y2) in zip(q, q[1:]):
            flat += [x2 - x1, y2 - y1]
        out.append(flat)
    return out


def read_source(src: Path) -> dict[str, dict]:
    regions: dict[str, dict] = {}
    for kind in ("prov", "kab"):
        for f in sorted((src / "db" / kind).glob("*.sql")):
            for code, name, mp in rows(f.read_text(encoding="utf-8")):
                regions[code] = {"name": name, "rings": encode(mp, kind)}
    # Provinces without their own outline (e.g. 96 Papua Barat Daya at the pinned commit):
    # the union of their kabupaten/kota rings draws the same area with inner borders.
    for code in sorted({c[:2] for c in regions if len(c) == 5} - set(regions)):
        rings = [r for c, v in sorted(regions.items()) if c.startswith(code + ".") for r in v["rings"]]
        regions[code] = {"name": None, "rings": rings}
    return regions


def commit_of(src: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a checkout of cahyadsn/wilayah_boundaries")
    ap.add_argument("--commit", help="the source commit, when SOURCE is not a git checkout")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    regions = read_source(args.source)
    doc = {
        "source": "https://github.com/cahyadsn/wilayah_boundaries",
        "commit": args.commit or commit_of(args.source),
        "license": "MIT, Copyright (c) 2024 Cahya DSN",
        "scale": SCALE,
        "regions": {c: regions[c] for c in sorted(regions)},
    }
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(gzip.compress(raw, 9, mtime=0))
    print(f"{len(regions)} regions, {len(raw):,} bytes JSON, {args.out.stat().st_size:,} bytes gzipped -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
