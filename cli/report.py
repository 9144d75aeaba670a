"""`pantau report`: the day's situation report (laporan situasi) from the notify API.

For one local day of the region (its province's clock: WIB, WITA or WIT; WIB for the whole
country): the highest level each kabupaten/kota reached per category, the incidents opened,
acknowledged and resolved with the time to acknowledge, the strongest reasons, and the map.
`collect` does the HTTP; `summarize`, `render_html` and `render_md` are pure.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
import sys
from typing import Any, Callable, Sequence
from urllib.parse import quote

import httpx

from cli.incidents import EXIT, CliError, NotifyClient
from shared.levels import LEVEL_RANK
from shared.regions import Registry, registry
from shared.words import words

WORDS = words("report")


@dataclass
class DayReport:
    """What the report says, as plain data."""

    region: str | None
    region_name: str
    day: date
    tz: timezone
    rows: list[tuple[str, str, dict[str, str]]]  # (code, full name, category -> peak level)
    categories: list[str]
    opened: list[dict[str, Any]] = field(default_factory=list)
    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[tuple[str, str, str, str]] = field(default_factory=list)  # (level, region name, category, reason)
    active: int = 0


def day_window(day: date, region: str | None) -> tuple[float, float, timezone]:
    """The local day as Unix seconds [start, end), on the region's own clock."""
    tz = Registry.timezone_of(region or "31")
    start = datetime.combine(day, dtime(0), tz)
    return start.timestamp(), (start + timedelta(days=1)).timestamp(), tz


def _ts(v: str | None) -> float | None:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() if v else None


def peak_level(inc: dict[str, Any], start: float, end: float) -> str:
    """The highest level the incident stood at during [start, end): the level in force at the
    start, and every level it was set to before the end (from its timeline)."""
    changes = sorted(((_ts(t.get("at")) or 0.0, t["level"]) for t in inc.get("timeline", [])
                      if t.get("kind") in ("opened", "level") and t.get("level") in LEVEL_RANK),
                     key=lambda c: c[0])
    if not changes:
        return inc.get("level", "normal")
    in_force = [lv for at, lv in changes if at < start][-1:]
    during = [lv for at, lv in changes if start <= at < end]
    return max(in_force + during or [inc["level"]], key=lambda lv: LEVEL_RANK[lv])


def _active(inc: dict[str, Any], start: float, end: float) -> bool:
    opened, closed = _ts(inc.get("opened_at")), _ts(inc.get("resolved_at"))
    return opened is not None and opened < end and (closed is None or closed >= start)


def _row_of(code: str, rows: Sequence[str]) -> str | None:
    for r in rows:
        if code == r or code.startswith(r + "."):
            return r
    return None


def summarize(incidents: Sequence[dict[str, Any]], region: str | None, day: date,
              reg: Registry | None = None) -> DayReport:
    reg = reg or registry()
    start, end, tz = day_window(day, region)
    if region is None:
        rows = reg.codes(1)
    elif reg.level(region) == 1:
        rows = reg.children(region)
    else:
        rows = [reg.kabkota_of(region)]
    active = [i for i in incidents if i.get("kind", "score") == "score" and _active(i, start, end)]
    peaks: dict[str, dict[str, str]] = {r: {} for r in rows}
    for inc in active:
        row = _row_of(inc["region_code"], rows)
        if row is None:
            continue
        lv = peak_level(inc, start, end)
        old = peaks[row].get(inc["category"], "normal")
        peaks[row][inc["category"]] = max(old, lv, key=lambda x: LEVEL_RANK[x])
    categories = sorted({c for p in peaks.values() for c in p})

    def within(key: str) -> list[dict[str, Any]]:
        hits = [i for i in active if (t := _ts(i.get(key))) is not None and start <= t < end]
        return sorted(hits, key=lambda i: i[key])

    ranked = sorted(active, key=lambda i: (-LEVEL_RANK.get(i["level"], 0), i.get("opened_at", "")))
    reasons: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    for inc in ranked:
        for why in inc.get("reasons", []):
            if why not in seen and len(reasons) < 10:
                seen.add(why)
                reasons.append((inc["level"], inc["region_name"], inc["category"], why))
    name = (reg.name(region) or region) if region else ""
    return DayReport(region, name, day, tz, [(r, reg.name(r) or r, peaks[r]) for r in rows], categories,
                     within("opened_at"), within("acknowledged_at"), within("resolved_at"), reasons, len(active))


# --- rendering -----------------------------------------------------------------------------------
def _clock(v: str | None, tz: timezone) -> str:
    t = _ts(v)
    return datetime.fromtimestamp(t, tz).strftime("%H:%M") + f" {tz.tzname(None)}" if t is not None else ""


def time_to_ack(inc: dict[str, Any], lang: str = "id") -> str | None:
    """`1 jam 05 menit`, `12 menit`, `40 detik`: from the incident opening to its acknowledgement."""
    a, o = _ts(inc.get("acknowledged_at")), _ts(inc.get("opened_at"))
    if a is None or o is None:
        return None
    hour, minute, second = ("h", "min", "s") if lang == "en" else ("jam", "menit", "detik")
    s = max(0, int(a - o))
    if s < 60:
        return f"{s} {second}"
    h, m = divmod(s // 60, 60)
    return f"{h} {hour} {m:02d} {minute}" if h else f"{m} {minute}"


def _cat(category: str, lang: str) -> str:
    from services.notify.messages import category_name

    return category_name(category, "en" if lang == "en" else "id")


def _incident_line(inc: dict[str, Any], key: str, rep: DayReport, lang: str) -> list[str]:
    w = WORDS[lang]
    tta = time_to_ack(inc, lang)
    extra = ""
    if key == "acknowledged_at":
        extra = f"{w['tta']} {tta}" + (f", {w['by']} {inc.get('acknowledged_by')}" if inc.get("acknowledged_by") else "")
    elif key == "opened_at":
        extra = f"{w['tta']} {tta}" if tta else w["still_open"]
    elif key == "resolved_at" and inc.get("resolved_by"):
        extra = f"{w['by']} {inc['resolved_by']}"
    return [_clock(inc.get(key), rep.tz), inc["level"].upper(), inc["region_name"], _cat(inc["category"], lang),
            extra]


def _sections(rep: DayReport, lang: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of every table, shared by HTML and Markdown."""
    w = WORDS[lang]
    cats = rep.categories
    level_rows = []
    for _, name, peaks in rep.rows:
        top = max(peaks.values(), key=lambda lv: LEVEL_RANK[lv], default="normal")
        level_rows.append([name, top.upper()] + [peaks.get(c, "normal").upper() for c in cats])
    out = [(w["levels"] if rep.region else w["levels_prov"], [w["region"], w["highest"]] + [_cat(c, lang) for c in cats],
            level_rows)]
    head = [w["time"], w["level"], w["region"], w["category"], ""]
    for title, key, items in ((w["opened"], "opened_at", rep.opened), (w["acked"], "acknowledged_at", rep.acknowledged),
                              (w["resolved"], "resolved_at", rep.resolved)):
        out.append((f"{title} ({len(items)})", head, [_incident_line(i, key, rep, lang) for i in items]))
    out.append((w["reasons"], [w["level"], w["region"], w["category"], ""],
                [[lv.upper(), name, _cat(c, lang), why] for lv, name, c, why in rep.reasons]))
    return out


def _title(rep: DayReport, lang: str) -> str:
    w = WORDS[lang]
    return f"{w['title']}: {rep.region_name or w['national']}, {rep.day.isoformat()}"


def render_html(rep: DayReport, svg: str | None, made: str, lang: str = "id") -> str:
    w, e = WORDS[lang], html.escape
    parts = [f"<h1>{e(_title(rep, lang))}</h1><p>{e(w['day'])}: {rep.day.isoformat()} ({rep.tz.tzname(None)}) · "
             f"{rep.active} {e(w['incidents_day'])} · {e(w['made'])} {e(made)}</p>"]
    for heading, header, rows in _sections(rep, lang):
        parts.append(f"<h2>{e(heading)}</h2>")
        if not rows:
            parts.append(f"<p>{e(w['none'])}</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                     + "".join("<tr>" + "".join(f'<td class="{e(c.lower())}">{e(c)}</td>' for c in row) + "</tr>"
                               for row in rows) + "</table>")
    if svg:
        parts.append(f"<h2>{e(w['map'])} <small>({e(w['map_note'])})</small></h2><div class=map>{svg}</div>")
    css = ("body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 .5em;color:#1b2a22}"
           "table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #c9d3cc;padding:.25em .4em;"
           "text-align:left;font-size:.9em}.waspada{background:#f5d142}.siaga{background:#f08a24}"
           ".awas{background:#d42a20;color:#fff}.map svg{width:100%;height:auto}")
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{e(_title(rep, lang))}</title><style>{css}</style>'
            f'</head><body>{"".join(parts)}</body></html>')


def render_md(rep: DayReport, map_file: str | None, made: str, lang: str = "id") -> str:
    w = WORDS[lang]

    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    out = [f"# {_title(rep, lang)}", "",
           f"{w['day']}: {rep.day.isoformat()} ({rep.tz.tzname(None)}) · {rep.active} {w['incidents_day']} · "
           f"{w['made']} {made}", ""]
    for heading, header, rows in _sections(rep, lang):
        out += [f"## {heading}", ""]
        if not rows:
            out += [w["none"], ""]
            continue
        out += ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows] + [""]
    out += [f"## {w['map']}", "", f"![{w['map']} ({w['map_note']})]({map_file})" if map_file else w["no_map"], ""]
    return "\n".join(out)


# --- the HTTP edge -------------------------------------------------------------------------------
def collect(client: NotifyClient, region: str | None, day: date) -> list[dict[str, Any]]:
    """Every incident of the region (the API keeps them for its retention period) that was
    active on the day, each with its timeline."""
    start, end, _ = day_window(day, region)
    params: dict[str, Any] = {"limit": 1000}
    if region:
        params["region"] = region
    found = client._request("GET", "/v1/incidents", params=params)["incidents"]
    out = []
    for inc in found:
        if _active(inc, start, end):
            out.append(client._request("GET", f"/v1/incidents/{quote(inc['id'], safe='')}"))
    return out


def fetch_map(client: NotifyClient, region: str | None, lang: str) -> str:
    """The province's map (the country's without a region), from the console's map.svg."""
    params = {"lang": lang}
    if region:
        params["region"] = region[:2]
    try:
        with httpx.Client(base_url=client.url, timeout=client.timeout_s,
                          headers={"Authorization": f"Bearer {client.token}"}) as c:
            resp = c.get("/console/map.svg", params=params)
    except httpx.HTTPError as e:
        raise CliError(f"cannot fetch the map from {client.url}: {type(e).__name__}", EXIT["unreachable"]) from None
    if resp.status_code == 401:
        raise CliError("the notify API refused the operator token for the map", EXIT["unauthorized"])
    if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("image/svg+xml"):
        raise CliError(f"the notify API answered {resp.status_code} for the map", EXIT["error"])
    return resp.text


def _usage(problem: str) -> CliError:
    return CliError(problem, EXIT["usage"])


def run_report(day: str, region: str | None, fmt: str, out: Any, lang: str, client_of: Callable[[], NotifyClient],
               refused: Callable[[str, Exception], None]) -> int:
    """The command: check the options, fetch, render, write; an exit code, never a traceback."""
    from shared.regions import CODE_PATTERN

    try:
        try:
            the_day = date.fromisoformat(day)
        except ValueError:
            raise _usage(f"--date must be a day as YYYY-MM-DD, not {day!r}") from None
        if region is not None and not (CODE_PATTERN.match(region) and registry().exists(region)):
            raise _usage(f"--region: unknown region code {region!r} (e.g. 65 or 65.71)")
        if fmt not in ("html", "md"):
            raise _usage(f"--format must be html or md, not {fmt!r}")
        if lang not in ("id", "en"):
            raise _usage(f"--lang must be id or en, not {lang!r}")
        client = client_of()
        rep = summarize(collect(client, region, the_day), region, the_day)
        svg = fetch_map(client, region, lang)
        made = datetime.now(rep.tz).strftime("%Y-%m-%d %H:%M ") + str(rep.tz.tzname(None))
        if fmt == "html":
            text = render_html(rep, svg, made, lang)
        else:
            map_file = None
            if out is not None:
                map_path = out.with_name(out.stem + ".map.svg")
                map_path.write_text(svg, encoding="utf-8")
                map_file = map_path.name
            text = render_md(rep, map_file, made, lang)
    except CliError as e:
        refused("report", e)
        return e.code
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
    return 0


__all__ = ["DayReport", "run_report", "collect", "day_window", "fetch_map", "peak_level", "render_html", "render_md", "summarize",
           "time_to_ack"]
