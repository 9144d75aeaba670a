"""deploy/prometheus/ is valid for promtool, every alert rule is unit-tested both ways and has a
runbook in the README, and shared/metrics.py follows the naming and cardinality rules."""

from __future__ import annotations

import re
import subprocess

import yaml
from prometheus_client import Histogram

from cli.stack import SERVICES
from tests.deploy import (
    FORBIDDEN_LABELS, PROMETHEUS_DIR, REPO, RULES_FILE, alert_rules, defined_series, metric_collectors,
    metric_names, require_tool, rule_test_files,
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = require_tool("promtool")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_scrape_config():
    r = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_accepts_the_rules():
    r = promtool("check", "rules", str(RULES_FILE))
    assert r.returncode == 0, r.stdout + r.stderr


def test_rule_unit_tests_pass():
    files = rule_test_files()
    assert files, "no promtool unit tests in deploy/prometheus/tests/"
    r = promtool("test", "rules", *map(str, files))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_is_unit_tested_firing_and_silent():
    fires: set[str] = set()
    silent: set[str] = set()
    for path in rule_test_files():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            for t in case.get("alert_rule_test", []):
                (fires if t.get("exp_alerts") else silent).add(t["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"
    assert (fires | silent) - names == set(), "tests name alerts that do not exist"


def test_the_issue_alerts_exist():
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    wanted = {
        "a service down": ("PantauServiceDown", "up"),
        "a source silent too long": ("PantauSourceSilent", "pantau_silent_sources"),
        "a source with no report (per source)":
            ("PantauSourceNoReports", "pantau_source_last_report_timestamp_seconds"),
        "consumer lag growing": ("PantauConsumerLagGrowing", "pantau_consumer_lag_messages"),
        "notification failure ratio high": ("PantauNotificationFailureRatioHigh", "pantau_notification_attempts_total"),
        "notification dead letters appearing":
            ("PantauNotificationDeadLetters", "pantau_notification_dead_letters_total"),
        "reports dead-lettered": ("PantauReportsDeadLettered", "pantau_dlq_messages_total"),
        "scoring lag high": ("PantauScoringLagHigh", "pantau_scoring_lag_seconds"),
    }
    for what, (alert, metric) in wanted.items():
        assert alert in exprs, f"no alert for {what}"
        assert metric in metric_names(exprs[alert]), f"{alert} does not read {metric}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_summary_and_a_runbook_paragraph_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "\n## Operating Pantau" in readme
    operating = readme[readme.index("\n## Operating Pantau"):]
    headings = {_slug(m.group(1)): m.end() for m in re.finditer(r"^#{2,6} (.+)$", operating, re.M)}
    for rule in alert_rules():
        ann = rule.get("annotations", {})
        assert ann.get("summary", "").strip(), f"{rule['alert']}: no summary"
        runbook = ann.get("runbook", "")
        assert runbook.startswith("README.md#"), f"{rule['alert']}: runbook {runbook!r}"
        anchor = runbook.split("#", 1)[1]
        assert anchor in headings, f"{rule['alert']}: no README heading for #{anchor}"
        after = operating[headings[anchor]:].lstrip("\n")
        assert len(after.split("\n\n", 1)[0]) > 80, f"{rule['alert']}: the runbook paragraph is missing or too short"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]


def test_rule_expressions_only_read_defined_metrics():
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - defined_series()
        assert not unknown, f"{rule['alert']} reads metrics nobody defines: {unknown}"


def test_the_scrape_config_has_one_job_per_service():
    cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    assert jobs == set(SERVICES)
    # Rules and dashboards select gauges by these job names.
    rules_text = RULES_FILE.read_text(encoding="utf-8")
    for job in re.findall(r'job="([^"]+)"', rules_text):
        assert job in jobs, f"rules select job {job!r}, which prometheus.yml does not scrape"


# --- shared/metrics.py -------------------------------------------------------------------------

def test_metric_names_follow_prometheus_conventions():
    for attr, m in metric_collectors().items():
        name, kind = m._name, m._type
        assert name.startswith("pantau_"), f"{attr}: {name} lacks the pantau_ prefix"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{attr}: {name}"
        assert m._documentation.strip(), f"{attr}: no help text"
        if kind == "histogram":
            assert isinstance(m, Histogram) and name.endswith("_seconds"), (
                f"{attr}: histograms here measure time, in seconds")
        if kind != "counter":
            assert not name.endswith("_total"), f"{attr}: only counters end in _total"
        for unit in ("_milliseconds", "_ms", "_minutes", "_hours", "_days", "_kilobytes", "_megabytes"):
            assert not name.endswith(unit), f"{attr}: use base units (seconds, bytes)"
        if re.search(r"(latency|duration|lag|age|time)", name) and kind in ("gauge", "histogram"):
            assert re.search(r"_(seconds|messages|timestamp_seconds)$", name), f"{attr}: {name} needs its unit"


def test_no_metric_has_a_per_event_or_per_person_label():
    for attr, m in metric_collectors().items():
        for label in m._labelnames:
            assert label not in FORBIDDEN_LABELS, (
                f"{attr} ({m._name}) has label {label!r}: one series per event or person")
            assert not label.endswith("_id"), f"{attr} ({m._name}) has an id label {label!r}"


def test_metric_names_are_defined_once():
    names = [m._name for m in metric_collectors().values()]
    assert len(names) == len(set(names))


def test_the_extractor_sees_metric_names_and_nothing_else():
    # The rule and dashboard checks are only as good as this.
    expr = ('histogram_quantile(0.9, sum by (le, channel_type) (rate(foo_bucket{job="a", le=~"1|x"}[5m] offset 1h)))'
            ' / on (job) group_left (x) bar_total > bool 1e3 or vector(0) unless absent(baz{a="q{x}"}) and time()')
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz"}
    assert metric_names('max by (source) (max_over_time(m_seconds{source!="other"}[7d:1m]))') == {"m_seconds"}

