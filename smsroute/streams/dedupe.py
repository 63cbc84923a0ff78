"""Dedupe: a provider retry must never produce a second delivery."""

from __future__ import annotations

from .state import TimedStore

DEFAULT_WINDOW = 48 * 3600.0
"""Covers every provider's retry span (Vonage 24 h, Kaleyra about 21 h) with room to spare."""


class Dedupe:
    """Remembers each part's dedupe key for ``window`` seconds after it was first seen."""

    def __init__(self, seen: TimedStore[float], window: float = DEFAULT_WINDOW) -> None:
        self.seen = seen
        self.window = window

    def is_retry(self, key: str, now: float) -> bool:
        """True when ``key`` was seen inside the window; otherwise remember it and say False."""
        first = self.seen.get(key)
        if first is not None and now - first < self.window:
            return True
        self.seen[key] = now
        return False

    def expire(self, now: float) -> None:
        """Forget the keys first seen before the window: their retries are over."""
        self.seen.forget_before(now - self.window)
