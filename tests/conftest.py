"""Shared fixtures: a real ingress server on 127.0.0.1 backed by a real SQLite log, and a real
Kafka broker for the tests marked ``kafka`` (every test that uses a Kafka fixture is)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kafka_broker import Broker, LocalBroker, NoBroker, session_broker
from smsroute.config import load_settings
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.ingress.app import create_app
from smsroute.models.raw import RawEvent
from smsroute.providers import build_receivers

KAFKA_FIXTURES = {"kafka_broker", "kafka_bootstrap", "local_kafka", "throwaway_kafka"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a broker ``kafka``, before ``-m`` selects (so none can be missed)."""
    for item in items:
        if KAFKA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


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
def engine() -> tuple[str, str]:
    """The engine ``start_engine`` runs: embedded here; ``test_pipeline``'s ``engine`` runs both
    (test modules that import it run their tests against each)."""
    return "embedded", ""


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


@dataclass
class Ingress:
    """A running ingress: its base URL, its log, and an HTTP client session."""

    url: str
    log: SQLiteLog
    http: aiohttp.ClientSession

    def events(self) -> list[RawEvent]:
        return [RawEvent.decode(record) for _, _, record in self.log.read(limit=1_000_000)]

    async def post(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.post(self.url + path, **kwargs) as response:
            return response.status, await response.text(), response

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.url + path, **kwargs) as response:
            return response.status, await response.text(), response


StartIngress = Callable[..., Awaitable[Ingress]]


@pytest.fixture
async def start_ingress(tmp_path: Path) -> AsyncIterator[StartIngress]:
    """Start an ingress with the given settings (``ingress={...}`` etc.); stopped after the test."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(**overrides: Any) -> Ingress:
        settings = load_settings(data_dir=tmp_path / f"data{len(cleanups)}", **overrides)
        receivers = build_receivers(settings)
        event_log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        event_log.start()
        runner = web.AppRunner(create_app(settings, receivers, event_log))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        http = aiohttp.ClientSession()

        async def stop() -> None:
            await http.close()
            await runner.cleanup()
            event_log.stop()

        cleanups.append(stop)
        return Ingress(f"http://127.0.0.1:{port}", event_log, http)

    yield start
    for stop in reversed(cleanups):
        await stop()


@pytest.fixture
async def ingress(start_ingress: StartIngress) -> Ingress:
    """An ingress with the default configuration: every provider, no authentication."""
    return await start_ingress()
