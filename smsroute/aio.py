"""Small asyncio helpers shared by the engine's loops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGINT or SIGTERM: the process stops cleanly, finishing what is in flight."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)
