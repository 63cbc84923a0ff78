"""The small store interfaces the processing core keeps its state behind.

Each engine provides them: SQLite tables inside the processing transaction (embedded engine),
Faust tables (Kafka engine), plain dicts (unit tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

V = TypeVar("V")


class Store(Protocol[V]):
    """A mapping from string keys, enough for dedupe keys and pending parts."""

    def get(self, key: str) -> V | None: ...

    def __setitem__(self, key: str, value: V) -> None: ...

    def __delitem__(self, key: str) -> None: ...


class TimedStore(Store[V], Protocol[V]):
    """A store that also finds the keys first written before a moment (for expiry and timeouts)."""

    def older_than(self, moment: float) -> Iterable[str]: ...

    def forget_before(self, moment: float) -> None:
        """Delete every key first written before ``moment``."""
        ...


class MemoryStore(dict[str, V]):
    """A dict-backed :class:`TimedStore`; values carry their own first-seen time via ``stamp``."""

    def __init__(self, stamp: Callable[[V], float]) -> None:
        super().__init__()
        self._stamp = stamp

    def older_than(self, moment: float) -> list[str]:
        return [key for key, value in self.items() if self._stamp(value) < moment]

    def forget_before(self, moment: float) -> None:
        for key in self.older_than(moment):
            del self[key]
