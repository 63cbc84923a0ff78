"""Text from the outside world, made safe to store and log."""

from __future__ import annotations


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (from a ``\\ud800`` escape): no UTF-8 can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str) -> str:
    """``text`` safe to store and log: lone surrogates shown as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if has_surrogate(text) else text
