"""A real ingress for the tests: the app on 127.0.0.1 over a real SQLite log, in the test's event
loop. Fixtures ``start_ingress`` (any settings, optionally a clock) and ``ingress`` (the defaults:
every provider, no authentication); registered by tests/conftest.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from smsroute.config import load_settings
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.ingress.app import create_app
from smsroute.models.raw import RawEvent
from smsroute.providers import build_receivers


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

    async def request(self, method: str, target: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        """Any method, to ``target`` (path and query) sent as given, already percent-encoded."""
        url = URL(self.url + target, encoded=True)
        async with self.http.request(method, url, **kwargs) as response:
            return response.status, await response.text(), response


StartIngress = Callable[..., Awaitable[Ingress]]


@pytest.fixture
async def start_ingress(tmp_path: Path) -> AsyncIterator[StartIngress]:
    """Start an ingress with the given settings (``ingress={...}`` etc.) and, with ``clock=``, the
    clock its requests are received by (nanoseconds since the epoch); stopped after the test."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(*, clock: Callable[[], int] | None = None, **overrides: Any) -> Ingress:
        settings = load_settings(data_dir=tmp_path / f"data{len(cleanups)}", **overrides)
        receivers = build_receivers(settings)
        event_log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        event_log.start()
        runner = web.AppRunner(create_app(settings, receivers, event_log, clock=clock or time.time_ns))
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
