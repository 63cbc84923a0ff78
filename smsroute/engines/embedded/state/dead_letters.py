"""Dead letters: what could not be processed or delivered, with the reason, until replayed."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ....models.dead_letter import DeadLetter

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    delivery_id TEXT,
    created_at REAL NOT NULL,
    replayed_at REAL
);
CREATE INDEX IF NOT EXISTS dead_letters_waiting ON dead_letters (stage) WHERE replayed_at IS NULL;
"""


class DeadLetters:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, letters: list[DeadLetter], now: float) -> None:
        self.conn.executemany(
            "INSERT INTO dead_letters (stage, reason, payload, delivery_id, created_at) VALUES (?, ?, ?, ?, ?)",
            [(letter.stage, letter.reason, letter.payload, letter.delivery_id, now) for letter in letters],
        )

    def waiting(self) -> dict[str, int]:
        """Dead letters not replayed yet, by stage."""
        rows = self.conn.execute("SELECT stage, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY stage")
        return dict(rows.fetchall())

    def all(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT id, stage, reason, delivery_id, created_at, replayed_at, payload FROM dead_letters"
            + ("" if include_replayed else " WHERE replayed_at IS NULL")
            + " ORDER BY id"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def replay_deliveries(self, ids: list[int] | None, now: float | None = None) -> int:
        """Make dead deliveries due again with a fresh set of retries (all, or those of the dead letter
        ``ids``); returns how many. Call it inside :meth:`State.transaction`."""
        now = time.time() if now is None else now
        where = "stage = 'deliver' AND replayed_at IS NULL"
        params: list[Any] = []
        if ids is not None:
            where += f" AND id IN ({', '.join('?' * len(ids))})"
            params = list(ids)
        letters = self.conn.execute(f"SELECT id, delivery_id FROM dead_letters WHERE {where}", params).fetchall()
        self.conn.executemany(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ? WHERE id = ? AND state = 'dead'",
            [(now, delivery_id) for _, delivery_id in letters],
        )
        self.conn.executemany(
            "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", [(now, letter_id) for letter_id, _ in letters]
        )
        return len(letters)
