"""The declarative provider: a mapping in the settings, no code. Its own recorded cases are in
tests/fixtures/providers/generic/; here, Agile Telecom re-expressed as a mapping passes every one of
Agile Telecom's recorded cases, and mappings that cannot work are refused at start-up."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ingress_server import StartIngress
from provider_fixtures import ROOT, Fixture, fixtures, run_case
from smsroute.config import ConfigError, load_settings
from smsroute.providers import build_receivers

AGILE_AS_MAPPING = json.loads((ROOT / "generic" / "inbound_form_agile_mapping.json").read_text())["settings"]
AGILE_CASES = fixtures({"agiletelecom"})


@pytest.mark.parametrize("case", AGILE_CASES, ids=[case.name for case in AGILE_CASES])
async def test_agile_telecom_as_a_mapping_passes_agile_telecoms_cases(
    start_ingress: StartIngress, case: Fixture
) -> None:
    generic = dataclasses.replace(
        case,
        provider="generic",
        settings=AGILE_AS_MAPPING,
        target=case.target.replace("/agiletelecom", "/generic"),
        url=case.url.replace("/agiletelecom", "/generic"),
    )
    await run_case(start_ingress, generic)


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [
        ({"fields": {"from": "a", "to": "b"}}, r"ingress\.acme\.fields\.text: Field required"),
        ({"format": "form", "batch": "x", "fields": {"from": "a", "to": "b", "text": "c"}}, "batch is a JSON path"),
        ({"methods": ["GET"], "fields": {"from": "a", "to": "b", "text": "c"}}, "use format = form"),
        ({"answer_status": 500, "fields": {"from": "a", "to": "b", "text": "c"}}, "answer_status"),
    ],
)
def test_a_mapping_that_cannot_work_is_a_configuration_error(mapping: dict[str, object], reason: str) -> None:
    settings = load_settings(ingress={"acme": {"provider": "generic", **mapping}})
    with pytest.raises(ConfigError, match=reason):
        build_receivers(settings)


def test_generic_is_not_mounted_without_a_mapping() -> None:
    assert "generic" not in build_receivers(load_settings())
