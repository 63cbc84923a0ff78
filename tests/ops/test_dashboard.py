"""The Grafana dashboard: it loads, every query is valid PromQL on metrics in the contract (or
recorded from them), it shows what on-call needs, and its provisioning points at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from metrics_contract import ROOT, contract_name, series_names, unknown_series
from tools import run, tool

GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "smsroute.json"
SHOWN = {
    "traffic by provider": "smsroute_ingress_events_total",
    "ingress latency": "smsroute_ingress_request_duration_seconds",
    "sink latency": "smsroute_delivery_attempt_duration_seconds",
    "end-to-end latency": "smsroute_end_to_end_seconds",
    "ingress errors": "smsroute_ingress_requests_total",
    "dead letters": "smsroute_dead_letters_total",
    "routes": "smsroute_messages_routed_total",
    "sinks": "smsroute_deliveries_total",
    "retries": "smsroute_delivery_retries_total",
    "backlog": "smsroute_delivery_backlog",
    "backlog age": "smsroute_delivery_backlog_age_seconds",
    "embedded lag": "smsroute_processor_backlog_events",
    "Kafka lag": "smsroute_consumer_lag",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[str]:
    board = dashboard()
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    return exprs + [annotation["expr"] for annotation in board["annotations"]["list"]]


def test_dashboard_loads_with_unique_panels_each_with_a_query() -> None:
    board = dashboard()
    assert (board["uid"], board["title"]) == ("smsroute", "smsroute")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]


def test_every_query_uses_only_metrics_in_the_contract() -> None:
    for query in queries():
        assert unknown_series(query) == set(), query


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule (Grafana's
    ``$__rate_interval`` stands for a real range)."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{number}", "expr": query.replace("$__rate_interval", "5m")}
                    for number, query in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    run(tool("promtool"), "check", "rules", path)


def test_dashboard_shows_traffic_latency_errors_routes_sinks_backlog_and_lag() -> None:
    used = {contract_name(name) for query in queries() for name in series_names(query)}
    recorded = {name.split(":")[1] for name in used if ":" in name}  # level:metric:operation
    assert {what: metric for what, metric in SHOWN.items() if metric not in used and metric not in recorded} == {}


def test_provisioning_points_at_the_dashboard_and_the_datasource_it_uses() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [source["uid"] for source in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "smsroute.yml").read_text())
    assert [provider["options"]["path"] for provider in providers["providers"]] == ["/var/lib/grafana/dashboards"]
