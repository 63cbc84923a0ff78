"""Reading a running engine's ``/metrics`` in tests: every sample by (name, labels), one sample's
value, and waiting until samples have moved by given amounts (metrics are process-wide, so tests
compare with a scrape taken before)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from helpers import eventually

if TYPE_CHECKING:
    from engines import Running

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(run: Running) -> Metrics:
    """The samples of the processes that process and deliver (the Kafka engine: its worker)."""
    return await scrape_url(run.http, run.metrics_url)


async def scrape_url(http: aiohttp.ClientSession, url: str) -> Metrics:
    async with http.get(url) as response:
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


async def moved(run: Running, before: Metrics, *expected: tuple[str, dict[str, str], float]) -> None:
    """Scrape until every (name, labels, increase) has happened, exactly: metrics are process-wide, so deltas."""
    actual: list[float] = []

    async def all_moved() -> bool:
        metrics = await scrape(run)
        actual[:] = [value(metrics, name, **labels) - value(before, name, **labels) for name, labels, _ in expected]
        return actual == [delta for _, _, delta in expected]

    await eventually(all_moved, 30, lambda: f"metrics moved by {actual}, expected {expected}")
