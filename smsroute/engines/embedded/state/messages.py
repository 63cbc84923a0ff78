"""Messages as routed, and what became of each raw event: what ``smsroute messages search`` and
``trace`` read, and what ``rules replay`` runs again. Two small rows per message (its routed JSON,
and one per raw event it was made of), written in the processing transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ....streams.pipeline import Routed, Seen

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    provider TEXT NOT NULL,
    source TEXT NOT NULL,
    routes TEXT NOT NULL,           -- the routes it hit, comma-separated; '' when unrouted
    grp TEXT NOT NULL,              -- the Seen.group of its raw events
    message TEXT NOT NULL,          -- the canonical message JSON, as routed
    "offset" INTEGER                -- of the raw event that made it (none: released at the stitch timeout)
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender);
CREATE TABLE IF NOT EXISTS events (  -- the raw events that did not make a message by themselves
    "offset" INTEGER PRIMARY KEY,   -- of the raw event in log.db
    grp TEXT NOT NULL,
    decision TEXT NOT NULL,         -- part, duplicate, duplicate_part
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_grp ON events (grp);
"""

OUTCOMES = ("routed", "unrouted", "delivered", "pending", "dead", "suppressed")
"""What ``search --outcome`` takes: the routing verdict, or a state one of its deliveries is in."""


@dataclass(frozen=True, slots=True)
class Query:
    """What ``messages search`` looks for; every field given must hold."""

    number: str | None = None
    """Sender or recipient, exactly."""
    text: str | None = None
    """Contained in the text, case-insensitively."""
    route: str | None = None
    provider: str | None = None
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    limit: int = 100


class Messages:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, routed: Sequence[Routed], offset: int | None) -> None:
        """Messages as routed, made by the raw event at ``offset``. A message routed again (a re-done
        batch, a replay) takes the new routes and keeps the raw event it was made of."""
        self.conn.executemany(
            "INSERT INTO messages (id, received_at, sender, recipient, provider, source, routes, grp, message,"
            ' "offset") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET routes = excluded.routes,'
            ' message = excluded.message, "offset" = coalesce(excluded."offset", messages."offset")',
            [
                (
                    m.id,
                    m.received_at.timestamp(),
                    m.sender,
                    m.recipient,
                    m.provider,
                    m.source,
                    ",".join(r.routes),
                    r.group,
                    r.body,
                    offset,
                )
                for r in routed
                for m in (r.message,)
            ],
        )

    def seen(self, offset: int, seen: Seen, now: float) -> None:
        """What became of a raw event that did not make a message by itself (the one that did is the
        message's ``offset``: most messages cost one row, not two)."""
        self.conn.execute(
            'INSERT OR REPLACE INTO events ("offset", grp, decision, at) VALUES (?, ?, ?, ?)',
            (offset, seen.group, seen.decision, now),
        )

    def get(self, message_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            'SELECT routes, grp, message, "offset" FROM messages WHERE id = ?', (message_id,)
        ).fetchone()
        if row is None:
            return None
        return {"routes": _routes(row[0]), "group": row[1], "message": json.loads(row[2]), "offset": row[3]}

    def events(self, group: str, made: int | None) -> list[dict[str, Any]]:
        """The raw events of a message's group, oldest first: the one that ``made`` the message (its
        offset), and the others (its other parts, the provider's retries)."""
        rows = self.conn.execute('SELECT "offset", decision FROM events WHERE grp = ?', (group,)).fetchall()
        if made is not None:
            rows.append((made, "message"))
        return [{"offset": offset, "decision": decision} for offset, decision in sorted(rows)]

    def search(self, query: Query) -> list[dict[str, Any]]:
        """Messages matching ``query``, newest first, each with its routes and its deliveries' states."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if query.number:
            where.append("(sender = ? OR recipient = ?)")
            params += [query.number, query.number]
        if query.text:
            where.append("instr(lower(json_extract(message, '$.text')), lower(?)) > 0")
            params.append(query.text)
        if query.route:
            where.append("instr(',' || routes || ',', ',' || ? || ',') > 0")
            params.append(query.route)
        if query.provider:
            where.append("provider = ?")
            params.append(query.provider)
        if query.since is not None:
            where.append("received_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("received_at < ?")
            params.append(query.until)
        if query.outcome == "routed":
            where.append("routes != ''")
        elif query.outcome == "unrouted":
            where.append("routes = ''")
        elif query.outcome is not None:
            where.append("EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.state = ?)")
            params.append(query.outcome)
        cursor = self.conn.execute(
            "SELECT id, received_at, sender, recipient, provider, source, routes,"
            " json_extract(message, '$.text'), (SELECT group_concat(state) FROM deliveries d"
            f" WHERE d.message_id = messages.id) FROM messages WHERE {' AND '.join(where)}"
            " ORDER BY received_at DESC LIMIT ?",
            [*params, query.limit],
        )
        return [
            {
                "id": row[0],
                "received_at": row[1],
                "from": row[2],
                "to": row[3],
                "provider": row[4],
                "source": row[5],
                "routes": _routes(row[6]),
                "text": row[7],
                "outcome": _outcome(row[6], row[8]),
            }
            for row in cursor
        ]

    def window(self, since: float, until: float) -> list[dict[str, Any]]:
        """The messages received in ``[since, until)`` as routed (JSON), with their routes, oldest first."""
        cursor = self.conn.execute(
            "SELECT routes, message FROM messages WHERE received_at >= ? AND received_at < ? ORDER BY received_at",
            (since, until),
        )
        return [{"routes": _routes(row[0]), "message": json.loads(row[1])} for row in cursor]


def _routes(text: str) -> list[str]:
    return text.split(",") if text else []


def _outcome(routes: str, states: str | None) -> str:
    """One word for a list: unrouted, or the least finished state of its deliveries."""
    if not routes:
        return "unrouted"
    found = set(states.split(",")) if states else set()
    for state in ("dead", "sending", "pending", "suppressed", "delivered"):
        if state in found:
            return state
    return "routed"
