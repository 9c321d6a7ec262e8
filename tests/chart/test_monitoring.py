"""The chart's PrometheusRule and Grafana dashboard query only metrics streamd's ``/metrics`` serves.

Rules checked: every metric name in an alert expression or a dashboard query is one the daemon's
registry exports (``/metrics`` is ``generate_latest(streamd.telemetry.REGISTRY)``; every module that
registers a metric there is imported first, found by its source text so a new one is not missed);
the expressions parse as PromQL (promql-parser, when installed) and select streamd's series with
the chart's selector; the spool alerts use the configured ``spool.max_bytes``; the dashboard in
the chart is the one in ``docs/``, and its ConfigMap carries the Grafana sidecar's label.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from streamd.telemetry import REGISTRY
from tests.chart.test_chart import CHART, ROOT, kinds, only, render

DASHBOARD = CHART / "dashboards" / "streamd.json"
DOCS_DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
ALL_OPTIONS = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
SELECTOR = 'namespace="contact-centre", job="streamd"'
# Grafana's variables, replaced by values of the right type before parsing a dashboard query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$spool_max_bytes": "1073741824"}
# Everything in a PromQL expression that looks like a name but is not a metric.
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    *("sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar"),
    *("rate", "irate", "increase", "delta", "histogram_quantile", "absent", "clamp_min", "clamp_max"),
    *("label_values", "humanize", "humanizeDuration"),
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def served_metric_names() -> set[str]:
    """The sample names ``/metrics`` can serve: every family in ``REGISTRY`` after importing each
    streamd module that registers one, expanded by type (a labelled metric has no samples until
    its first use, so the families are read, not the samples)."""
    for path in sorted((ROOT / "streamd").rglob("*.py")):
        if "registry=REGISTRY" in path.read_text(encoding="utf-8"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        assert family.type in SUFFIXES, f"{family.name}: unexpected metric type {family.type}"
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


SERVED = served_metric_names()


def rule_exprs() -> list[tuple[str, str]]:
    """(alert, expression) of every rule the chart's PrometheusRule renders."""
    rule = only(render(ALL_OPTIONS), "PrometheusRule")
    return [(r["alert"], r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel or variable, query) of every query in the dashboard, Grafana variables resolved."""

    def resolve(expr: str) -> str:
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in re.sub(r'"[^"]*"', "", expr), f"unresolved variable in {expr}"
        return expr

    found = [(panel["title"], resolve(t["expr"])) for panel in dashboard["panels"] for t in panel["targets"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+), \w+\)", var["query"]["query"])
            assert inner, var["query"]
            found.append((f"${var['name']}", resolve(inner[1])))
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names in ``expr`` by regex: identifiers outside strings, label lists and ranges that
    are not PromQL keywords, functions or label names."""
    text = re.sub(r'"(\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words - PROMQL_WORDS if not re.fullmatch(r"[0-9.e]+", w)}


def parsed_metric_names(expr: str) -> Iterator[str]:
    """Metric names in ``expr`` from promql-parser's syntax tree (raises on a syntax error)."""
    promql = pytest.importorskip("promql_parser")

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, promql.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr}"
            yield node.name
        elif isinstance(node, promql.MatrixSelector):
            yield from walk(node.vector_selector)
        elif isinstance(node, promql.BinaryExpr):
            yield from walk(node.lhs)
            yield from walk(node.rhs)
        elif isinstance(node, promql.Call):
            for arg in node.args:
                yield from walk(arg)
        elif isinstance(
            node, (promql.AggregateExpr, promql.ParenExpr, promql.UnaryExpr, promql.SubqueryExpr)
        ):
            yield from walk(node.expr)

    yield from walk(promql.parse(expr))


def load_dashboard() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def test_served_names_come_from_the_registry() -> None:
    """The reference list is the real registry, not a copy: the metrics the alerts rely on are in it,
    and a name nobody registered is not."""
    assert {
        "streamd_component_state",
        "streamd_spool_bytes",
        "streamd_publish_latency_seconds_bucket",
        "streamd_events_deadlettered_total",
        "streamd_errors_total",
        "streamd_event_loop_lag_seconds_bucket",
        "streamd_wallboard_clients",
        "streamd_o2g_cti_link",
    } <= SERVED
    assert "streamd_spool_bytes_total" not in SERVED
    assert metric_names('sum by (le) (rate(streamd_nope_bucket{a="b"}[5m])) > 2') == {"streamd_nope_bucket"}


@pytest.mark.parametrize(("alert", "expr"), rule_exprs(), ids=[a for a, _ in rule_exprs()])
def test_alert_uses_served_metrics_and_the_selector(alert: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{alert}: no metric in {expr}"
    assert names <= SERVED, f"{alert}: {sorted(names - SERVED)} not served by /metrics"
    assert expr.count(SELECTOR) == len(re.findall(r"\{", expr)), f"{alert}: a selector without {SELECTOR}"


@pytest.mark.parametrize(("alert", "expr"), rule_exprs(), ids=[a for a, _ in rule_exprs()])
def test_alert_parses_as_promql(alert: str, expr: str) -> None:
    names = set(parsed_metric_names(expr))
    assert names == metric_names(expr), alert
    assert names <= SERVED


def test_alerts_cover_the_issue() -> None:
    """Failed and retrying components, spool at 50 % and 90 % of the configured max_bytes, publish
    p99, dead letters, errors, source-status records (Gaps) and event-loop lag; all off by default."""
    assert "PrometheusRule" not in kinds(render())
    values = {**ALL_OPTIONS, "config": {"spool": {"max_bytes": 2147483648}}}
    rules = {
        r["alert"]: r for g in only(render(values), "PrometheusRule")["spec"]["groups"] for r in g["rules"]
    }
    assert 'state="failed"' in rules["StreamdComponentFailed"]["expr"]
    assert 'state="retrying"' in rules["StreamdComponentRetrying"]["expr"]
    assert rules["StreamdSpoolFilling"]["expr"].endswith("/ 2147483648 * 100 > 50")
    assert rules["StreamdSpoolAlmostFull"]["expr"].endswith("/ 2147483648 * 100 > 90")
    assert rules["StreamdPublishLatencyHigh"]["expr"].startswith("histogram_quantile(0.99,")
    assert "streamd_events_deadlettered_total" in rules["StreamdDeadLettersRising"]["expr"]
    assert "streamd_errors_total" in rules["StreamdErrorsRising"]["expr"]
    assert 'topic="source-status"' in rules["StreamdSourceContinuity"]["expr"]
    assert "streamd_event_loop_lag_seconds_bucket" in rules["StreamdEventLoopLag"]["expr"]
    # Prometheus's templates survive Helm's.
    assert (
        rules["StreamdComponentFailed"]["annotations"]["summary"] == "streamd {{ $labels.component }} failed"
    )
    assert "{{ $value | humanize }}%" in rules["StreamdSpoolFilling"]["annotations"]["description"]


def test_dashboard_queries_use_served_metrics() -> None:
    exprs = dashboard_exprs(load_dashboard())
    assert len(exprs) >= 10
    used: set[str] = set()
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        assert names <= SERVED, f"{where}: {sorted(names - SERVED)} not served by /metrics"
        used |= names
    for metric in ("streamd_spool_bytes", "streamd_errors_total", "streamd_component_state"):
        assert metric in used


def test_dashboard_queries_parse_as_promql() -> None:
    for where, expr in dashboard_exprs(load_dashboard()):
        assert set(parsed_metric_names(expr)) == metric_names(expr), where


def test_dashboard_in_the_chart_is_the_documented_one() -> None:
    """docs/grafana-dashboard.json is the chart's dashboard; the ConfigMap (off by default) carries
    it with the sidecar label and the configured spool.max_bytes."""
    assert DOCS_DASHBOARD.read_text(encoding="utf-8") == DASHBOARD.read_text(encoding="utf-8")
    assert not [d for d in render() if d["metadata"]["name"].endswith("-dashboard")]
    values = {**ALL_OPTIONS, "config": {"spool": {"max_bytes": 2147483648}}}
    [config_map] = [d for d in render(values) if d["metadata"]["name"] == "streamd-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["streamd.json"])
    [constant] = [v for v in shipped["templating"]["list"] if v["name"] == "spool_max_bytes"]
    assert constant["query"] == "2147483648"
    constant["query"] = "1073741824"
    assert shipped == load_dashboard()
    assert load_dashboard()["uid"] == "streamd"
