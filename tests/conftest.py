"""Shared fixtures: a real ingress server on 127.0.0.1 backed by a real SQLite log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from smsroute.config import load_settings
from smsroute.eventlog.sqlite import SQLiteLog
from smsroute.events import RawEvent
from smsroute.ingress.app import create_app
from smsroute.ingress.providers import build_adapters


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
        adapters = build_adapters(settings)
        event_log = SQLiteLog(settings.data_dir / "log.db", busy_timeout=settings.log_busy_timeout)
        event_log.start()
        runner = web.AppRunner(create_app(settings, adapters, event_log))
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
