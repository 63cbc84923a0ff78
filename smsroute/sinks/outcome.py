"""One delivery attempt and what follows from it, the same whichever engine keeps the state:
the sink is called (or the missing sink reported), the outcome is judged against the route's
retry schedule, counted and logged. The engine records the verdict its own way."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from .. import metrics
from ..models.attempt import Attempt
from ..models.delivery import Delivery
from ..models.text import has_surrogate, printable
from .retry import next_delay

log = logging.getLogger("smsroute.sinks")

Sender = Callable[[Delivery], Awaitable[Attempt]]


@dataclass(frozen=True, slots=True)
class Verdict:
    attempt: Attempt
    number: int
    """1-based within the delivery's round."""
    next: Literal["done", "retry", "dead_letter"]
    """done: delivered, or suppressed by a guard: final either way."""
    next_at: float | None
    at: float


async def attempt_once(senders: Mapping[str, Sender], delivery: Delivery, number: int) -> Verdict:
    """Try ``delivery`` once (its ``number``-th try) and judge the outcome."""
    sender = senders.get(delivery.sink)
    if sender is None:
        attempt = Attempt("failed", None, f"no {delivery.sink} sink is configured", 0.0, code="no_sink", permanent=True)
    else:
        try:
            attempt = await sender(delivery)
        except Exception as exc:  # a bug in a sink: a failed attempt, retried on schedule, never a stuck delivery
            log.exception(
                "delivery attempt crashed",
                extra={"event": "delivery_crashed", "delivery_id": delivery.id, "message_id": delivery.message_id},
            )
            attempt = Attempt("failed", None, f"{type(exc).__name__}: {exc}", 0.0, code="error")
    return judge(delivery, number, attempt)


def judge(delivery: Delivery, number: int, attempt: Attempt) -> Verdict:
    """Delivered, suppressed, due again after the route's next delay, or dead; counted and logged."""
    now = time.time()
    sink = delivery.sink
    if has_surrogate(attempt.error):  # quoted from a receiver's answer: stored and logged as escapes
        attempt = replace(attempt, error=printable(attempt.error))
    _attempt_seconds(sink).observe(attempt.duration)
    next_at = None
    if attempt.outcome == "delivered":
        outcome = "delivered"
        _end_to_end_seconds(sink).observe(now - delivery.received_at)
    elif attempt.outcome == "suppressed":
        outcome = "suppressed"
        _log(logging.INFO, f"delivery suppressed: {attempt.error}", delivery, number, outcome)
    else:
        delay = (
            None if attempt.permanent else next_delay(delivery.action["retry"]["delays"], number, attempt.retry_after)
        )
        next_at = None if delay is None else now + delay
        outcome = "retry" if next_at is not None else "dead_letter"
        if next_at is None:
            reason = (
                "no_sink" if attempt.code == "no_sink" else "permanent" if attempt.permanent else "attempts_exhausted"
            )
            metrics.DEAD_LETTERS.labels("deliver", reason).inc()
        else:
            metrics.DELIVERY_RETRIES.labels(sink, attempt.code).inc()
        _log(
            logging.WARNING if next_at is None else logging.INFO,
            f"delivery attempt failed: {attempt.error}",
            delivery,
            number,
            outcome,
        )
    _deliveries(sink, outcome).inc()
    next_step = "done" if outcome in ("delivered", "suppressed") else outcome
    return Verdict(attempt, number, next_step, next_at, now)  # type: ignore[arg-type]


def _log(level: int, text: str, delivery: Delivery, number: int, outcome: str) -> None:
    log.log(
        level,
        text,
        extra={
            "event": "delivery_suppressed" if outcome == "suppressed" else "delivery_failed",
            "delivery_id": delivery.id,
            "message_id": delivery.message_id,
            "route": delivery.route,
            "sink": delivery.sink,
            "attempt": number,
            "outcome": outcome,
        },
    )


_attempt_seconds = functools.cache(metrics.DELIVERY_ATTEMPT_SECONDS.labels)
_end_to_end_seconds = functools.cache(metrics.END_TO_END_SECONDS.labels)
_deliveries = functools.cache(metrics.DELIVERIES.labels)
