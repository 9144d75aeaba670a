"""Generates Pantau's Grafana dashboards from plain Python dicts: never hand-edit the JSON.

    python deploy/grafana/generate.py          # write deploy/grafana/dashboards/*.json
    python deploy/grafana/generate.py --check  # exit 1 if the committed JSON is stale

Two dashboards: "Pantau · pipeline health" (is every source sending, does scoring keep up, do
notifications get through) and "Pantau · regional picture" (which regions stand at which level,
incidents, time to acknowledge, deliveries). Every query names only metrics from
shared/metrics.py (plus `up`), selects gauges by the job that sets them (every service exports
every family), and is evaluated against a real Prometheus by tests/deploy/test_metrics_live.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
REPO = HERE.parent.parent

DATASOURCE_UID = "pantau-prometheus"  # provisioning/datasources/prometheus.yml
DS = {"type": "prometheus", "uid": "${datasource}"}
PANTAU_JOBS = "ingest-gateway|ingest-validator|scoring|notify"
RATE = "$__rate_interval"
PROVINCE = 'region!~".+\\\\..+"'   # a province code has no dot
KABKOTA = 'region=~".+\\\\..+"'

# Titles of the pipeline-health panels that must show data as soon as reports flow; the live
# test checks them against a real Prometheus.
CORE_INGEST_PANELS = (
    "Reports received by source",
    "Reports accepted by source",
    "Reports rejected by source and reason",
    "Dead-lettered raw messages by reason",
    "Reports in the dashboard's time range",
    "Last accepted report, age per source",
)

LEVELS = (("0", "normal", "green"), ("1", "waspada", "yellow"), ("2", "siaga", "orange"), ("3", "awas", "red"))


def level_mapping() -> dict[str, Any]:
    return {"type": "value", "options": {v: {"text": t, "color": c, "index": i}
                                         for i, (v, t, c) in enumerate(LEVELS)}}


def level_thresholds() -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "yellow", "value": 1},
                                          {"color": "orange", "value": 2}, {"color": "red", "value": 3}]}


def region_mapping(level: int) -> dict[str, Any]:
    """Region code → "code name" for tables (level 1 provinces, 2 kabupaten/kota), from the
    project's own registry."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from shared.regions import registry

    reg = registry()
    codes = reg.codes(level)
    return {"type": "value", "options": {c: {"text": f"{c} {reg.name(c)}", "index": i} for i, c in enumerate(codes)}}


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False,
           ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
            "instant": instant, "range": not instant, "format": "table" if table else "time_series"}


def quantile(q: float, histogram: str, by: str = "", sel: str = "", window: str = RATE) -> str:
    """The q-quantile of a histogram over `window`, summed across instances (per `by`)."""
    le = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({le}) (rate({histogram}_bucket{select(sel)}[{window}])))"


def select(matchers: str) -> str:
    return f"{{{matchers}}}" if matchers else ""


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


GREEN = thresholds(("green", None))


@dataclass
class Panel:
    """One panel before layout: its kind, queries and field settings."""

    kind: str
    title: str
    description: str
    targets: list[dict[str, Any]]
    unit: str = "short"
    w: int = 12
    h: int = 8
    defaults: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)


def timeseries(title: str, description: str, *targets: dict[str, Any], unit: str = "short", w: int = 12,
               stack: bool = False, bars: bool = False) -> Panel:
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 40 if bars else 10,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    return Panel("timeseries", title, description, list(targets), unit, w,
                 defaults={"custom": custom, "min": 0, "thresholds": GREEN, "color": {"mode": "palette-classic"}},
                 options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"],
                                     "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}})


def stat(title: str, description: str, *targets: dict[str, Any], unit: str = "short", w: int = 6,
         steps: dict[str, Any] = GREEN, mappings: list[dict[str, Any]] | None = None, h: int = 5) -> Panel:
    return Panel("stat", title, description, list(targets), unit, w, h,
                 defaults={"thresholds": steps, "mappings": mappings or [], "color": {"mode": "thresholds"}},
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "background", "graphMode": "none", "textMode": "auto",
                          "justifyMode": "auto", "orientation": "auto"})


def bargauge(title: str, description: str, *targets: dict[str, Any], unit: str = "short", w: int = 12,
             steps: dict[str, Any] = GREEN) -> Panel:
    return Panel("bargauge", title, description, list(targets), unit, w,
                 defaults={"thresholds": steps, "min": 0, "color": {"mode": "thresholds"}},
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                          "valueMode": "color", "namePlacement": "auto", "sizing": "auto"})


def table(title: str, description: str, *targets: dict[str, Any], w: int = 12, h: int = 10,
          mappings: list[dict[str, Any]], transformations: list[dict[str, Any]],
          sort: str | None = None) -> Panel:
    return Panel("table", title, description, list(targets), "none", w, h,
                 defaults={"thresholds": level_thresholds(), "mappings": mappings, "color": {"mode": "thresholds"},
                           "custom": {"align": "auto", "cellOptions": {"type": "color-background"},
                                      "filterable": True}},
                 options={"showHeader": True, "cellHeight": "sm",
                          "sortBy": [{"displayName": sort, "desc": True}] if sort else []},
                 overrides=[{"matcher": {"id": "byType", "options": "string"},
                             "properties": [{"id": "custom.cellOptions", "value": {"type": "auto"}}]}],
                 transformations=transformations)


def state_timeline(title: str, description: str, *targets: dict[str, Any], w: int = 24, h: int = 10) -> Panel:
    return Panel("state-timeline", title, description, list(targets), "none", w, h,
                 defaults={"thresholds": level_thresholds(), "mappings": [level_mapping()],
                           "color": {"mode": "thresholds"}, "custom": {"fillOpacity": 80, "lineWidth": 0}},
                 options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9, "alignValue": "left",
                          "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "single", "sort": "none"}})


def layout(rows: list[tuple[str, list[Panel]]]) -> list[dict[str, Any]]:
    """Rows of panels, left to right and wrapping at Grafana's 24 columns."""
    out: list[dict[str, Any]] = []
    y = 0
    ids = iter(range(1, 1000))
    for row_title, panels in rows:
        out.append({"type": "row", "title": row_title, "id": next(ids), "collapsed": False, "panels": [],
                    "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        y += 1
        x = row_h = 0
        for p in panels:
            if x + p.w > 24:
                x, y, row_h = 0, y + row_h, 0
            panel: dict[str, Any] = {
                "type": p.kind, "id": next(ids), "title": p.title, "description": p.description,
                "datasource": DS, "gridPos": {"x": x, "y": y, "w": p.w, "h": p.h},
                "targets": p.targets,
                "fieldConfig": {"defaults": {"unit": p.unit, **p.defaults}, "overrides": p.overrides},
                "options": p.options,
            }
            if p.transformations:
                panel["transformations"] = p.transformations
            out.append(panel)
            x += p.w
            row_h = max(row_h, p.h)
        y += row_h
    return out


def dashboard(uid: str, title: str, description: str, rows: list[tuple[str, list[Panel]]],
              variables: list[dict[str, Any]] = ()) -> dict[str, Any]:
    ds_var = {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
              "current": {"text": "Pantau Prometheus", "value": DATASOURCE_UID}, "hide": 0, "refresh": 1,
              "regex": "", "options": []}
    return {
        "id": None, "uid": uid, "title": title, "description": description,
        "tags": ["pantau"], "timezone": "browser", "editable": False, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "liveNow": False,
        "time": {"from": "now-6h", "to": "now"}, "timepicker": {},
        "annotations": {"list": []}, "links": [],
        "templating": {"list": [ds_var, *variables]},
        "panels": layout(rows),
    }


# --- pipeline health ---------------------------------------------------------------------------

def pipeline_health() -> dict[str, Any]:
    def rate(metric: str, by: str, sel: str = "") -> str:
        return f"sum by ({by}) (rate({metric}{select(sel)}[{RATE}]))"

    services = [
        stat("Services up", "Prometheus' scrape of every Pantau service (1 up, 0 down). A job with no "
             "instance at all does not appear here: PantauServiceDown catches that.",
             target(f'up{{job=~"{PANTAU_JOBS}"}}', "{{job}} {{instance}}"), w=12,
             steps=thresholds(("red", None), ("green", 1)),
             mappings=[{"type": "value", "options": {"0": {"text": "down", "index": 0},
                                                     "1": {"text": "up", "index": 1}}}]),
        stat("Sources silent (watchdog)", "Configured sources silent longer than their silent_after_minutes, "
             "as counted by the notify watchdog from pantau.reports.v1.",
             target('max(pantau_silent_sources{job="notify"})', "silent sources"),
             steps=thresholds(("green", None), ("red", 1))),
        stat("Escalation timer overdue", "How late the most overdue escalation step is; above a minute or two, "
             "pages are going out late.",
             target('max(pantau_escalation_overdue_seconds{job="notify"})', "overdue"), unit="s",
             steps=thresholds(("green", None), ("orange", 60), ("red", 120))),
    ]
    ingest = [
        stat("Reports in the dashboard's time range", "Received, accepted, duplicate and rejected over the range.",
             target("sum(increase(pantau_reports_received_total[$__range]))", "received", instant=True, ref="A"),
             target("sum(increase(pantau_reports_accepted_total[$__range]))", "accepted", instant=True, ref="B"),
             target("sum(increase(pantau_reports_duplicate_total[$__range]))", "duplicate", instant=True, ref="C"),
             target("sum(increase(pantau_reports_rejected_total[$__range]))", "rejected", instant=True, ref="D"),
             w=24, h=4),
        timeseries("Reports received by source", "Reports per second by source and path (http or raw).",
                   target(rate("pantau_reports_received_total", "source, path"), "{{source}} · {{path}}"),
                   unit="reqps"),
        timeseries("Reports accepted by source", "Reports per second written to pantau.reports.v1.",
                   target(rate("pantau_reports_accepted_total", "source, path"), "{{source}} · {{path}}"),
                   unit="reqps"),
        timeseries("Duplicate reports by source", "Repeats of an accepted (source, event_id): acknowledged, "
                   "changing nothing downstream. A steady stream usually means a publisher retrying too eagerly.",
                   target(rate("pantau_reports_duplicate_total", "source, path"), "{{source}} · {{path}}"),
                   unit="reqps"),
        timeseries("Reports rejected by source and reason", "Refusals per second; `other` is an unknown key or "
                   "a raw message whose source could not be read.",
                   target(rate("pantau_reports_rejected_total", "source, reason"), "{{source}} · {{reason}}"),
                   unit="reqps", stack=True),
        timeseries("Dead-lettered raw messages by reason", "Messages from pantau.reports.raw written to "
                   "pantau.reports.dlq, per second.",
                   target(rate("pantau_dlq_messages_total", "reason"), "{{reason}}"), unit="reqps", stack=True),
        bargauge("Last accepted report, age per source", "Seconds since each source's last accepted report "
                 "(HTTP or raw), as seen by the ingest processes.",
                 target('time() - max by (source) (pantau_source_last_report_timestamp_seconds'
                        '{job=~"ingest-gateway|ingest-validator"})', "{{source}}", instant=True),
                 unit="s", steps=thresholds(("green", None), ("yellow", 3600), ("red", 86400))),
        timeseries("Gateway request latency (p99)", "99th percentile of HTTP request time by endpoint.",
                   target(quantile(0.99, "pantau_ingest_request_duration_seconds", "endpoint", 'job="ingest-gateway"'),
                          "{{endpoint}}"), unit="s"),
        timeseries("Broker acknowledgement latency", "Produce to acks=all acknowledgement, p50 and p99.",
                   target(quantile(0.5, "pantau_ingest_broker_ack_seconds"), "p50", ref="A"),
                   target(quantile(0.99, "pantau_ingest_broker_ack_seconds"), "p99", ref="B"), unit="s"),
    ]
    lag = [
        timeseries("Validation and scoring lag", "Age of the newest report each stage has just finished: how "
                   "far behind real time the validator and scoring run.",
                   target('max(pantau_validation_lag_seconds{job="ingest-validator"})', "validation", ref="A"),
                   target('max(pantau_scoring_lag_seconds{job="scoring"})', "scoring", ref="B"), unit="s"),
        timeseries("Consumer lag per partition", "Messages behind the end of each partition, by consumer group.",
                   target("sum by (group, topic, partition) (pantau_consumer_lag_messages)",
                          "{{group}} · {{topic}}/{{partition}}"), unit="short"),
        timeseries("Reports read by scoring, by outcome", "counted, late, duplicate, redelivered, too_old, invalid.",
                   target(rate("pantau_scoring_reports_total", "outcome", 'job="scoring"'), "{{outcome}}"),
                   unit="reqps", stack=True),
        timeseries("Score updates by level", "Score updates written to pantau.scores.v1 per second.",
                   target(rate("pantau_score_updates_total", "level", 'job="scoring"'), "{{level}}"),
                   unit="reqps", stack=True),
        timeseries("Score updates notify could not read", "Messages on pantau.scores.v1 rejected by notify; "
                   "anything above zero is a contract break between scoring and notify.",
                   target(f'sum(rate(pantau_score_updates_rejected_total{{job="notify"}}[{RATE}]))', "rejected"),
                   unit="reqps"),
    ]
    notify = [
        timeseries("Notification attempts by channel and outcome", "delivered, retry, failed (handed to the "
                   "fallback), dead (given up), interrupted (the worker died mid-attempt).",
                   target(rate("pantau_notification_attempts_total", "channel_type, outcome", 'job="notify"'),
                          "{{channel_type}} · {{outcome}}"), unit="reqps", stack=True),
        timeseries("Notification failures by channel and reason", "Failed attempts by the channel's failure reason.",
                   target(rate("pantau_notification_failures_total", "channel_type, reason", 'job="notify"'),
                          "{{channel_type}} · {{reason}}"), unit="reqps", stack=True),
        timeseries("Retries by channel", "Attempts rescheduled after a retryable failure.",
                   target(rate("pantau_notification_retries_total", "channel_type", 'job="notify"'),
                          "{{channel_type}}"), unit="reqps"),
        bargauge("Dead letters by channel (time range)", "Deliveries given up: each one is a person not reached.",
                 target('sum by (channel_type) (increase('
                        'pantau_notification_dead_letters_total{job="notify"}[$__range]))',
                        "{{channel_type}}", instant=True),
                 steps=thresholds(("green", None), ("red", 1))),
        timeseries("Delivery latency by channel", "From submit to the receiving end's acceptance, p50 and p95.",
                   target(quantile(0.5, "pantau_notification_delivery_seconds", "channel_type", 'job="notify"'),
                          "p50 {{channel_type}}", ref="A"),
                   target(quantile(0.95, "pantau_notification_delivery_seconds", "channel_type", 'job="notify"'),
                          "p95 {{channel_type}}", ref="B"), unit="s"),
        timeseries("End-to-end latency", "From an incident's first report received by ingest to its first "
                   "delivered notification, p50 and p95 over the last hour.",
                   target(quantile(0.5, "pantau_end_to_end_seconds", sel='job="notify"', window="1h"), "p50", ref="A"),
                   target(quantile(0.95, "pantau_end_to_end_seconds", sel='job="notify"', window="1h"), "p95", ref="B"),
                   unit="s"),
    ]
    return dashboard(
        "pantau-pipeline-health", "Pantau · pipeline health",
        "Is every source sending, does scoring keep up, do notifications get through.",
        [("Services", services), ("Ingest", ingest), ("Lag and scoring", lag), ("Notifications", notify)])


# --- regional picture --------------------------------------------------------------------------

def regional_picture() -> dict[str, Any]:
    province_var = {
        "name": "province", "label": "Province", "type": "query", "datasource": DS,
        "query": {"query": 'label_values(pantau_region_level{job="scoring"}, region)', "refId": "province"},
        "definition": 'label_values(pantau_region_level{job="scoring"}, region)',
        "regex": "/^([0-9]{2})$/", "multi": True, "includeAll": True, "allValue": ".+",
        "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "hide": 0, "options": [],
    }
    level_now = f'max by (region, category) (pantau_region_level{{job="scoring", {PROVINCE}}})'
    overview = [
        stat("Number of provinces at waspada or above", "Provinces with any category at waspada, siaga or awas.",
             target(f'count(max by (region) (pantau_region_level{{job="scoring", {PROVINCE}}}) >= 1) or vector(0)',
                    "provinces", instant=True),
             steps=thresholds(("green", None), ("yellow", 1))),
        stat("Number of kabupaten/kota at waspada or above", "Kabupaten/kota with any category at waspada or above.",
             target(f'count(max by (region) (pantau_region_level{{job="scoring", {KABKOTA}}}) >= 1) or vector(0)',
                    "kabupaten/kota", instant=True),
             steps=thresholds(("green", None), ("yellow", 1))),
        stat("Open incidents now", "Incidents not yet resolved, by their current level.",
             target('sum by (level) (pantau_open_incidents{job="notify"})', "{{level}}", instant=True),
             w=12, steps=thresholds(("green", None), ("orange", 1))),
    ]
    levels = [
        table("Level by province and category", "Current level of every province (rows) and category "
              "(columns): normal, waspada, siaga, awas.",
              target(level_now, instant=True, table=True), w=24, h=14,
              mappings=[level_mapping(), region_mapping(1)],
              transformations=[{"id": "groupingToMatrix", "options": {
                  "rowField": "region", "columnField": "category", "valueField": "Value",
                  "emptyValue": "null"}}]),
        table("Kabupaten/kota at waspada or above", "Kabupaten/kota (in the chosen provinces) standing at "
              "waspada or above, highest first. Scoring exports a kabupaten/kota only while it is raised.",
              target('max by (region, category) (pantau_region_level'
                     '{job="scoring", region=~"$province\\\\..+"}) >= 1', instant=True, table=True), w=24, h=12,
              mappings=[level_mapping(), region_mapping(2)], sort="level",
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True}, "indexByName": {"region": 0, "category": 1, "Value": 2},
                  "renameByName": {"Value": "level"}}}]),
        state_timeline("Level over time by province", "Highest level of any category per province.",
                       target('max by (region) (pantau_region_level'
                              f'{{job="scoring", region=~"$province", {PROVINCE}}})', "{{region}}")),
    ]
    incidents = [
        timeseries("Incidents opened by category", "Incidents opened per hour, by category.",
                   target(f'sum by (category) (rate(pantau_incidents_opened_total{{job="notify"}}[{RATE}])) * 3600',
                          "{{category}}"), unit="short", stack=True, bars=True),
        timeseries("Incidents acknowledged and resolved", "Per hour; resolved by how (manual or auto).",
                   target(f'sum(rate(pantau_incidents_acknowledged_total{{job="notify"}}[{RATE}])) * 3600',
                          "acknowledged", ref="A"),
                   target(f'sum by (how) (rate(pantau_incidents_resolved_total{{job="notify"}}[{RATE}])) * 3600',
                          "resolved · {{how}}", ref="B"), unit="short"),
        timeseries("Open incidents over time", "Incidents not yet resolved, by level.",
                   target('sum by (level) (pantau_open_incidents{job="notify"})', "{{level}}"), stack=True),
        timeseries("Time to acknowledge", "From an incident's trigger (or last level rise) to its "
                   "acknowledgement: p50 and p90 over the last 6 hours.",
                   target(quantile(0.5, "pantau_time_to_acknowledge_seconds", sel='job="notify"', window="6h"),
                          "p50", ref="A"),
                   target(quantile(0.9, "pantau_time_to_acknowledge_seconds", sel='job="notify"', window="6h"),
                          "p90", ref="B"), unit="s"),
        stat("Median time to acknowledge (time range)", "Over the dashboard's time range.",
             target('histogram_quantile(0.5, sum by (le) (increase(pantau_time_to_acknowledge_seconds_bucket'
                    '{job="notify"}[$__range])))', "median", instant=True),
             unit="s", w=12, steps=thresholds(("green", None), ("orange", 900), ("red", 3600))),
        stat("Escalation steps fired (time range)", "First pages, escalations and reminders.",
             target('sum(increase(pantau_escalation_steps_total{job="notify"}[$__range]))', "steps", instant=True),
             w=12),
    ]
    deliveries = [
        timeseries("Deliveries by channel", "Delivered notifications per hour, by channel.",
                   target(f'sum by (channel_type) (rate(pantau_notification_attempts_total{{job="notify", '
                          f'outcome="delivered"}}[{RATE}])) * 3600', "{{channel_type}}"), stack=True, bars=True),
        bargauge("Delivery outcomes by channel (time range)", "Attempts by channel and outcome over the range.",
                 target('sum by (channel_type, outcome) (increase(pantau_notification_attempts_total{job="notify"}'
                        '[$__range]))', "{{channel_type}} · {{outcome}}", instant=True)),
    ]
    return dashboard(
        "pantau-regional-picture", "Pantau · regional picture",
        "Which regions stand at which level, incidents over time, time to acknowledge, deliveries by channel.",
        [("Now", overview), ("Levels", levels), ("Incidents", incidents), ("Deliveries", deliveries)],
        [province_var])


def build() -> dict[str, dict[str, Any]]:
    """File name → dashboard."""
    return {"pipeline-health.json": pipeline_health(), "regional-picture.json": regional_picture()}


def render(dash: dict[str, Any]) -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for name, dash in build().items():
        path = DASHBOARDS / name
        text = render(dash)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run python deploy/grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
