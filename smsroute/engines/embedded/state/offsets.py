"""How far each consumer of the raw log has got (the log's offsets, committed with what they led to)."""

from __future__ import annotations

import sqlite3

SCHEMA = """CREATE TABLE IF NOT EXISTS offsets (consumer TEXT PRIMARY KEY, "offset" INTEGER NOT NULL);"""


class Offsets:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, consumer: str = "processor") -> int:
        row = self.conn.execute('SELECT "offset" FROM offsets WHERE consumer = ?', (consumer,)).fetchone()
        return row[0] if row else 0

    def set(self, offset: int, consumer: str = "processor") -> None:
        self.conn.execute('INSERT OR REPLACE INTO offsets (consumer, "offset") VALUES (?, ?)', (consumer, offset))
