"""One face for both engines in end-to-end tests: post to the ingress, read dead letters and
attempts, replay. The embedded engine runs in the test process; the Kafka engine as an ingress
process and a worker process on the session's broker (``kafka_engine``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kafka_engine import KafkaEngine
from smsroute.config import load_settings
from smsroute.engines.embedded.engine import Engine
from smsroute.engines.embedded.processing import InProcess
from smsroute.engines.kafka import deadletters
from smsroute.models.attempt import AttemptRecord
from smsroute.models.report import DeliveryReport
from smsroute.providers import build_receivers
from smsroute.rules import load_rules
from smsroute.rules.watch import RulesWatcher

ENGINES = ("embedded", "kafka")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""The opt-out route's webhook secret in :func:`rules_yaml`."""


def rules_yaml(url: str) -> str:
    """The routes ``start_engine`` runs by default, to a receiver at ``url``: STOP (and its alias
    ARRESTA) to a signed webhook, FLAKY and DEAD to webhooks retried quickly, the rest to /inbox."""
    return f"""
aliases:
  STOP: [ARRESTA]
routes:
  - name: opt-out
    match: {{keyword: STOP}}
    actions:
      - webhook: {{url: "{url}/optout", secret: "{SECRET}", retry: {{schedule: [0.2, 0.2, 0.2]}}}}
  - name: flaky
    match: {{keyword: FLAKY}}
    actions:
      - webhook: {{url: "{url}/flaky", retry: {{schedule: [0.2, 0.2, 0.2]}}}}
  - name: dead
    match: {{keyword: DEAD}}
    actions:
      - webhook: {{url: "{url}/dead", retry: {{schedule: [0.1, 0.1]}}}}
  - name: inbox
    actions:
      - webhook: {{url: "{url}/inbox"}}
"""


@dataclass
class Running:
    url: str
    """The ingress."""
    metrics_url: str
    """Where the processors' and sinks' metrics are (the Kafka engine: the worker)."""
    http: aiohttp.ClientSession
    rules_version: str

    async def post(self, path: str, **kwargs: Any) -> int:
        async with self.http.post(self.url + path, **kwargs) as response:
            await response.read()
            return response.status

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters not replayed: stage, reason, payload, delivery_id."""
        raise NotImplementedError

    async def attempt_outcomes(self, route: str) -> list[str]:
        """The outcomes of the attempts of the (one) delivery of ``route``, in order (none yet: empty)."""
        raise NotImplementedError

    async def replay(self) -> int:
        """Replay every dead delivery; how many."""
        raise NotImplementedError

    async def reports(self) -> list[DeliveryReport]:
        """The delivery reports the engine kept, in arrival order."""
        raise NotImplementedError

    async def stop(self) -> None:
        await self.http.close()


@dataclass
class EmbeddedRunning(Running):
    engine: Engine
    """Its processing half runs in this process (``engine.processing``), for tests to look into."""
    stop_event: asyncio.Event
    running: asyncio.Task[None]

    async def dead_letters(self) -> list[dict[str, Any]]:
        return self.engine.processing.state.dead_letters.all()

    async def attempt_outcomes(self, route: str) -> list[str]:
        state = self.engine.processing.state
        [(delivery_id,)] = state.conn.execute("SELECT id FROM deliveries WHERE route = ?", (route,)).fetchall()
        return [attempt["outcome"] for attempt in state.deliveries.attempts(delivery_id)]

    async def replay(self) -> int:
        state = self.engine.processing.state
        with state.transaction():
            replayed = state.dead_letters.replay_deliveries(None)
        self.engine.processing.dispatcher.wake()
        return replayed

    async def reports(self) -> list[DeliveryReport]:
        return [
            DeliveryReport(
                row["provider"],
                row["provider_message_id"],
                row["status"],
                row["code"],
                row["description"],
                row["recipient"],
                row["received_at"],
                row["provider_time"],
            )
            for row in self.engine.processing.state.reports.all()
        ]

    async def stop(self) -> None:
        await super().stop()
        self.stop_event.set()
        await self.running
        await self.engine.close()


@dataclass
class KafkaRunning(Running):
    kafka: KafkaEngine

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [
            {
                "stage": letter.stage,
                "reason": letter.reason,
                "payload": letter.payload,
                "delivery_id": letter.delivery_id,
            }
            for letter in await deadletters.latest(self.kafka.settings)
            if letter.replayed_at is None
        ]

    async def attempt_outcomes(self, route: str) -> list[str]:
        attempts = [AttemptRecord.decode(record.value) for record in await self.kafka.records("attempts")]
        ids = {attempt.delivery_id for attempt in attempts if attempt.route == route}
        assert len(ids) <= 1, f"route {route} has {len(ids)} deliveries"
        return [attempt.outcome for attempt in attempts if attempt.delivery_id in ids]

    async def replay(self) -> int:
        return await deadletters.replay(self.kafka.settings, None)

    async def reports(self) -> list[DeliveryReport]:
        return [DeliveryReport.decode(record.value) for record in await self.kafka.records("delivery_reports")]

    async def stop(self) -> None:
        await super().stop()
        self.kafka.stop()


StartEngine = Callable[..., Awaitable[Running]]
"""The ``start_engine`` fixture: ``await start_engine(rules=None, **settings)``."""


async def start_embedded(directory: Path, routes: Path, **overrides: Any) -> EmbeddedRunning:
    settings = load_settings(data_dir=directory / "data", routes=routes, port=0, default_region="IT", **overrides)
    processing = InProcess(settings, RulesWatcher(routes))
    engine = Engine(settings, build_receivers(settings), processing)
    await engine.start()
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    url = f"http://127.0.0.1:{engine.port}"
    return EmbeddedRunning(
        url, url + "/metrics", aiohttp.ClientSession(), processing.rules.rules.version, engine, stop, running
    )


async def start_kafka(directory: Path, bootstrap: str, routes: Path, **overrides: Any) -> KafkaRunning:
    kafka = KafkaEngine(directory / "kafka", bootstrap, routes, **overrides)
    ingress, worker = kafka.start_ingress(), kafka.start_worker()
    http = aiohttp.ClientSession()
    try:
        await kafka.wait_ready(http)
    except BaseException:
        await http.close()
        kafka.stop()
        raise
    return KafkaRunning(ingress.url, worker.metrics_url, http, load_rules(routes).version, kafka)
