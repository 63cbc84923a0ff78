"""End-to-end tests run against both engines: each test that uses ``start_engine`` here runs once
on the embedded engine and once on the Kafka engine (ingress and worker processes on the session's
broker, marked ``kafka``). A module about one engine only says so with
``pytestmark = pytest.mark.parametrize("engine", ["embedded"], indirect=True)``."""

from __future__ import annotations

import pytest

from engines import ENGINES


@pytest.fixture(
    params=[pytest.param(engine, marks=[pytest.mark.kafka] if engine == "kafka" else []) for engine in ENGINES]
)
def engine(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The engine under test, and the session broker's address when it is the Kafka engine."""
    return request.param, request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else ""
