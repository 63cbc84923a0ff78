"""The embedded engine's state in SQLite (``<data_dir>/state.db``): progress through the log,
dedupe keys, pending parts, deliveries with their attempts, dead letters, and for SMS replies the
opt-out list, the replies sent (the guards' memory) and the delivery reports about them.

Processing a batch of raw events and recording what it produced is one transaction, so a crash
re-does a batch but never skips or doubles it. WAL with ``synchronous=NORMAL``: every commit
survives a process crash (``kill -9``); after a power loss the last moments of processing are done
again from the raw log, which is fsynced on every commit. The one record that could not be done
again, an SMS reply the provider took, is fsynced before it counts as sent (:meth:`StateDB.sync`)."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models.dead_letter import DeadLetter
from ...models.delivery import Delivery, destination
from ...models.part import Part
from ...models.report import FINAL, DeliveryReport
from ...streams.optouts import OptOut
from ...streams.stitch import Pending
from .checkpoint import WAL_RESTART_PAGES, Checkpointer

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
CREATE TABLE IF NOT EXISTS opt_outs (number TEXT PRIMARY KEY, message_id TEXT NOT NULL, at REAL NOT NULL);
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
CREATE TABLE IF NOT EXISTS delivery_reports (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    code TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending, sent, delivered, failed, unknown
    description TEXT NOT NULL,
    recipient TEXT NOT NULL,
    provider_time REAL,
    received_at REAL NOT NULL,
    delivery_id TEXT,                 -- the reply reported on, when it is one of ours
    UNIQUE (provider, provider_message_id, code)
);
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

_DUE_DESTINATIONS = """
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
    return json.loads(text)


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
        parts = {int(index): Part.from_json(part) for index, part in json.loads(row[1]).items()}
        return Pending(first_seen=row[0], parts=parts)

    def __setitem__(self, key: str, pending: Pending) -> None:
        parts = json.dumps({index: part.to_json() for index, part in pending.parts.items()})
        self.conn.execute(
            "INSERT OR REPLACE INTO pending_parts (key, first_seen, parts) VALUES (?, ?, ?)",
            (key, pending.first_seen, parts),
        )

    def __delitem__(self, key: str) -> None:
        self.conn.execute("DELETE FROM pending_parts WHERE key = ?", (key,))

    def older_than(self, moment: float) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT key FROM pending_parts WHERE first_seen < ?", (moment,))]


class OptOutStore:
    """A :class:`~smsroute.streams.state.Store` of opted-out numbers."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, number: str) -> OptOut | None:
        row = self.conn.execute("SELECT message_id, at FROM opt_outs WHERE number = ?", (number,)).fetchone()
        return OptOut(*row) if row else None

    def __setitem__(self, number: str, opt_out: OptOut) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO opt_outs (number, message_id, at) VALUES (?, ?, ?)",
            (number, opt_out.message_id, opt_out.at),
        )

    def __delitem__(self, number: str) -> None:
        self.conn.execute("DELETE FROM opt_outs WHERE number = ?", (number,))


@dataclass(frozen=True, slots=True)
class Linked:
    """What storing a delivery report did: the reply it reports on, and that reply's new final status."""

    delivery_id: str | None
    became: str | None = None


class StateDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_RESTART_PAGES}")
        self.conn.executescript(_SCHEMA)
        self._checkpointer = Checkpointer(path)
        self._checkpointer.start()
        self.dedupe = SQLiteStore(self.conn)
        self.pending = PendingStore(self.conn)
        self.opt_outs = OptOutStore(self.conn)

    def close(self) -> None:
        self._checkpointer.stop()
        self.conn.close()

    def sync(self) -> None:
        """Make every commit so far survive a power loss, not only a crash: fsync the WAL they are
        in (``synchronous=NORMAL`` leaves that to checkpoints). Touches only the file, so it may run
        in a thread while the event loop goes on."""
        for path in (self._wal, self.path):  # no WAL file: the commits are in the database itself
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: the writes of the block are undone when it raises (the rest
        of the transaction stands)."""
        self.conn.execute("SAVEPOINT block")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO block")
            raise
        finally:
            self.conn.execute("RELEASE block")

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
                (d.id, d.message_id, d.route, d.sink, *_action_columns(d.sink, d.action), d.body, d.received_at,
                 now, now)
                for d in deliveries
            ],
        )

    def release_claims(self) -> int:
        """At start-up: deliveries a crash left mid-attempt are due again (at-least-once)."""
        return self.conn.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'sending'").rowcount

    def due_destinations(self, now: float) -> list[str]:
        """Destinations with a delivery due. A skip-scan of the ``deliveries_due`` index: one lookup per
        destination, however long the backlog (a plain DISTINCT would read every pending row)."""
        return [row[0] for row in self.conn.execute(_DUE_DESTINATIONS, (now,))]

    def next_due(self, after: float) -> float | None:
        """When the first delivery not yet due at ``after`` falls due."""
        row = self.conn.execute(
            "SELECT min(next_at) FROM deliveries WHERE state = 'pending' AND next_at > ?", (after,)
        ).fetchone()
        return row[0]

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
            [(f.state, f.attempt, f.next_at if f.next_at is not None else f.at, f.error, f.delivery_id) for f in finished],
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
        return [dict(zip(names, row)) for row in cursor]

    # --- SMS replies and their delivery reports --------------------------------------------------

    def reply_for(self, message_id: str) -> tuple[str, str] | None:
        """The delivery that replies (or replied) to this message and its reply's status, if any."""
        row = self.conn.execute("SELECT delivery_id, status FROM replies WHERE message_id = ?", (message_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def recent_replies(self, recipient: str, since: float) -> int:
        """Replies to ``recipient`` since ``since`` that may have reached it (refused ones do not count)."""
        row = self.conn.execute(
            "SELECT count(*) FROM replies WHERE recipient = ? AND created_at >= ? AND status != 'failed'",
            (recipient, since),
        ).fetchone()
        return row[0]

    def reserve_reply(self, delivery_id: str, message_id: str, recipient: str, provider: str, now: float) -> None:
        """The reply is about to be sent: from now on it counts for the guards (a retry keeps its row)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO replies (delivery_id, message_id, recipient, provider, status, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 'sending', ?, ?)",
            (delivery_id, message_id, recipient, provider, now, now),
        )

    def reply_sent(self, delivery_id: str, provider_message_id: str | None, now: float) -> None:
        self.conn.execute(
            "UPDATE replies SET status = 'sent', provider_message_id = ?, updated_at = ? WHERE delivery_id = ?",
            (provider_message_id, now, delivery_id),
        )

    def reply_failed(self, delivery_id: str, now: float) -> None:
        self.conn.execute(
            "UPDATE replies SET status = 'failed', updated_at = ? WHERE delivery_id = ?", (now, delivery_id)
        )

    def replies(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT delivery_id, message_id, recipient, provider, provider_message_id, status, created_at, updated_at"
            " FROM replies ORDER BY created_at"
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def add_report(self, report: DeliveryReport, now: float) -> Linked | None:
        """Store a delivery report, linked to our reply when it reports on one; a final status
        (delivered, failed) becomes the reply's, once. None when the same report was stored before."""
        row = self.conn.execute(
            "SELECT delivery_id, status FROM replies WHERE provider = ? AND provider_message_id = ?",
            (report.provider, report.provider_message_id),
        ).fetchone()
        delivery_id, status = row if row else (None, None)
        stored = self.conn.execute(
            "INSERT OR IGNORE INTO delivery_reports (provider, provider_message_id, code, status, description,"
            " recipient, provider_time, received_at, delivery_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                report.provider, report.provider_message_id, report.code, report.status, report.description,
                report.recipient, report.provider_time.timestamp() if report.provider_time else None,
                report.received_at.timestamp(), delivery_id,
            ),
        ).rowcount
        if not stored:
            return None
        became = None
        if delivery_id is not None and report.status in FINAL and status not in FINAL:
            self.conn.execute(
                "UPDATE replies SET status = ?, updated_at = ? WHERE delivery_id = ?", (report.status, now, delivery_id)
            )
            became = report.status
        return Linked(delivery_id, became)

    def reports(self, delivery_id: str | None = None) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT provider, provider_message_id, code, status, description, recipient, provider_time, received_at,"
            " delivery_id FROM delivery_reports"
            + (" WHERE delivery_id = ?" if delivery_id is not None else "")
            + " ORDER BY id",
            (delivery_id,) if delivery_id is not None else (),
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

    def dead_letters_waiting(self) -> dict[str, int]:
        """Dead letters not replayed yet, by stage."""
        rows = self.conn.execute("SELECT stage, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY stage")
        return dict(rows.fetchall())

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
