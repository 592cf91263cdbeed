"""The Prometheus and Grafana files in deploy/ parse, and every query in them names a metric
and labels the gateway really exports: a renamed metric breaks this test, not a dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import TEAM_KEY, Served, scrape

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yaml"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"

#: The metrics DESIGN.md promises, with their labels.
PROMISED = {
    "gateway_requests_total": {"team", "model", "deployment", "dialect", "status"},
    "gateway_tokens_total": {"team", "model", "deployment", "kind", "source"},
    "gateway_rate_limited_total": {"team", "limit"},
    "gateway_request_duration_seconds_bucket": {"model", "deployment", "le"},
    "gateway_time_to_first_byte_seconds_bucket": {"model", "deployment", "le"},
    "gateway_upstream_errors_total": {"deployment", "reason"},
    "gateway_deployment_cooldown": {"deployment"},
    "gateway_in_flight_requests": set(),
    "gateway_store_errors_total": set(),
}
#: Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
_METRIC = re.compile(r"\bgateway_[a-z0-9_]+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def exported(text: str) -> dict[str, set[str]]:
    """Every series name a scrape can hold, with its label names (from HELP/TYPE, so even
    families without a sample yet count)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels = set().union(*(s.labels.keys() for s in family.samples)) if family.samples else set()
        if family.type == "counter":
            names[family.name.removesuffix("_total") + "_total"] = labels
        elif family.type == "histogram":
            plain = labels - {"le"}
            names.update(
                {f"{family.name}_bucket": plain | {"le"}, f"{family.name}_sum": plain, f"{family.name}_count": plain}
            )
        else:
            names[family.name] = labels
    return names


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


@pytest.fixture
async def scraped(gw: Served) -> dict[str, set[str]]:
    """A scrape after one request of each kind the labels need (a 200, a refusal)."""
    async with aiohttp.ClientSession() as session:
        body = {"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]}
        for key in (TEAM_KEY, "wrong"):
            async with session.post(
                f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                await resp.read()
    metrics = gw.runtime.metrics
    metrics.rate_limit_hit("team-a", "tpm")
    metrics.upstream_error("dep-openai", "status_429")
    metrics.set_cooldown("dep-openai", 5)
    metrics.set_quota_usage("team-a", "tpm", 0.5)
    metrics.store_error()
    return exported(await scrape(gw.url))


def check(expr: str, names: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` the gateway does not export: unknown metrics, unknown labels."""
    problems = [f"unknown metric {m}" for m in _METRIC.findall(expr) if m not in names]
    used = {m for m in _METRIC.findall(expr) if m in names}
    known = set().union(*(names[m] for m in used)) | TARGET_LABELS if used else TARGET_LABELS
    labels = {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    labels |= set(_MATCHER.findall(expr))
    problems += [f"unknown label {label}" for label in sorted(labels - known)]
    return problems


def test_the_promised_metrics_are_exported(scraped: dict[str, set[str]]) -> None:
    for name, labels in PROMISED.items():
        assert name in scraped, name
        assert labels <= scraped[name], (name, scraped[name])


def test_alert_rules_use_exported_metrics(scraped: dict[str, set[str]]) -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "GatewayTeamNearQuota",
        "GatewayDeploymentCoolingRepeatedly",
        "GatewayStoreFailing",
        "GatewayHigh5xxRate",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert check(rule["expr"], scraped) == [], rule["alert"]
    # The rule tests feed the rules series shaped like the real ones.
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for series in test["input_series"]:
            assert check(series["series"], scraped) == [], series["series"]
    used = {m for rule in rules for m in _METRIC.findall(rule["expr"])}
    assert {"gateway_rate_limited_total", "gateway_store_errors_total", "gateway_deployment_cooldown"} <= used


def test_dashboard_queries_use_exported_metrics(scraped: dict[str, set[str]]) -> None:
    queries = list(dashboard_queries())
    assert len(queries) > 10
    for query in queries:
        assert check(query, scraped) == [], query
    used = {m for q in queries for m in _METRIC.findall(q)}
    assert set(PROMISED) <= used


def test_dashboard_panels_are_laid_out_and_unique() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_prometheus_config_scrapes_metrics_and_loads_the_alerts() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert [rule for rule in config["rule_files"] if (PROMETHEUS.parent / rule).resolve() == ALERTS.resolve()]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"]


def _promtool() -> str:
    """`make test` puts promtool in the venv (from the distribution's prometheus package)."""
    beside = Path(sys.executable).parent / "promtool"
    found = str(beside) if beside.exists() else shutil.which("promtool")
    assert found, "promtool is missing: run `make promtool` (Debian: apt-get download prometheus)"
    return found


def test_promtool_accepts_the_rules_and_the_config_and_the_rule_tests_pass() -> None:
    promtool = _promtool()
    commands = (
        [promtool, "check", "rules", str(ALERTS)],
        [promtool, "check", "config", str(PROMETHEUS)],
        [promtool, "test", "rules", str(ALERT_TESTS)],
    )
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
