"""The embedded engine's state in SQLite (``<data_dir>/state.db``): progress through the log,
dedupe keys, pending parts, deliveries with their attempts, and dead letters.

Processing a batch of raw events and recording what it produced is one transaction, so a crash
re-does a batch but never skips or doubles it. WAL with ``synchronous=NORMAL``: every commit
survives a process crash (``kill -9``); the raw log itself is fsynced on every commit."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sinks.delivery import DeadLetter, Delivery
from .parts import part_from_json, part_to_json
from .stitch import Pending

_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (consumer TEXT PRIMARY KEY, "offset" INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedupe (key TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dedupe_seen ON dedupe (seen);
CREATE TABLE IF NOT EXISTS pending_parts (key TEXT PRIMARY KEY, first_seen REAL NOT NULL, parts TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_first_seen ON pending_parts (first_seen);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    route TEXT NOT NULL,
    sink TEXT NOT NULL,
    destination TEXT NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    received_at REAL NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,            -- pending, sending, delivered, dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, destination, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,       -- within its round: a replay starts a new round at 1
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    duration REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    delivery_id TEXT,
    created_at REAL NOT NULL,
    replayed_at REAL
);
"""


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for an attempt."""

    delivery: Delivery
    attempts: int


class SQLiteStore:
    """A :class:`~smsroute.streams.state.TimedStore` of dedupe keys (value: first-seen time)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, key: str) -> float | None:
        row = self.conn.execute("SELECT seen FROM dedupe WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def __setitem__(self, key: str, seen: float) -> None:
        self.conn.execute("INSERT OR REPLACE INTO dedupe (key, seen) VALUES (?, ?)", (key, seen))

    def __delitem__(self, key: str) -> None:
        self.conn.execute("DELETE FROM dedupe WHERE key = ?", (key,))

    def older_than(self, moment: float) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT key FROM dedupe WHERE seen < ?", (moment,))]


class PendingStore:
    """A :class:`~smsroute.streams.state.TimedStore` of the parts of unfinished messages."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, key: str) -> Pending | None:
        row = self.conn.execute("SELECT first_seen, parts FROM pending_parts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        parts = {int(index): part_from_json(part) for index, part in json.loads(row[1]).items()}
        return Pending(first_seen=row[0], parts=parts)

    def __setitem__(self, key: str, pending: Pending) -> None:
        parts = json.dumps({index: part_to_json(part) for index, part in pending.parts.items()})
        self.conn.execute(
            "INSERT OR REPLACE INTO pending_parts (key, first_seen, parts) VALUES (?, ?, ?)",
            (key, pending.first_seen, parts),
        )

    def __delitem__(self, key: str) -> None:
        self.conn.execute("DELETE FROM pending_parts WHERE key = ?", (key,))

    def older_than(self, moment: float) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT key FROM pending_parts WHERE first_seen < ?", (moment,))]


class StateDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.dedupe = SQLiteStore(self.conn)
        self.pending = PendingStore(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- progress through the log ---------------------------------------------------------------

    def offset(self, consumer: str = "processor") -> int:
        row = self.conn.execute('SELECT "offset" FROM offsets WHERE consumer = ?', (consumer,)).fetchone()
        return row[0] if row else 0

    def set_offset(self, offset: int, consumer: str = "processor") -> None:
        self.conn.execute('INSERT OR REPLACE INTO offsets (consumer, "offset") VALUES (?, ?)', (consumer, offset))

    def forget_dedupe(self, before: float) -> None:
        """Drop dedupe keys first seen before ``before`` (outside the window)."""
        self.conn.execute("DELETE FROM dedupe WHERE seen < ?", (before,))

    # --- deliveries -----------------------------------------------------------------------------

    def add_deliveries(self, deliveries: list[Delivery], now: float) -> None:
        """New deliveries, due now. A delivery id already present (a re-done batch) is kept as is."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO deliveries (id, message_id, route, sink, destination, action, message,"
            " received_at, created_at, state, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
            [
                (
                    d.id, d.message_id, d.route, d.sink, d.destination, json.dumps(d.action),
                    d.body(), d.received_at, now, now,
                )
                for d in deliveries
            ],
        )

    def release_claims(self) -> int:
        """At start-up: deliveries a crash left mid-attempt are due again (at-least-once)."""
        return self.conn.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'sending'").rowcount

    def due_destinations(self, now: float) -> list[str]:
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT DISTINCT destination FROM deliveries WHERE state = 'pending' AND next_at <= ?", (now,)
            )
        ]

    def next_due(self) -> float | None:
        row = self.conn.execute("SELECT min(next_at) FROM deliveries WHERE state = 'pending'").fetchone()
        return row[0]

    def claim(self, destination: str, now: float, limit: int) -> list[Due]:
        """Up to ``limit`` due deliveries to ``destination``, oldest first, marked as being sent."""
        with self.transaction():
            rows = self.conn.execute(
                "SELECT id, message_id, route, sink, action, message, received_at, attempts FROM deliveries"
                " WHERE state = 'pending' AND destination = ? AND next_at <= ? ORDER BY next_at LIMIT ?",
                (destination, now, limit),
            ).fetchall()
            self.conn.executemany("UPDATE deliveries SET state = 'sending' WHERE id = ?", [(row[0],) for row in rows])
        return [
            Due(Delivery(row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), row[6]), row[7])
            for row in rows
        ]

    def finish(
        self,
        delivery_id: str,
        attempt: int,
        outcome: str,
        status: int | None,
        error: str,
        duration: float,
        now: float,
        next_at: float | None,
    ) -> None:
        """Record one attempt, and what follows: delivered, due again at ``next_at``, or dead."""
        state = "delivered" if outcome == "delivered" else ("pending" if next_at is not None else "dead")
        with self.transaction():
            self.conn.execute(
                "INSERT INTO attempts (delivery_id, attempt, at, outcome, status, error, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, attempt, now, outcome, status, error, duration),
            )
            self.conn.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                (state, attempt, next_at if next_at is not None else now, error, delivery_id),
            )
            if state == "dead":
                message = self.conn.execute("SELECT message FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
                self._dead_letter(DeadLetter("deliver", error, message[0].encode(), delivery_id), now)

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT attempt, at, outcome, status, error, duration FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    # --- dead letters ---------------------------------------------------------------------------

    def add_dead_letters(self, letters: list[DeadLetter], now: float) -> None:
        for letter in letters:
            self._dead_letter(letter, now)

    def _dead_letter(self, letter: DeadLetter, now: float) -> None:
        self.conn.execute(
            "INSERT INTO dead_letters (stage, reason, payload, delivery_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (letter.stage, letter.reason, letter.payload, letter.delivery_id, now),
        )

    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT id, stage, reason, delivery_id, created_at, replayed_at, payload FROM dead_letters"
            + ("" if include_replayed else " WHERE replayed_at IS NULL")
            + " ORDER BY id"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def replay_deliveries(self, ids: list[int] | None, now: float | None = None) -> int:
        """Make dead deliveries due again with a fresh set of retries; returns how many."""
        now = time.time() if now is None else now
        where = "stage = 'deliver' AND replayed_at IS NULL"
        params: list[Any] = []
        if ids is not None:
            where += f" AND id IN ({', '.join('?' * len(ids))})"
            params = list(ids)
        with self.transaction():
            letters = self.conn.execute(f"SELECT id, delivery_id FROM dead_letters WHERE {where}", params).fetchall()
            self.conn.executemany(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ? WHERE id = ? AND state = 'dead'",
                [(now, delivery_id) for _, delivery_id in letters],
            )
            self.conn.executemany(
                "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", [(now, letter_id) for letter_id, _ in letters]
            )
        return len(letters)
