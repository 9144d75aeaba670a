"""The plot of `pantau evaluate` as a self-contained SVG: false alarms a year against surge
detection, one curve per method through its parameter sets (no plotting library needed)."""

from __future__ import annotations

import math
from html import escape

from services.scoring.evaluate import Result

_W, _H, _L, _R, _T, _B = 760, 460, 70, 200, 30, 60
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_X_MIN, _X_MAX = 0.01, 1000.0


def _x(fa: float) -> float:
    fa = min(max(fa, _X_MIN), _X_MAX)
    span = math.log10(_X_MAX) - math.log10(_X_MIN)
    return _L + (math.log10(fa) - math.log10(_X_MIN)) / span * (_W - _L - _R)


def _y(share: float) -> float:
    return _T + (1.0 - share) * (_H - _T - _B)


def svg(results: list[Result], default_label: str) -> str:
    """x: mean false alarms per region×category-year on stationary Poisson counts (rates 0.05–10
    a day, log scale); y: share of 3-day surges of +max(2, 2×rate) a day alarmed within 3 days."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>']
    for decade in range(-2, 4):
        x = _x(10.0 ** decade)
        out.append(f'<line x1="{x:.1f}" y1="{_T}" x2="{x:.1f}" y2="{_H - _B}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{_H - _B + 16}" text-anchor="middle">{10.0 ** decade:g}</text>')
    for tenth in range(0, 11, 2):
        y = _y(tenth / 10)
        out.append(f'<line x1="{_L}" y1="{y:.1f}" x2="{_W - _R}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{_L - 8}" y="{y + 4:.1f}" text-anchor="end">{tenth * 10}%</text>')
    budget = _x(1.0)
    out.append(f'<line x1="{budget:.1f}" y1="{_T}" x2="{budget:.1f}" y2="{_H - _B}" stroke="#999" '
               f'stroke-dasharray="4 3"/>')
    out.append(f'<text x="{(_L + _W - _R) / 2}" y="{_H - 20}" text-anchor="middle">false alarms per '
               f'region×category-year (Poisson, mean of 0.05–10/day; dashed: 1 a year)</text>')
    out.append(f'<text transform="translate(18 {(_T + _H - _B) / 2}) rotate(-90)" text-anchor="middle">'
               f'3-day surges alarmed within 3 days</text>')
    methods: dict[str, list[Result]] = {}
    for r in results:
        methods.setdefault(r.setting.method, []).append(r)
    for i, (method, rs) in enumerate(methods.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        points = sorted((r.fa_mean(None), _mean(r.item3().values()), r) for r in rs)
        path = " ".join(f"{_x(fa):.1f},{_y(d):.1f}" for fa, d, _ in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for fa, d, r in points:
            star = r.setting.label == default_label
            radius = 6 if star else 3.5
            out.append(f'<circle cx="{_x(fa):.1f}" cy="{_y(d):.1f}" r="{radius}" fill="{colour}">'
                       f'<title>{escape(r.setting.label)}: {fa:.2f} false alarms/yr, {d:.0%} detected</title>'
                       f'</circle>')
        ly = _T + 10 + i * 20
        out.append(f'<line x1="{_W - _R + 15}" y1="{ly}" x2="{_W - _R + 35}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"/><text x="{_W - _R + 40}" y="{ly + 4}">{escape(method)}</text>')
    out.append(f'<text x="{_W - _R + 15}" y="{_T + 10 + len(methods) * 20 + 10}">large dot: live default</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else 0.0
