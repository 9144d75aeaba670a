"""The Grafana dashboards are exactly what deploy/grafana/generate.py produces, query only
metrics defined in shared/metrics.py, cover what the issue asks for, and agree with the
provisioning and the compose file."""

from __future__ import annotations

import json
import re

import yaml

from tests.deploy import (
    COMPOSE_FILE, GRAFANA_DIR, defined_series, generator, metric_names, panel_targets, panels, substitute,
    variable_queries,
)


def test_committed_dashboards_are_exactly_the_generated_ones():
    gen = generator()
    built = gen.build()
    on_disk = {p.name for p in (GRAFANA_DIR / "dashboards").glob("*.json")}
    assert on_disk == set(built), "dashboards/ holds files generate.py does not make (or lacks some)"
    for name, dash in built.items():
        committed = (GRAFANA_DIR / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == gen.render(dash), (
            f"{name} differs from the generator's output: edit deploy/grafana/generate.py and run it, "
            "never the JSON")
    assert {d["uid"] for d in built.values()} == {"pantau-pipeline-health", "pantau-regional-picture"}


def test_panel_queries_only_use_metrics_defined_in_shared_metrics():
    for name, dash in generator().build().items():
        for title, t in panel_targets(dash):
            unknown = metric_names(substitute(t["expr"])) - defined_series()
            assert not unknown, f"{name} / {title}: {unknown} not defined in shared/metrics.py"
        for var, selector in variable_queries(dash):
            unknown = metric_names(selector) - defined_series()
            assert not unknown, f"{name} / variable {var}: {unknown}"


def test_panels_have_titles_ids_queries_and_fit_the_grid():
    for name, dash in generator().build().items():
        seen_ids: set[int] = set()
        seen_titles: set[str] = set()
        cells: set[tuple[int, int]] = set()
        for p in panels(dash):
            assert p["id"] not in seen_ids, f"{name}: panel id {p['id']} twice"
            seen_ids.add(p["id"])
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{name} / {p['title']}: outside the 24 columns"
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{name} / {p['title']}: overlaps another panel"
            cells |= area
            if p["type"] == "row":
                continue
            assert p["title"] not in seen_titles, f"{name}: two panels titled {p['title']!r}"
            seen_titles.add(p["title"])
            assert p["description"].strip(), f"{name} / {p['title']}: no description"
            assert p["targets"], f"{name} / {p['title']}: no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), f"{name} / {p['title']}: duplicate refId"
            for t in p["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboards_show_what_the_issue_asks_for():
    built = generator().build()

    def metrics_of(name: str) -> set[str]:
        return {m for _, t in panel_targets(built[name]) for m in metric_names(substitute(t["expr"]))}

    health = metrics_of("pipeline-health.json")
    for m in ("pantau_reports_received_total", "pantau_reports_accepted_total", "pantau_reports_duplicate_total",
              "pantau_reports_rejected_total", "pantau_dlq_messages_total", "pantau_validation_lag_seconds",
              "pantau_scoring_lag_seconds", "pantau_consumer_lag_messages",
              "pantau_source_last_report_timestamp_seconds", "pantau_notification_attempts_total",
              "pantau_notification_retries_total", "pantau_notification_dead_letters_total",
              "pantau_notification_delivery_seconds_bucket", "pantau_end_to_end_seconds_bucket", "up"):
        assert m in health, f"pipeline health does not show {m}"
    regional = metrics_of("regional-picture.json")
    for m in ("pantau_region_level", "pantau_incidents_opened_total", "pantau_time_to_acknowledge_seconds_bucket",
              "pantau_notification_attempts_total", "pantau_open_incidents"):
        assert m in regional, f"regional picture does not show {m}"
    # Levels by province and by kabupaten/kota: both kinds of region code are queried.
    exprs = [t["expr"] for _, t in panel_targets(built["regional-picture.json"])]
    assert any('region!~".+\\\\..+"' in e for e in exprs), "no per-province level query"
    assert any("$province\\\\..+" in e for e in exprs), "no per-kabupaten/kota level query"
    # Rejections by source and reason; consumer lag per partition.
    health_exprs = [t["expr"] for _, t in panel_targets(built["pipeline-health.json"])]
    assert any("pantau_reports_rejected_total" in e and "source, reason" in e for e in health_exprs)
    assert any("pantau_consumer_lag_messages" in e and "partition" in e for e in health_exprs)


def test_core_ingest_panels_exist():
    titles = {p["title"] for p in panels(generator().build()["pipeline-health.json"])}
    assert set(generator().CORE_INGEST_PANELS) <= titles


def test_level_mappings_name_the_alert_ladder():
    dash = generator().build()["regional-picture.json"]
    table = next(p for p in panels(dash) if p["title"] == "Level by province and category")
    texts = {o["text"] for m in table["fieldConfig"]["defaults"]["mappings"] for o in m["options"].values()}
    assert {"normal", "waspada", "siaga", "awas", "65 Kalimantan Utara"} <= texts


def test_provisioning_points_at_the_compose_prometheus_and_dashboards():
    gen = generator()
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["uid"] == gen.DATASOURCE_UID and source["type"] == "prometheus"
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose
    for dash in gen.build().values():
        (var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
        assert var["current"]["value"] == gen.DATASOURCE_UID

    prov = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "pantau.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) if v.endswith(":ro") else v.split(":", 1)
                  for v in compose["grafana"]["volumes"])
    assert mounts.get("./deploy/grafana/dashboards") == path
    assert mounts.get("./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    home = compose["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/") and (GRAFANA_DIR / "dashboards" / home.rsplit("/", 1)[1]).exists()


def test_dashboard_json_is_valid_and_has_no_fixed_datasource_or_ids():
    for p in (GRAFANA_DIR / "dashboards").glob("*.json"):
        dash = json.loads(p.read_text(encoding="utf-8"))
        assert dash["id"] is None, "provisioned dashboards carry no database id"
        text = p.read_text(encoding="utf-8")
        assert not re.search(r'"uid":\s*"pantau-prometheus"', text.replace('"value": "pantau-prometheus"', "")), (
            "panels must use the ${datasource} variable")
