"""kill -9 in the middle of a burst: every message answered ``+OK`` survives, nothing is half-written.

The engine runs as its own process (``python -m smsroute serve``) so that SIGKILL is a real crash:
no ``finally``, no pending commit flushed. The log is then read cold from disk, and the engine is
restarted on the same data directory to show it reopens the log and keeps appending after it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp

from engine_process import EngineProcess as Engine
from engine_process import form
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.models.raw import RawEvent

PATH = "/inbound/agiletelecom"
TOTAL = 3000
IN_FLIGHT = 64
STOP_TIMEOUT = 10.0


@dataclass
class Burst:
    """What the client saw: texts answered ``+OK``, and how the crash showed up."""

    acked: set[str] = field(default_factory=set)
    failed: int = 0
    in_flight_at_kill: int = 0
    unsent: int = 0


async def post_until_killed(http: aiohttp.ClientSession, engine: Engine, texts: list[str], kill_after: int) -> Burst:
    """Post ``texts`` with ``IN_FLIGHT`` requests outstanding; SIGKILL the engine at ``kill_after`` acks."""
    burst = Burst()
    slots = asyncio.Semaphore(IN_FLIGHT)
    in_flight = 0
    killed = False

    async def send(text: str) -> None:
        nonlocal in_flight, killed
        async with slots:
            if killed:
                burst.unsent += 1
                return
            in_flight += 1
            try:
                async with http.post(engine.url + PATH, data=form(text)) as response:
                    answer = (response.status, await response.text())
            except aiohttp.ClientError:
                burst.failed += 1
                return
            finally:
                in_flight -= 1
            assert answer == (200, "+OK"), f"{text}: {answer}"
            burst.acked.add(text)
            if not killed and len(burst.acked) >= kill_after:
                killed = True
                burst.in_flight_at_kill = in_flight
                os.kill(engine.process.pid, signal.SIGKILL)

    await asyncio.gather(*(send(text) for text in texts))
    return burst


def read_log(path: Path) -> list[tuple[int, RawEvent]]:
    """Every row of the log, decoded (a half-written record raises ``DecodeError`` here)."""
    return [(offset, RawEvent.decode(record)) for offset, _, record in SQLiteLog(path).read(limit=1_000_000)]


def texts_of(rows: list[tuple[int, RawEvent]]) -> list[str]:
    return [parse_qs(event.body.decode())["text"][0] for _, event in rows]


async def test_kill_9_mid_burst_loses_no_acknowledged_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log_path = data_dir / "log.db"
    texts = [f"msg-{n:06d}" for n in range(TOTAL)]
    kill_after = random.randint(800, 1200)
    engines: list[Engine] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT), timeout=timeout) as http:
        try:
            engines.append(engine := Engine(data_dir, tmp_path / "engine.stderr"))
            await engine.wait_healthy(http)
            burst = await post_until_killed(http, engine, texts, kill_after)
            assert engine.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGKILL
            context = (
                f"killed after {kill_after} acks: {len(burst.acked)} acked, {burst.failed} failed, "
                f"{burst.in_flight_at_kill} in flight at kill, {burst.unsent} unsent"
            )
            # Requests were outstanding at the kill. Usually some of them fail; on a quick run all of
            # them may have been answered just before it, their answers read after it.
            assert burst.in_flight_at_kill > 0, f"the kill was not mid-stream ({context})"
            assert len(burst.acked) + burst.failed + burst.unsent == TOTAL, context

            before = read_log(log_path)
            logged = texts_of(before)
            assert burst.acked - set(logged) == set(), f"acknowledged but lost ({context})"
            assert len(logged) == len(set(logged)), f"duplicates in the log ({context})"
            assert set(logged) <= set(texts), f"texts nobody sent ({context})"
            offsets = [offset for offset, _ in before]
            assert offsets == sorted(set(offsets)), "offsets not strictly increasing"
            assert {(e.ingress, e.kind, e.key) for _, e in before} == {
                ("agiletelecom", "inbound", "agiletelecom:+393331234567:+393201234567")
            }

            engines.append(engine := Engine(data_dir, tmp_path / "engine.stderr"))
            await engine.wait_healthy(http)
            more = [f"after-{n:03d}" for n in range(20)]
            for text in more:
                async with http.post(engine.url + PATH, data=form(text)) as response:
                    assert (response.status, await response.text()) == (200, "+OK")
            engine.process.send_signal(signal.SIGTERM)
            assert engine.process.wait(timeout=STOP_TIMEOUT) == 0, engine.stderr()

            after = read_log(log_path)
            assert after[: len(before)] == before, "the restart changed what was already in the log"
            assert texts_of(after[len(before) :]) == more
            assert after[len(before)][0] > offsets[-1]
        finally:
            for running in engines:
                running.kill()
