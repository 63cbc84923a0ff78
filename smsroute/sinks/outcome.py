"""One delivery attempt and what follows from it, the same whichever engine keeps the state:
the sink is called (or the missing sink reported), the outcome is judged against the route's
retry schedule, counted and logged. The engine records the verdict its own way."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from .. import metrics
from .delivery import Delivery
from .retry import next_delay
from .webhook import Attempt

log = logging.getLogger("smsroute.sinks")

Sender = Callable[[Delivery], Awaitable[Attempt]]


@dataclass(frozen=True, slots=True)
class Verdict:
    attempt: Attempt
    number: int
    """1-based within the delivery's round."""
    next: Literal["done", "retry", "dead_letter"]
    next_at: float | None
    at: float


async def attempt_once(senders: Mapping[str, Sender], delivery: Delivery, number: int) -> Verdict:
    """Try ``delivery`` once (its ``number``-th try) and judge the outcome."""
    sender = senders.get(delivery.sink)
    if sender is None:
        return judge(delivery, number, Attempt("failed", None, f"no {delivery.sink} sink is configured", 0.0), final=True)
    return judge(delivery, number, await sender(delivery))


def judge(delivery: Delivery, number: int, attempt: Attempt, final: bool = False) -> Verdict:
    """Delivered, due again after the route's next delay, or dead; counted and logged."""
    now = time.time()
    sink = delivery.sink
    metrics.DELIVERY_ATTEMPT_SECONDS.labels(sink).observe(attempt.duration)
    next_at = None
    if attempt.outcome == "delivered":
        outcome = "delivered"
        metrics.END_TO_END_SECONDS.labels(sink).observe(now - delivery.received_at)
    else:
        delay = None if final else next_delay(delivery.action["retry"]["delays"], number, attempt.retry_after)
        next_at = None if delay is None else now + delay
        outcome = "retry" if next_at is not None else "dead_letter"
        if next_at is None:
            metrics.DEAD_LETTERS.labels("deliver", "attempts_exhausted" if not final else "no_sink").inc()
        log.log(
            logging.WARNING if next_at is None else logging.INFO,
            f"delivery attempt failed: {attempt.error}",
            extra={
                "event": "delivery_failed",
                "delivery_id": delivery.id,
                "message_id": delivery.message_id,
                "route": delivery.route,
                "sink": sink,
                "attempt": number,
                "outcome": outcome,
            },
        )
    metrics.DELIVERIES.labels(sink, outcome).inc()
    return Verdict(attempt, number, "done" if outcome == "delivered" else outcome, next_at, now)  # type: ignore[arg-type]
