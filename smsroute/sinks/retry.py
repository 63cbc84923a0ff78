"""When to try a delivery again: the route's delays, spread by jitter, stretched by Retry-After."""

from __future__ import annotations

import random
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

JITTER = 0.2
"""Each delay is spread by +-20 % so the retries of a burst do not arrive together."""
RETRY_AFTER_MAX = 3600.0
"""A receiver's Retry-After is honoured up to an hour: longer would stall a message for nothing."""


def next_delay(delays: Sequence[float], failed: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next try after ``failed`` failed tries; None when the retries are used up."""
    if failed > len(delays):
        return None
    delay = delays[failed - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_MAX))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
