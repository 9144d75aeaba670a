"""The region shapes the console map draws (and the reporters' bot places a shared GPS location
in): every province and kabupaten/kota as simplified rings, from `shared/data/boundaries.json.gz` (built by deploy/maps/build_map.py from
cahyadsn/wilayah_boundaries, MIT; see NOTICE).

Rings are integers in 1/`scale` degree, x = longitude and y = latitude, the first point
absolute and the rest as deltas.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Shape:
    """One region's outline and its bounding box (in the file's integer units)."""

    code: str
    rings: tuple[tuple[int, ...], ...]
    bbox: tuple[int, int, int, int]  # min x, min y, max x, max y


def _bbox(rings: list[list[int]]) -> tuple[int, int, int, int]:
    xs: list[int] = []
    ys: list[int] = []
    for ring in rings:
        x, y = ring[0], ring[1]
        xs.append(x)
        ys.append(y)
        for i in range(2, len(ring), 2):
            x += ring[i]
            y += ring[i + 1]
            xs.append(x)
            ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class Boundaries:
    """The vendored, simplified region shapes, with their source and licence."""

    scale: int
    source: str
    license: str
    shapes: dict[str, Shape]

    def get(self, code: str) -> Shape | None:
        return self.shapes.get(code)

    def locate(self, lat: float, lon: float) -> str | None:
        """The kabupaten/kota whose outline holds the point, or None: at sea, abroad, or just
        off a coast the simplified outline cut (a reporter's bot then asks for a name)."""
        x, y = round(lon * self.scale), round(lat * self.scale)
        for code, shape in self.shapes.items():
            x0, y0, x1, y1 = shape.bbox
            if code.count(".") == 1 and x0 <= x <= x1 and y0 <= y <= y1 and inside(shape.rings, x, y):
                return code
        return None


def inside(rings: tuple[tuple[int, ...], ...], x: int, y: int) -> bool:
    """Whether (x, y) lies inside the rings, by the even-odd rule (so a hole is outside): the
    number of ring edges a ray from the point towards +x crosses."""
    odd = False
    for ring in rings:
        px, py = ring[0], ring[1]
        pts = [(px, py)]
        for i in range(2, len(ring), 2):
            px, py = px + ring[i], py + ring[i + 1]
            pts.append((px, py))
        for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
            if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                odd = not odd
    return odd


@lru_cache(maxsize=1)
def boundaries() -> Boundaries:
    """Loaded once per process (~0.2 MB gzipped, ~50 ms)."""
    raw = resources.files("shared").joinpath("data").joinpath("boundaries.json.gz").read_bytes()
    doc = json.loads(gzip.decompress(raw))
    shapes = {code: Shape(code, tuple(tuple(r) for r in v["rings"]), _bbox(v["rings"]))
              for code, v in doc["regions"].items()}
    return Boundaries(doc["scale"], doc["source"], doc["license"], shapes)


__all__ = ["Boundaries", "Shape", "boundaries", "inside"]
