"""The shipped Prometheus rules: valid for promtool, every alert unit-tested firing and not firing,
documented with a summary and a runbook entry, and built only on metrics in the contract."""

from __future__ import annotations

import re
from typing import Any

import yaml

from metrics_contract import PROMETHEUS, ROOT, RULE_FILES, section, unknown_series
from tools import run, tool

RUNBOOK = ROOT / "docker" / "RUNBOOK.md"
ALERTMANAGER = ROOT / "docker" / "alertmanager" / "alertmanager.yml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
REQUIRED = {
    "SmsrouteSinkSlow",
    "SmsrouteIngressSlow",
    "SmsrouteDeliveryErrorRateHigh",
    "SmsrouteIngressErrorRateHigh",
    "SmsrouteProviderSilent",
    "SmsrouteStitchTimeouts",
    "SmsrouteDeadLettersGrowing",
    "SmsrouteRetryBacklogOld",
    "SmsrouteConsumerLagGrowing",
    "SmsrouteRulesReloadFailed",
    "SmsrouteTargetDown",
}
"""The alerts the issue asks for."""


def rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def test_promtool_check_rules() -> None:
    assert RULE_FILES
    run(tool("promtool"), "check", "rules", *RULE_FILES)


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS
    output = run(tool("promtool"), "test", "rules", *UNIT_TESTS)
    assert "FAILED" not in output


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert sorted(alerts().keys() - firing) == [], "never seen firing"
    assert sorted(alerts().keys() - silent) == [], "never seen not firing"


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    assert sorted(REQUIRED - alerts().keys()) == []


def test_every_alert_has_a_summary_a_severity_and_a_runbook_entry() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.MULTILINE))
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook_url"] == f"docker/RUNBOOK.md#{name.lower()}", name
        assert name in headings, f"no '## {name}' in {RUNBOOK}"
    assert headings == alerts().keys(), "runbook entries for alerts that do not exist"


def test_rules_use_only_metrics_in_the_contract() -> None:
    for rule in rules():
        assert unknown_series(rule["expr"]) == set(), rule.get("alert") or rule.get("record")


def test_compose_prometheus_config_is_valid() -> None:
    output = run(tool("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in output


def test_alertmanager_config_is_valid_and_routes_critical_alerts_to_on_call() -> None:
    amtool = tool("amtool")
    run(amtool, "check-config", ALERTMANAGER)
    route = ("config", "routes", "test", f"--config.file={ALERTMANAGER}")
    run(amtool, *route, "--verify.receivers=on-call", "alertname=SmsrouteTargetDown", "severity=critical")
    run(amtool, *route, "--verify.receivers=team-email", "alertname=SmsrouteSinkSlow", "severity=warning")


def test_operations_guide_lists_every_alert() -> None:
    documented = section("Alerts and dashboard")
    assert set(re.findall(r"^\| `(Smsroute\w+)` \|", documented, re.MULTILINE)) == alerts().keys()
