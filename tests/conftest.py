"""Shared fixtures of every kind of test (tests/unit, tests/integration, tests/engines, tests/ops):
a real Kafka broker for the tests marked ``kafka`` (every test that uses a Kafka fixture is), a real
webhook receiver, and an engine to run end to end (embedded here; tests/engines/conftest.py runs
both). The support modules at tests/ root are importable by name (``pythonpath``); those that
define fixtures are registered below as plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engines import Running, StartEngine, rules_yaml, start_embedded, start_kafka
from kafka_broker import Broker, LocalBroker, NoBroker, session_broker
from local_server import Receiver, serving

pytest_plugins = ["ingress_server", "fake_providers", "smtp_server", "smsc"]

KAFKA_FIXTURES = {"kafka_broker", "kafka_bootstrap", "local_kafka", "throwaway_kafka"}
KINDS = ("unit", "integration", "engines", "ops")
"""The order the kinds run in: the quickest first (a broken unit fails in seconds), and the tests that
restart the session's broker (integration) before the end-to-end tests have filled it with topics."""
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a broker ``kafka``, before ``-m`` selects (so none can be missed);
    run the kinds in KINDS order (each in collection order)."""
    for item in items:
        if KAFKA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)
    items.sort(key=_kind)


def _kind(item: pytest.Item) -> int:
    try:
        return KINDS.index(item.path.relative_to(TESTS).parts[0])
    except (ValueError, IndexError):
        return len(KINDS)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's Kafka broker, started on first use and stopped at the end (see tests/kafka_broker.py).
    Never skipped: with no broker to be had, every Kafka test fails saying why."""
    try:
        with session_broker(tmp_path_factory.mktemp("kafka")) as broker:
            yield broker
    except NoBroker as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """``host:port`` of the session's broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def throwaway_kafka(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own (scripts/kafka-local), stopped after it."""
    broker = LocalBroker(tmp_path / "kafka")
    try:
        broker.start()
    except NoBroker as exc:
        pytest.fail(str(exc), pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture
def local_kafka(kafka_broker: Broker, request: pytest.FixtureRequest) -> Iterator[LocalBroker]:
    """A broker the test may stop and restart: the session's own when it runs locally (running
    again after the test), else a throwaway one."""
    if kafka_broker.local is None:
        yield request.getfixturevalue("throwaway_kafka")
        return
    yield kafka_broker.local
    if not kafka_broker.local.running:
        kafka_broker.local.start()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 (tests/local_server.py): it records every request."""
    rec = Receiver()
    async with serving(rec.handle) as rec.url:
        yield rec


@pytest.fixture
def engine() -> tuple[str, str]:
    """The engine ``start_engine`` runs, and the broker's address for the Kafka engine: the embedded
    engine here; tests/engines/conftest.py's ``engine`` runs each test there against both."""
    return "embedded", ""


@pytest.fixture
async def start_engine(engine: tuple[str, str], tmp_path: Path, receiver: Receiver) -> AsyncIterator[StartEngine]:
    """Start the engine under test (embedded, or Kafka: ingress and worker processes on the
    session's broker, topics of their own) with ``rules_yaml`` routes to ``receiver``."""
    kind, bootstrap = engine
    running: list[Running] = []

    async def start(rules: str | None = None, **overrides: Any) -> Running:
        """The engine with ``rules`` (default: :func:`engines.rules_yaml` for the receiver) and settings overrides."""
        routes = tmp_path / "routes"
        routes.mkdir(exist_ok=True)
        (routes / "rules.yaml").write_text(rules or rules_yaml(receiver.url))
        if kind == "kafka":
            run: Running = await start_kafka(tmp_path, bootstrap, routes, **overrides)
        else:
            run = await start_embedded(tmp_path, routes, **overrides)
        running.append(run)
        return run

    yield start
    for run in running:
        await run.stop()
