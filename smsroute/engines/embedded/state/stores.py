"""The processing core's stores (:mod:`smsroute.streams.state`) as SQLite tables: dedupe keys,
pending parts and the opt-out list, written inside the processing transaction."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from ....models.part import Part
from ....streams.optouts import OptOut
from ....streams.stitch import Pending

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (key TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dedupe_seen ON dedupe (seen);
CREATE TABLE IF NOT EXISTS pending_parts (key TEXT PRIMARY KEY, first_seen REAL NOT NULL, parts TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_first_seen ON pending_parts (first_seen);
CREATE TABLE IF NOT EXISTS opt_out_hashes (hash TEXT PRIMARY KEY, message_id TEXT NOT NULL, at REAL NOT NULL);
"""


class DedupeStore:
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

    def forget_before(self, moment: float) -> None:
        self.conn.execute("DELETE FROM dedupe WHERE seen < ?", (moment,))


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

    def forget_before(self, moment: float) -> None:
        self.conn.execute("DELETE FROM pending_parts WHERE first_seen < ?", (moment,))


class OptOutStore:
    """A :class:`~smsroute.streams.state.Store` of opted-out numbers, kept as SHA-256 digests only: an
    erased number (``smsroute erase``) leaves no trace in clear, and its STOP still holds."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'opt_outs'").fetchone():
            conn.execute("BEGIN IMMEDIATE")  # a data directory from before the digests: hashed, once
            for number, message_id, at in conn.execute("SELECT number, message_id, at FROM opt_outs").fetchall():
                self[number] = OptOut(message_id, at)
            conn.execute("DROP TABLE opt_outs")
            conn.execute("COMMIT")

    def get(self, number: str) -> OptOut | None:
        row = self.conn.execute(
            "SELECT message_id, at FROM opt_out_hashes WHERE hash = ?", (number_hash(number),)
        ).fetchone()
        return OptOut(*row) if row else None

    def __setitem__(self, number: str, opt_out: OptOut) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO opt_out_hashes (hash, message_id, at) VALUES (?, ?, ?)",
            (number_hash(number), opt_out.message_id, opt_out.at),
        )

    def __delitem__(self, number: str) -> None:
        self.conn.execute("DELETE FROM opt_out_hashes WHERE hash = ?", (number_hash(number),))


def number_hash(number: str) -> str:
    return hashlib.sha256(number.encode("utf-8", "backslashreplace")).hexdigest()
