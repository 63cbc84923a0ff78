"""The durable log of raw events: the ingress appends, the processors read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LogUnavailable(Exception):
    """The log could not make the events durable; the provider must be told to retry (503)."""


class EventLog(Protocol):
    """What the ingress needs from a log: append returns only once the records are durable."""

    async def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Durably append ``(key, record)`` pairs, or raise :class:`LogUnavailable`."""

    @property
    def ready(self) -> bool:
        """True while appends are expected to succeed (drives ``/readyz``)."""
