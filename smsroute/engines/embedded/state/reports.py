"""Delivery reports, each kept once, linked to the reply they report on."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ....models.report import FINAL, DeliveryReport

SCHEMA = """
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
"""


@dataclass(frozen=True, slots=True)
class Linked:
    """What storing a delivery report did: the reply it reports on, and that reply's new final status."""

    delivery_id: str | None
    became: str | None = None


class Reports:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, report: DeliveryReport, now: float) -> Linked | None:
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
                report.provider,
                report.provider_message_id,
                report.code,
                report.status,
                report.description,
                report.recipient,
                report.provider_time.timestamp() if report.provider_time else None,
                report.received_at.timestamp(),
                delivery_id,
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

    def all(self, delivery_id: str | None = None) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT provider, provider_message_id, code, status, description, recipient, provider_time, received_at,"
            " delivery_id FROM delivery_reports"
            + (" WHERE delivery_id = ?" if delivery_id is not None else "")
            + " ORDER BY id",
            (delivery_id,) if delivery_id is not None else (),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
