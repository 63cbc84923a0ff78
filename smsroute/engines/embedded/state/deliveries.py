"""Deliveries and their attempts: due times, claims, what each attempt came to. A delivery whose last
attempt failed for good becomes a dead letter in the same transaction."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ....models.delivery import Delivery, destination

SCHEMA = """
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
    state TEXT NOT NULL,            -- pending, sending, delivered, suppressed, dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, destination, next_at);
CREATE INDEX IF NOT EXISTS deliveries_next ON deliveries (state, next_at);
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
"""

DUE_DESTINATIONS = """
WITH RECURSIVE pending(destination) AS (
    SELECT min(destination) FROM deliveries WHERE state = 'pending'
    UNION ALL
    SELECT (SELECT min(destination) FROM deliveries WHERE state = 'pending' AND destination > pending.destination)
    FROM pending WHERE pending.destination IS NOT NULL
)
SELECT destination FROM pending WHERE destination IS NOT NULL AND EXISTS (
    SELECT 1 FROM deliveries d WHERE d.state = 'pending' AND d.destination = pending.destination AND d.next_at <= ?
)
"""


@functools.lru_cache(maxsize=1024)
def _action(text: str) -> dict[str, Any]:
    """Deliveries of one route share their action's text: parse it once (the dict is never changed)."""
    action: dict[str, Any] = json.loads(text)
    return action


_ACTION_COLUMNS: dict[int, tuple[dict[str, Any], str, str]] = {}


def _action_columns(sink: str, action: dict[str, Any]) -> tuple[str, str]:
    """An action's destination and stored text. The deliveries of one route share one action dict,
    never changed (see :meth:`~smsroute.streams.pipeline.Pipeline._settings`): work both out once
    per dict. Each entry holds its dict, so no other object can take its id meanwhile."""
    entry = _ACTION_COLUMNS.get(id(action))
    if entry is None:
        if len(_ACTION_COLUMNS) >= 1024:
            _ACTION_COLUMNS.clear()
        entry = _ACTION_COLUMNS[id(action)] = (action, destination(sink, action), json.dumps(action))
    return entry[1], entry[2]


@dataclass(frozen=True, slots=True)
class Finished:
    """One attempt at a delivery, and when it is due again (None: no more tries)."""

    delivery_id: str
    attempt: int
    outcome: str
    status: int | None
    error: str
    duration: float
    at: float
    next_at: float | None

    @property
    def state(self) -> str:
        if self.outcome in ("delivered", "suppressed"):
            return self.outcome
        return "pending" if self.next_at is not None else "dead"


@dataclass(frozen=True, slots=True)
class Backlog:
    """Unfinished deliveries of one sink kind."""

    sink: str
    due: int
    scheduled: int
    sending: int
    oldest_due: float | None
    """When the longest-waiting due delivery became due."""


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for an attempt."""

    delivery: Delivery
    attempts: int


class Deliveries:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, deliveries: list[Delivery], now: float) -> None:
        """New deliveries, due now. A delivery id already present (a re-done batch) is kept as is."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO deliveries (id, message_id, route, sink, destination, action, message,"
            " received_at, created_at, state, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
            [
                (
                    d.id,
                    d.message_id,
                    d.route,
                    d.sink,
                    *_action_columns(d.sink, d.action),
                    d.body,
                    d.received_at,
                    now,
                    now,
                )
                for d in deliveries
            ],
        )

    def release_claims(self) -> int:
        """At start-up: deliveries a crash left mid-attempt are due again (at-least-once)."""
        return self.conn.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'sending'").rowcount

    def due_destinations(self, now: float) -> list[str]:
        """Destinations with a delivery due. A skip-scan of the ``deliveries_due`` index: one lookup per
        destination, however long the backlog (a plain DISTINCT would read every pending row)."""
        return [row[0] for row in self.conn.execute(DUE_DESTINATIONS, (now,))]

    def next_due(self, after: float) -> float | None:
        """When the first delivery not yet due at ``after`` falls due."""
        row = self.conn.execute(
            "SELECT min(next_at) FROM deliveries WHERE state = 'pending' AND next_at > ?", (after,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def backlog(self, now: float) -> list[Backlog]:
        """What waits, per sink kind: read for the gauges, since counts in memory would not survive a restart."""
        rows = self.conn.execute(
            "SELECT sink, sum(state = 'pending' AND next_at <= ?1), sum(state = 'pending' AND next_at > ?1),"
            " sum(state = 'sending'), min(CASE WHEN state = 'pending' AND next_at <= ?1 THEN next_at END)"
            " FROM deliveries WHERE state IN ('pending', 'sending') GROUP BY sink",
            (now,),
        )
        return [Backlog(*row) for row in rows]

    def claim(self, destination: str, now: float, limit: int) -> list[Due]:
        """Up to ``limit`` due deliveries to ``destination``, oldest first, marked as being sent.
        Call it inside :meth:`transaction`."""
        rows = self.conn.execute(
            "UPDATE deliveries SET state = 'sending' WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending'"
            " AND destination = ? AND next_at <= ? ORDER BY next_at LIMIT ?)"
            " RETURNING id, message_id, route, sink, action, message, received_at, attempts, next_at",
            (destination, now, limit),
        ).fetchall()
        rows.sort(key=lambda row: row[8])
        return [Due(Delivery(row[0], row[1], row[2], row[3], _action(row[4]), row[5], row[6]), row[7]) for row in rows]

    def record(self, finished: Sequence[Finished]) -> None:
        """Record attempts, and what follows each: delivered, suppressed, due again at ``next_at``, or dead.
        Call it inside :meth:`transaction`."""
        self.conn.executemany(
            "INSERT INTO attempts (delivery_id, attempt, at, outcome, status, error, duration) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f.delivery_id, f.attempt, f.at, f.outcome, f.status, f.error, f.duration) for f in finished],
        )
        self.conn.executemany(
            "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            [
                (f.state, f.attempt, f.next_at if f.next_at is not None else f.at, f.error, f.delivery_id)
                for f in finished
            ],
        )
        self.conn.executemany(
            "INSERT INTO dead_letters (stage, reason, payload, delivery_id, created_at)"
            " SELECT 'deliver', ?, CAST(message AS BLOB), id, ? FROM deliveries WHERE id = ?",
            [(f.error, f.at, f.delivery_id) for f in finished if f.state == "dead"],
        )

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT attempt, at, outcome, status, error, duration FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
