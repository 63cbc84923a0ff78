"""``smsroute rules check`` and ``smsroute rules test`` as a rule author runs them: a real process,
its exit status and its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "routing_rules"


def smsroute(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsroute", *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_check_summarises_valid_rules() -> None:
    result = smsroute("rules", "check", "routing_rules")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("routing_rules: ok: 9 routes, 6 keywords (+39 aliases), version ")


def test_check_counts_one_of_each_in_the_singular(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(
        "routes:\n  - name: info\n    match: {keyword: INFO}\n    actions: [{webhook: {url: 'http://127.0.0.1:9/'}}]\n"
    )
    result = smsroute("rules", "check", tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{tmp_path}: ok: 1 route, 1 keyword, version ")


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("routes:\n  - name: a\n    match: {keywrd: STOP}\n    actions: []\n")
    (tmp_path / "b.yaml").write_text(
        "routes:\n  - name: b\n"
        "    match: {time: {from: '9:00', to: '17:00', tz: Mars/Base}}\n"
        "    actions: [{email: {to: ops@example.com}}]\n"
    )
    result = smsroute("rules", "check", tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"{tmp_path}/a.yaml:3:13: routes[0].match: unknown key 'keywrd' (did you mean 'keyword'?)",
        f"{tmp_path}/a.yaml:4:14: routes[0].actions: must not be empty",
        f"{tmp_path}/b.yaml:3:51: routes[0].match.time.tz: unknown time zone 'Mars/Base'",
        f"{tmp_path}: 3 problems: rules not valid",
    ]


def test_test_explains_a_match_with_its_deliveries() -> None:
    result = smsroute(
        "rules",
        "test",
        EXAMPLES,
        "--text",
        "Arrêt s'il vous plaît",
        "--from",
        "+33612345678",
        "--to",
        "4321",
        "--provider",
        "vonage",
        "--at",
        "2026-11-21T10:00:00+01:00",
    )
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[1] == "keyword: STOP (first word 'ARRET')"
    assert "opt-out-audit    MATCH (continue)  [" in result.stdout
    assert "opt-out          MATCH (opts the sender out of auto-replies)  [" in result.stdout
    assert "office-hours     no  [" in result.stdout
    assert "    NO   to: '4321', wanted +393201234567" in lines
    assert "everything-else  shadowed by 'opt-out'  [" in result.stdout
    assert lines[-3:] == [
        "deliveries:",
        "  opt-out-audit #1 webhook: POST http://127.0.0.1:9000/crm/optout (signed)",
        "  opt-out #1 sms_reply: to +33612345678: 'You will get no more messages from us. "
        "Reply START to subscribe again.'",
    ]
    assert "whsec_" not in result.stdout


def test_test_json_and_exit_3_when_unrouted(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "routes:\n  - name: info\n    match: {keyword: INFO, from: '+39'}\n"
        "    actions: [{webhook: {url: 'http://127.0.0.1/info'}}]\n"
    )
    result = smsroute("rules", "test", rules, "--text", "info please", "--from", "+447700900123", "--json")
    assert (result.returncode, result.stderr) == (3, "")
    report = json.loads(result.stdout)
    assert (report["keyword"], report["matched"], report["deliveries"]) == ("INFO", [], [])
    [route] = report["routes"]
    assert (route["name"], route["status"], route["origin"]) == ("info", "no", f"{rules}:2")
    assert route["checks"] == [
        {"criterion": "keyword", "held": True, "actual": "'INFO'", "wanted": "INFO"},
        {"criterion": "from", "held": False, "actual": "'+447700900123'", "wanted": "a number starting with +39"},
    ]
    text = smsroute("rules", "test", rules, "--text", "info please", "--from", "+447700900123")
    assert (text.returncode, text.stdout.splitlines()[-1]) == (3, "deliveries: none: the message is unrouted")


def test_test_refuses_invalid_rules_and_times_without_offset(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("routes: [\n")
    result = smsroute("rules", "test", tmp_path / "bad.yaml", "--text", "hi")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines()[0].startswith(f"{tmp_path}/bad.yaml:2:1: YAML syntax: ")
    result = smsroute("rules", "test", EXAMPLES, "--text", "hi", "--at", "2026-11-21T10:00:00")
    assert result.returncode == 2
    assert "'2026-11-21T10:00:00' has no UTC offset" in result.stderr
