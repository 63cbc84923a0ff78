"""Every recorded case of every provider there is (tests/fixtures/providers/<provider>/*.json),
posted over real HTTP to a real ingress and checked by one helper, ``provider_fixtures.run_case``:
the answer, what reached the log, and what the provider's normalizer makes of it. Cases of providers
not built yet wait in their folders until the provider's module exists."""

from __future__ import annotations

import pytest

from ingress_server import StartIngress
from provider_fixtures import Fixture, fixtures, run_case
from smsroute.providers import available

CASES = fixtures(set(available()))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_recorded_case(start_ingress: StartIngress, case: Fixture) -> None:
    await run_case(start_ingress, case)


def test_every_provider_has_cases() -> None:
    """A provider (receiving over HTTP) without recorded cases fails here: its table starts empty."""
    http = {name for name, provider in available().items() if provider.receiving.kinds}
    assert sorted(http - {case.provider for case in CASES}) == []
