"""``smsroute providers list`` and ``providers verify``: the conformance kit's commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provider_fixtures import ROOT
from smsroute.cli import main
from smsroute.providers import available


def test_list_names_every_http_provider_with_its_paths_auth_and_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "list", "--json"]) == 0
    listed = {entry["type"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert sorted(listed) == sorted(name for name, provider in available().items() if provider.receiving.kinds)
    assert listed["telnyx"]["paths"] == ["/inbound/telnyx", "/status/telnyx"]
    assert listed["aws"]["paths"] == ["/inbound/aws", "/status/aws"]
    assert "ed25519" in listed["telnyx"]["auth"]
    assert listed["vonage"]["answer"] == "204"


@pytest.mark.parametrize(
    ("provider", "case", "exit_status", "shown"),
    [
        ("telnyx", "inbound_doc_sample", 0, {"messages": 1}),  # signed, checked at the fixture's now
        ("sinch", "status_batch_delivered", 0, {"reports": 2}),
        ("aws", "inbound_doc_sample_sv2", 0, {"messages": 1}),  # the fixture's certificate, as if fetched
        ("aws", "status_blocked", 0, {"reports": 1}),  # an SMS event of an SNS event destination
        ("bird", "refuse_stale_timestamp", 0, {}),  # refused, as the fixture expects
    ],
)
def test_verify_runs_a_fixture_through_the_ingress(
    capsys: pytest.CaptureFixture[str], provider: str, case: str, exit_status: int, shown: dict[str, int]
) -> None:
    fixture = ROOT / provider / f"{case}.json"
    assert main(["providers", "verify", provider, "--fixture", str(fixture)]) == exit_status
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == json.loads(fixture.read_text())["expect"]["status"]
    assert {key: len(result[key]) for key in ("messages", "reports") if key in result} == shown


def test_verify_says_when_the_answer_is_not_the_expected_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fixture = json.loads((ROOT / "plivo" / "inbound_sms.json").read_text())
    fixture["settings"]["auth_token"] = "another-token"
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(fixture))
    assert main(["providers", "verify", "plivo", "--fixture", str(path)]) == 1
    assert json.loads(capsys.readouterr().out) == {"status": 401, "answer": "bad signature (X-Plivo-Signature-V3)\n"}
