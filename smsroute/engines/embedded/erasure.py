"""``smsroute erase NUMBER``: every stored trace of one number gone, for data-protection requests.

Messages from or to it (with the raw events they were made of, their deliveries, attempts and dead
letters), raw events and dead letters that hold it anywhere in their bytes (whatever a provider's
encoding: with or without the +, URL-encoded), parts still waiting for their siblings, SMS replies
to it and the delivery reports about them. The opt-out list keeps only digests of numbers
(:class:`~.state.stores.OptOutStore`), so a STOP it sent still holds. Each erasure is logged and
kept (when, the number's digest, rows deleted by table) in ``erasures``."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

from .log import connect as connect_log
from .state import State
from .state.stores import number_hash

log = logging.getLogger("smsroute.erasure")

SCHEMA = """CREATE TABLE IF NOT EXISTS erasures (id INTEGER PRIMARY KEY, at REAL NOT NULL, number_hash TEXT NOT NULL,
    deleted TEXT NOT NULL)"""


def erase(data_dir: Path, number: str) -> dict[str, int]:
    """Erase ``number`` from both databases; rows deleted by table. A running engine may go on: each
    database is changed in one transaction of its own."""
    digits = number.lstrip("+").encode()
    if len(digits) < 6 or not digits.isdigit():
        raise ValueError(f"{number!r} is not a phone number (at least six digits, with or without a +)")
    forms = (digits.decode(), "+" + digits.decode())
    deleted: dict[str, int] = {}
    state = State(data_dir / "state.db")
    try:
        conn = state.conn
        conn.execute(SCHEMA)
        with state.transaction():
            found = conn.execute(
                'SELECT id, grp, "offset" FROM messages WHERE sender IN (?, ?) OR recipient IN (?, ?)', forms * 2
            ).fetchall()
            ids = [row[0] for row in found]
            offsets = [row[2] for row in found if row[2] is not None] + [
                row[0]
                for _, group, _ in found
                for row in conn.execute('SELECT "offset" FROM events WHERE grp = ?', (group,)).fetchall()
            ]
            deliveries = [
                row[0]
                for message_id in ids
                for row in conn.execute("SELECT id FROM deliveries WHERE message_id = ?", (message_id,)).fetchall()
            ]
            deleted["attempts"] = _each(state, "DELETE FROM attempts WHERE delivery_id = ?", deliveries)
            deleted["dead_letters"] = _each(state, "DELETE FROM dead_letters WHERE delivery_id = ?", deliveries)
            deleted["dead_letters"] += conn.execute(
                "DELETE FROM dead_letters WHERE instr(payload, ?) > 0", (digits,)
            ).rowcount
            deleted["deliveries"] = _each(state, "DELETE FROM deliveries WHERE id = ?", deliveries)
            deleted["replies"] = conn.execute("DELETE FROM replies WHERE recipient IN (?, ?)", forms).rowcount
            deleted["delivery_reports"] = conn.execute(
                "DELETE FROM delivery_reports WHERE recipient IN (?, ?)", forms
            ).rowcount
            deleted["pending_parts"] = conn.execute(
                "DELETE FROM pending_parts WHERE instr(parts, ?) > 0", (digits.decode(),)
            ).rowcount
            deleted["events"] = _each(state, 'DELETE FROM events WHERE "offset" = ?', offsets)
            deleted["messages"] = _each(state, "DELETE FROM messages WHERE id = ?", ids)
            conn.execute(
                "INSERT INTO erasures (at, number_hash, deleted) VALUES (?, ?, ?)",
                (time.time(), number_hash(number), json.dumps(deleted)),
            )
    finally:
        state.close()
    raw = connect_log(data_dir / "log.db", busy_timeout=10.0)
    try:
        raw.execute("BEGIN IMMEDIATE")
        deleted["raw_events"] = _raw(raw, offsets, digits)
        raw.execute("COMMIT")
    finally:
        raw.close()
    log.info(
        "number erased",
        extra={"event": "number_erased", "number_hash": number_hash(number), "deleted": deleted},
    )
    return deleted


def _each(state: State, statement: str, keys: list[str] | list[int]) -> int:
    return sum(state.conn.execute(statement, (key,)).rowcount for key in keys)


def _raw(conn: sqlite3.Connection, offsets: list[int], digits: bytes) -> int:
    """The raw events of its messages, and any other that holds its digits (a dead letter's, a report's)."""
    count = sum(conn.execute('DELETE FROM raw_events WHERE "offset" = ?', (offset,)).rowcount for offset in offsets)
    return count + conn.execute("DELETE FROM raw_events WHERE instr(record, ?) > 0", (digits,)).rowcount
