"""kill -9 while messages are being delivered: after a restart on the same data directory, every
message answered ``+OK`` reaches the webhook receiver, and the only repeats are deliveries that were
in flight at the kill, each with the webhook-id of its first try (so the receiver can drop it).

The engine runs as its own process (``python -m smsroute serve``) so that SIGKILL is a real crash;
the receiver is a real aiohttp server in the test process, answering 204.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from engine_process import EngineProcess as Engine
from engine_process import form
from helpers import eventually
from local_server import serving
from smsroute.config import Settings

PATH = "/inbound/agiletelecom"
TOTAL = 3000
IN_FLIGHT = 64
STOP_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 60.0
PER_DESTINATION = Settings.model_fields["per_destination"].default
"""The most attempts to one receiver the engine has in flight: the most a crash can leave unrecorded."""


@dataclass
class Request:
    webhook_id: str
    text: str
    at: float
    """``time.monotonic()`` when the body had been read."""


@dataclass
class Receiver:
    url: str = ""
    requests: list[Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(Request(request.headers["webhook-id"], json.loads(body)["text"], time.monotonic()))
        return web.Response(status=204)

    def texts(self) -> set[str]:
        return {r.text for r in self.requests}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serving(rec.handle) as rec.url:
        yield rec


def write_rules(routes: Path, receiver: Receiver) -> Path:
    routes.mkdir()
    (routes / "rules.yaml").write_text(f"""
routes:
  - name: inbox
    actions:
      - webhook: {{url: "{receiver.url}/inbox", retry: {{schedule: [0.2, 0.5, 1]}}}}
""")
    return routes


@dataclass
class Burst:
    acked: set[str] = field(default_factory=set)
    failed: int = 0
    unsent: int = 0
    killed_at: float = 0.0
    delivered_at_kill: int = 0


async def post(
    http: aiohttp.ClientSession, engine: Engine, receiver: Receiver, texts: list[str], kill_after: int | None = None
) -> Burst:
    """Post ``texts``, ``IN_FLIGHT`` at a time; SIGKILL the engine once ``kill_after`` are acknowledged
    and deliveries have begun to reach the receiver. Past ``kill_after``, sending waits for the first
    delivery (on a loaded machine the ingress may otherwise take every text before one is delivered),
    so the kill always falls mid-stream and mid-delivery."""
    burst = Burst()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def send(text: str) -> None:
        async with slots:
            if kill_after is not None and len(burst.acked) >= kill_after:
                await eventually(lambda: bool(receiver.requests), 60, "no delivery began")
            if burst.killed_at:
                burst.unsent += 1
                return
            try:
                async with http.post(engine.url + PATH, data=form(text)) as response:
                    answer = (response.status, await response.text())
            except aiohttp.ClientError:
                burst.failed += 1
                return
            assert answer == (200, "+OK"), f"{text}: {answer}"
            burst.acked.add(text)
            if kill_after is not None and not burst.killed_at and len(burst.acked) >= kill_after and receiver.requests:
                os.kill(engine.process.pid, signal.SIGKILL)
                burst.killed_at = time.monotonic()
                burst.delivered_at_kill = len(receiver.requests)

    await asyncio.gather(*(send(text) for text in texts))
    return burst


def undelivered(state_db: Path) -> int:
    """Deliveries the engine's state does not record as delivered."""
    with closing(sqlite3.connect(state_db)) as conn:
        return conn.execute("SELECT count(*) FROM deliveries WHERE state != 'delivered'").fetchone()[0]


async def test_kill_9_while_delivering_loses_nothing_and_repeats_only_in_flight(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    routes = write_rules(tmp_path / "routes", receiver)
    texts = [f"crash-{n:06d}" for n in range(TOTAL)]
    kill_after = random.randint(900, 1100)
    engines: list[Engine] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT), timeout=timeout) as http:
        try:
            engines.append(engine := Engine(data_dir, tmp_path / "engine.stderr", routes))
            await engine.wait_healthy(http)
            burst = await post(http, engine, receiver, texts, kill_after)
            assert engine.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGKILL
            assert 0 < burst.delivered_at_kill < len(burst.acked), "the kill was not mid-delivery"
            assert burst.failed + burst.unsent > 0, (
                "the kill was not mid-stream"
            )  # a group commit may answer every request in flight at once
            first_run = len(receiver.requests)

            restarted_at = time.monotonic()
            engines.append(engine := Engine(data_dir, tmp_path / "engine.stderr", routes))
            await engine.wait_healthy(http)
            # The rest, and again those whose answer the crash cut off: logged or not, each arrives once.
            rest = [text for text in texts if text not in burst.acked]
            assert (await post(http, engine, receiver, rest)).acked == set(rest)
            await eventually(
                lambda: receiver.texts() == set(texts),
                DELIVERY_TIMEOUT,
                lambda: (
                    f"{len(set(texts) - receiver.texts())} acknowledged never delivered, e.g. "
                    f"{sorted(set(texts) - receiver.texts())[:5]} (the kill was after {len(burst.acked)})"
                ),
                interval=0.05,
            )
            caught_up = time.monotonic() - restarted_at
            # Repeats (deliveries in flight at the kill, sent again) are over once every delivery is final.
            await eventually(lambda: undelivered(data_dir / "state.db") == 0, STOP_TIMEOUT, interval=0.05)
            engine.process.send_signal(signal.SIGTERM)
            assert engine.process.wait(timeout=STOP_TIMEOUT) == 0, engine.stderr()
        finally:
            for running in engines:
                running.kill()

    requests = receiver.requests
    per_id = Counter(r.webhook_id for r in requests)
    repeated = {webhook_id for webhook_id, count in per_id.items() if count > 1}
    just_before = sum(burst.killed_at - 0.05 <= r.at <= burst.killed_at for r in requests)
    print(
        f"\nkilled after {len(burst.acked)} acks (target {kill_after}), {burst.failed} failed, {burst.unsent} unsent;"
        f" {burst.delivered_at_kill} delivered at the kill, {first_run} by the first engine,"
        f" {just_before} in the 50 ms before it; all {TOTAL} delivered {caught_up:.2f} s after the restart;"
        f" {len(requests)} requests, {len(per_id)} webhook-ids, {len(repeated)} repeated"
        f" (bound: {PER_DESTINATION} in flight per destination)"
    )

    lost = burst.acked - receiver.texts()
    assert not lost, f"{len(lost)} acknowledged before the kill never delivered, e.g. {sorted(lost)[:5]}"
    assert receiver.texts() == set(texts), f"{len(set(texts) - receiver.texts())} acknowledged after it never delivered"
    ids_per_text: dict[str, set[str]] = {}
    for r in requests:
        ids_per_text.setdefault(r.text, set()).add(r.webhook_id)
    assert all(len(ids) == 1 for ids in ids_per_text.values()), "a message delivered under two webhook-ids"
    assert len(repeated) <= PER_DESTINATION, f"{len(repeated)} repeats: more than could have been in flight"
    assert all(count == 2 for count in (per_id[i] for i in repeated)), "a delivery repeated more than once"
    first_tries = {r.webhook_id: r.at for r in reversed(requests)}
    assert all(first_tries[i] < restarted_at for i in repeated), "a repeat of a delivery not sent before the kill"
    assert undelivered(data_dir / "state.db") == 0
