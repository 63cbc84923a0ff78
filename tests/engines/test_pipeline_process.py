"""``smsroute serve`` runs its processing half in a child process: one ``/metrics`` for both, and
neither outlives the other."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine_process import ROUTES, EngineProcess, form
from helpers import eventually
from smsroute.metrics import exposition
from smsroute.rules import load_rules

TIMEOUT = 20.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting to be reaped by whoever adopted it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def samples(
    http: aiohttp.ClientSession, engine: EngineProcess
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(engine.url + "/metrics") as response:
        text = await response.text()
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), "a metric family is exported twice"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def started(tmp_path: Path, http: aiohttp.ClientSession) -> EngineProcess:
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.stderr")
    await engine.wait_healthy(http)
    await eventually(lambda: bool(children(engine.process.pid)), TIMEOUT, "no processing process", interval=0.1)
    return engine


async def test_one_metrics_endpoint_reports_both_processes(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    engine = await started(tmp_path, http)
    try:
        async with http.post(engine.url + "/inbound/agiletelecom", data=form("INFO opening hours")) as response:
            assert (response.status, await response.text()) == (200, "+OK")

        async def routed() -> bool:
            return (await samples(http, engine)).get(("smsroute_messages_routed_total", (("route", "info"),))) == 1

        await eventually(routed, TIMEOUT, interval=0.1)
        found = await samples(http, engine)
        accepted = (("outcome", "accepted"), ("source", "agiletelecom"))
        assert found[("smsroute_ingress_requests_total", accepted)] == 1, "the ingress's own metrics are missing"
        assert found[("smsroute_rules_routes", ())] == len(load_rules(ROUTES).routes), "a gauge counted twice"
        assert found[("process_cpu_seconds_total", ())] > 0
    finally:
        engine.process.send_signal(signal.SIGTERM)
        assert engine.process.wait(timeout=TIMEOUT) == 0, engine.stderr()


async def test_processing_process_stops_when_the_ingress_is_killed(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    engine = await started(tmp_path, http)
    [child] = children(engine.process.pid)
    engine.kill()
    await eventually(lambda: gone(child), TIMEOUT, "the processing process outlived the ingress", interval=0.1)


async def test_engine_exits_with_an_error_when_its_processing_process_dies(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    engine = await started(tmp_path, http)
    try:
        [child] = children(engine.process.pid)
        os.kill(child, signal.SIGKILL)
        assert engine.process.wait(timeout=TIMEOUT) == 1
        assert "the processing process exited with status -9" in engine.stderr()
    finally:
        engine.kill()


def test_exposition_adds_the_other_processes_samples() -> None:
    other = (
        "# TYPE smsroute_messages_unrouted_total counter\n"
        "smsroute_messages_unrouted_total 3.0\n"
        "# TYPE smsroute_test_only_elsewhere gauge\n"
        'smsroute_test_only_elsewhere{kind="x"} 7.0\n'
    )
    ours = {f.name: f for f in text_string_to_metric_families(exposition().decode())}
    merged = {f.name: f for f in text_string_to_metric_families(exposition([other]).decode())}
    [before] = ours["smsroute_messages_unrouted"].samples
    [after] = merged["smsroute_messages_unrouted"].samples
    assert after.value == before.value + 3
    assert merged["smsroute_test_only_elsewhere"].samples[0].labels == {"kind": "x"}
