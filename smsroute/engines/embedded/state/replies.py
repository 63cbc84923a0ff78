"""The SMS reply ledger: every reply made, for the guards (one per message, rate limits) and for
linking delivery reports to it; its "sent" record is made durable before the attempt counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    delivery_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,  -- one reply per message, ever
    recipient TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_message_id TEXT,
    status TEXT NOT NULL,             -- sending, sent, delivered, failed
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS replies_recipient ON replies (recipient, created_at);
CREATE INDEX IF NOT EXISTS replies_provider_id ON replies (provider, provider_message_id);
"""


class Replies:
    """The :class:`~smsroute.sinks.sms_reply.ReplyLedger` of the embedded engine."""

    def __init__(self, conn: sqlite3.Connection, sync: Callable[[], None]) -> None:
        self.conn = conn
        self.sync = sync
        """Make the records so far survive a power loss (may run in a thread)."""

    def reply_for(self, message_id: str) -> tuple[str, str] | None:
        """The delivery that replies (or replied) to this message and its reply's status, if any."""
        row = self.conn.execute(
            "SELECT delivery_id, status FROM replies WHERE message_id = ?", (message_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def recent_replies(self, recipient: str, since: float) -> int:
        """Replies to ``recipient`` since ``since`` that may have reached it (refused ones do not count)."""
        row = self.conn.execute(
            "SELECT count(*) FROM replies WHERE recipient = ? AND created_at >= ? AND status != 'failed'",
            (recipient, since),
        ).fetchone()
        return int(row[0])

    def reserve(self, delivery_id: str, message_id: str, recipient: str, provider: str, now: float) -> None:
        """The reply is about to be sent: from now on it counts for the guards (a retry keeps its row)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO replies (delivery_id, message_id, recipient, provider, status, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 'sending', ?, ?)",
            (delivery_id, message_id, recipient, provider, now, now),
        )

    def sent(self, delivery_id: str, provider_message_id: str | None, now: float) -> None:
        self.conn.execute(
            "UPDATE replies SET status = 'sent', provider_message_id = ?, updated_at = ? WHERE delivery_id = ?",
            (provider_message_id, now, delivery_id),
        )

    def failed(self, delivery_id: str, now: float) -> None:
        self.conn.execute(
            "UPDATE replies SET status = 'failed', updated_at = ? WHERE delivery_id = ?", (now, delivery_id)
        )

    def all(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT delivery_id, message_id, recipient, provider, provider_message_id, status, created_at, updated_at"
            " FROM replies ORDER BY created_at"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
