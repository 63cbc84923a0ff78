"""What an engine, or a half of one, is to whoever runs it, and the one loop that runs it.

Both engines and their parts (the embedded engine and its processing half, the Kafka ingress)
are a :class:`Service`: started, run until told to stop (or until a part of it fails), closed.
:func:`serve` is how every command runs one."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from .. import gc_tuning
from ..aio import on_stop_signals

log = logging.getLogger("smsroute")


class Service(Protocol):
    async def start(self) -> None:
        """Open what it needs and start serving; raises when it cannot (nothing is left running)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, or until a part of it fails (raised)."""

    async def close(self) -> None:
        """Finish what is in flight, then release everything."""


async def serve(service: Service) -> None:
    """Start ``service``, run it until SIGINT or SIGTERM (or its failure), close it."""
    stop = asyncio.Event()
    await service.start()
    gc_tuning.settle()
    on_stop_signals(stop.set)
    try:
        await service.run(stop)
    finally:
        log.info("stopping", extra={"event": "stopping"})
        await service.close()
