"""Tests of deploy/ (Prometheus rules, Grafana dashboards, compose) and the helpers they share:
paths, the external-tool rule (skip locally, fail under CI=true), PromQL metric-name
extraction, Grafana variable substitution and the dashboard generator."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "pantau.rules.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_CONFIG = REPO / "deploy" / "config" / "pantau.compose.yaml"
ENV_EXAMPLE = REPO / "deploy" / "config" / "pantau.env.example"

# Label names that would make a series per event or per person (unbounded cardinality).
FORBIDDEN_LABELS = frozenset({
    "event_id", "incident_id", "report_id", "delivery_id", "ingest_id", "id", "contact", "contact_id",
    "person", "user", "operator", "name", "email", "phone", "chat_id", "address", "token", "title", "url",
    "ack_url",
})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(name: str) -> str:
    """The path of an external binary; without it, skip locally but fail under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    why = f"`{name}` is not installed (Debian package `prometheus`: apt-get install -y prometheus)"
    if in_ci():
        pytest.fail(f"{why}; CI must install it (.ci/run does)")
    pytest.skip(why)


# --- metric names ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def metric_collectors() -> dict[str, Any]:
    """Attribute name → collector, for every metric defined in shared/metrics.py."""
    from prometheus_client.metrics import MetricWrapperBase

    from shared import metrics

    return {k: v for k, v in vars(metrics).items() if isinstance(v, MetricWrapperBase)}


@lru_cache(maxsize=1)
def defined_series() -> frozenset[str]:
    """Every series name the metrics of shared/metrics.py expose, plus Prometheus' own `up`."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "enum": ("",)}
    names = {"up"}
    for c in metric_collectors().values():
        names |= {c._name + s for s in suffixes[c._type]}
    return frozenset(names)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
                       "unless", "atan2", "inf", "nan", "Inf", "NaN"})


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and strings aside)."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)         # ranges and subqueries
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\boffset\s+\S+", " ", s)
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if word in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


# --- Grafana --------------------------------------------------------------------------------------

GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m", "$province": ".+"}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """A panel query as Grafana would send it, with its variables filled in."""
    values = {**GRAFANA_VARS, **(values or {})}
    for var in sorted(values, key=len, reverse=True):
        expr = expr.replace(var, values[var])
    left = re.findall(r"\$\w+", expr)
    assert not left, f"unknown Grafana variable(s) {left} in {expr!r}"
    return expr


@lru_cache(maxsize=1)
def generator() -> ModuleType:
    """deploy/grafana/generate.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pantau_grafana_generate", GRAFANA_DIR / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def panel_targets(dash: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of a dashboard."""
    for p in panels(dash):
        for t in p.get("targets", []):
            yield p["title"], t


def variable_queries(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(variable name, PromQL selector) of every query variable (`label_values(selector, label)`)."""
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q)
        assert m, f"variable {v['name']}: expected label_values(selector, label), got {q!r}"
        yield v["name"], m.group(1)


# --- Prometheus rules -----------------------------------------------------------------------------

def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def rule_test_files() -> list[Path]:
    return sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
