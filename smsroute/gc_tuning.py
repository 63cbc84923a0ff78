"""The cyclic garbage collector, set for a long-running engine process.

Start-up builds tens of thousands of objects that live as long as the process (phone number
metadata, the rules, the aiohttp and Prometheus machinery), and every full collection walked them
all again: about 50 ms with the event loop stopped, ten times in 24,000 messages in the processing
process. Once a process has started, :func:`settle` freezes them out of the collector's way. The
youngest generation is then collected after 10,000 new objects rather than 700: the objects a
message makes are freed by reference counting, and the collections that a burst triggered every
few messages found next to nothing (together 30 µs a message in the processing process)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Call once, when start-up is over: what exists then is kept for the process's life."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
