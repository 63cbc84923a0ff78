"""The opt-out list: numbers that sent STOP (or an alias of it) and get no auto-replies until START.

Changed while routing, in log order and inside the processing transaction, so a STOP always takes
effect before any message that followed it is answered. Read by the SMS reply sink when it sends."""

from __future__ import annotations

from dataclasses import dataclass

from .. import metrics
from ..rules.model import Compliance
from .state import Store


@dataclass(frozen=True, slots=True)
class OptOut:
    message_id: str
    """The message that opted the number out (kept for audits)."""
    at: float
    """When that message was received."""


class OptOuts:
    def __init__(self, store: Store[OptOut]) -> None:
        self.store = store

    def apply(self, compliance: Compliance, number: str, message_id: str, at: float) -> None:
        """What a compliance route does to the sender: ``stop`` opts out, ``start`` opts back in."""
        if compliance == "stop":
            if self.store.get(number) is None:
                self.store[number] = OptOut(message_id, at)
            metrics.OPT_OUTS.labels("stop").inc()
        elif compliance == "start":
            if self.store.get(number) is not None:
                del self.store[number]
            metrics.OPT_OUTS.labels("start").inc()

    def get(self, number: str) -> OptOut | None:
        return self.store.get(number)
