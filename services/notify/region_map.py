"""The region map as SVG (contract: `GET /console/map.svg`): one `<path>` per child region,
coloured by the highest open incident level in it, with names, a legend and the time drawn.

Pure functions over plain data: `region_levels` decides each child's level from the open
incidents, `draw_svg` draws; the route (services/notify/console_map.py) does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Iterable, Sequence

from shared.boundaries import Shape
from shared.levels import LEVEL_RANK, LEVELS
from shared.words import words

# The Indonesian alert ladder's customary colours: calm grey-green, then yellow, orange, red.
COLOURS = {"normal": "#dfe8e1", "waspada": "#f5d142", "siaga": "#f08a24", "awas": "#d42a20"}
INK = {"normal": "#1b2a22", "waspada": "#1b2a22", "siaga": "#1b2a22", "awas": "#ffffff"}
WIDTH = 800
_MAP_W, _MAP_H, _PAD = 760, 560, 20

WORDS = words("map")


@dataclass(frozen=True)
class OpenIncident:
    """What the map needs of an unresolved incident."""

    region_code: str
    category: str
    level: str


def region_levels(children: Sequence[str], incidents: Iterable[OpenIncident],
                  category: str | None = None) -> dict[str, str]:
    """Each child's level: the highest among the open incidents in it or under it (all
    categories, or only `category`); `normal` where there are none."""
    levels = {c: "normal" for c in children}
    for inc in incidents:
        if category is not None and inc.category != category:
            continue
        for child in (inc.region_code[:2], inc.region_code[:5]):
            if child in levels and (inc.region_code == child or inc.region_code.startswith(child + ".")):
                if LEVEL_RANK.get(inc.level, 0) > LEVEL_RANK[levels[child]]:
                    levels[child] = inc.level
    return levels


def ring_path(ring: Sequence[int]) -> str:
    """One ring as an SVG subpath: an absolute move, then relative lines (the file's deltas)."""
    if len(ring) <= 2:
        return f"M{ring[0]} {ring[1]}z"
    return f"M{ring[0]} {ring[1]}l" + " ".join(str(v) for v in ring[2:]) + "z"


def _bbox(shapes: Sequence[Shape]) -> tuple[int, int, int, int]:
    return (min(s.bbox[0] for s in shapes), min(s.bbox[1] for s in shapes),
            max(s.bbox[2] for s in shapes), max(s.bbox[3] for s in shapes))


def draw_svg(title: str, children: Sequence[tuple[str, str, Shape]], levels: dict[str, str],
             category_label: str, drawn_at: str, language: str = "id") -> str:
    """The map: `children` are (code, full name, shape) in drawing order; `levels` maps code to
    level. Coordinates stay in the shapes' integer units under one transform (north up), so a
    region's path is its stored deltas joined."""
    w = WORDS["en" if language == "en" else "id"]
    x0, y0, x1, y1 = _bbox([s for _, _, s in children])
    k = min(_MAP_W / max(x1 - x0, 1), _MAP_H / max(y1 - y0, 1))
    map_h = round((y1 - y0) * k)
    legend_y = _PAD + 40 + map_h + 16
    height = legend_y + 56
    tx, ty = _PAD + (_MAP_W - (x1 - x0) * k) / 2 - x0 * k, _PAD + 40 + y1 * k
    e = escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" role="img" aria-label="{e(title)}" font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{height}" fill="#f7f9fb"/>',
           f'<text x="{_PAD}" y="{_PAD + 14}" font-size="18" font-weight="bold">{e(w["title"])}: {e(title)}</text>',
           f'<text x="{_PAD}" y="{_PAD + 32}" font-size="13" fill="#444">{e(category_label)}</text>',
           f'<g transform="matrix({k:.6g} 0 0 {-k:.6g} {tx:.2f} {ty:.2f})" stroke="#33413a" '
           f'stroke-linejoin="round">']
    for code, name, shape in children:
        lv = levels.get(code, "normal")
        d = "".join(ring_path(r) for r in shape.rings)
        out.append(f'<path data-region="{e(code)}" data-level="{lv}" fill="{COLOURS[lv]}" fill-rule="nonzero" '
                   f'vector-effect="non-scaling-stroke" stroke-width="0.8" d="{d}"><title>{e(name)}: '
                   f'{lv.upper()}</title></path>')
    out.append("</g>")
    # Names at the centre of each region's box; small on the national map, where there are 38.
    size = 9 if len(children) > 20 else 12
    for code, name, shape in children:
        cx = (shape.bbox[0] + shape.bbox[2]) / 2 * k + tx
        cy = -(shape.bbox[1] + shape.bbox[3]) / 2 * k + ty
        label = name if len(children) <= 20 else name.replace("Kabupaten ", "").replace("Kota ", "")
        out.append(f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="{size}" text-anchor="middle" fill="#111" '
                   f'stroke="#ffffff" stroke-width="2.5" paint-order="stroke">{e(label)}</text>')
    counts = {lv: sum(1 for c, _, _ in children if levels.get(c, "normal") == lv) for lv in LEVELS}
    out.append(f'<text x="{_PAD}" y="{legend_y}" font-size="12" font-weight="bold">{e(w["legend"])}</text>')
    for i, lv in enumerate(LEVELS):
        x = _PAD + 70 + i * 172
        out.append(f'<rect x="{x}" y="{legend_y - 12}" width="16" height="16" fill="{COLOURS[lv]}" stroke="#33413a"/>'
                   f'<text x="{x + 22}" y="{legend_y + 1}" font-size="12">{lv.upper()} ({counts[lv]} '
                   f'{e(w["count"])})</text>')
    out.append(f'<text x="{_PAD}" y="{legend_y + 30}" font-size="11" fill="#555">{e(w["drawn"])} {e(drawn_at)} · '
               f'{e(w["source"])}: cahyadsn/wilayah_boundaries (MIT)</text>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["COLOURS", "OpenIncident", "draw_svg", "region_levels", "ring_path"]
