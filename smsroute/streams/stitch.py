"""Stitch: concatenated parts joined in part order, whatever order they arrive in.

A message still missing parts after the timeout is released with what arrived, flagged
incomplete (unless the policy is to drop it, which is counted and dead-lettered by the caller)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .. import metrics
from ..models.message import InboundMessage
from ..models.part import Part
from .state import TimedStore

DEFAULT_TIMEOUT = 300.0


@dataclass(slots=True)
class Pending:
    """The parts of one concatenated message received so far, by 1-based index."""

    first_seen: float
    parts: dict[int, Part] = field(default_factory=dict)


class Stitcher:
    def __init__(self, pending: TimedStore[Pending], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.pending = pending
        self.timeout = timeout

    def add(self, part: Part, now: float) -> InboundMessage | None:
        """The whole message once ``part`` completes it (or is a whole SMS), else None.

        A part index already held is a duplicate: dropped (returns None) and counted."""
        if part.concat is None or part.concat.total <= 1:
            return assemble([part], complete=True)
        key = part.stitch_key
        group = self.pending.get(key) or Pending(first_seen=now)
        if part.concat.index in group.parts:
            metrics.PARTS_DUPLICATE.labels(part.provider).inc()
            return None
        group.parts[part.concat.index] = part
        if len(group.parts) == part.concat.total:
            del self.pending[key]
            return assemble([group.parts[index] for index in sorted(group.parts)], complete=True)
        self.pending[key] = group
        return None

    def due(self, now: float) -> list[str]:
        """The keys of messages that waited longer than the timeout for their missing parts."""
        return list(self.pending.older_than(now - self.timeout))

    def release(self, key: str) -> InboundMessage | None:
        """The message of ``key`` with the parts that arrived, flagged incomplete; None when it is
        no longer waiting."""
        group = self.pending.get(key)
        if group is None:
            return None
        del self.pending[key]
        return assemble([group.parts[index] for index in sorted(group.parts)], complete=False)


def assemble(parts: list[Part], complete: bool) -> InboundMessage:
    """One message from its parts, in order. Its id derives from the parts' dedupe keys, so it is
    the same whichever engine, restart or arrival order produced it."""
    first = parts[0]
    digest = hashlib.sha256("\x1f".join([first.provider, *(part.dedupe_key for part in parts)]).encode())
    flags = dict.fromkeys(flag for part in parts for flag in part.flags)
    if not complete:
        flags["incomplete"] = None
    total = first.concat.total if first.concat else 1
    return InboundMessage(
        id=digest.hexdigest()[:32],
        provider=first.provider,
        source=first.source,
        sender=first.sender,
        recipient=first.recipient,
        text="".join(part.text for part in parts),
        received_at=min(part.received_at for part in parts),
        provider_message_ids=tuple(part.provider_message_id for part in parts if part.provider_message_id),
        provider_time=first.provider_time,
        parts=total,
        complete=complete,
        encoding=first.encoding,
        flags=tuple(flags),
        media=tuple(item for part in parts for item in part.media),
        extra={
            **first.extra,
            **({"parts_received": [p.concat.index for p in parts if p.concat]} if not complete else {}),
        },
    )
