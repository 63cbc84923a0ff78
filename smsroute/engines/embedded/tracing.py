"""``smsroute messages trace``: where one message went, and why, from what the embedded engine kept.

The raw events as received (from ``log.db``, while retention keeps them), what dedupe and stitch
made of each, the message as routed, every route's verdict with its reasons (``rules test``'s
explanation, against the rules in force now, flagged when they are not the ones that routed it),
and each delivery with every attempt and its dead letter."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...models.message import InboundMessage
from ...models.raw import RawEvent
from ...rules import RuleSet
from .state import State

DECISIONS = {
    "message": "made the message (complete)",
    "part": "a part, held until the others came",
    "duplicate": "a provider retry: dropped by dedupe",
    "duplicate_part": "a part already held: dropped by stitch",
}


def trace(state: State, log_path: Path, rules: RuleSet | None, message_id: str) -> dict[str, Any] | None:
    """Everything kept about ``message_id``; None when no message has that id (or it is past retention)."""
    found = state.messages.get(message_id)
    if found is None:
        return None
    events = state.messages.events(found["group"], found["offset"])
    raw = _raw_events(log_path, [event["offset"] for event in events])
    for event in events:
        event["explained"] = DECISIONS.get(event["decision"], event["decision"])
        event["raw"] = raw.get(event["offset"])
    message = found["message"]
    result: dict[str, Any] = {
        "message": message,
        "routes": found["routes"],
        "outcome": "routed" if found["routes"] else "unrouted",
        "events": events,
        "deliveries": _deliveries(state, message_id),
        "dead_letters": _dead_letters(state, message_id),
    }
    if rules is not None:
        explanation = rules.explain(InboundMessage.from_json(message)).to_json()
        explanation["same_rules"] = rules.version == message["rules_version"]
        result["explanation"] = explanation
    return result


def _raw_events(path: Path, offsets: list[int]) -> dict[int, dict[str, Any]]:
    if not offsets or not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f'SELECT "offset", record FROM raw_events WHERE "offset" IN ({", ".join("?" * len(offsets))})', offsets
        ).fetchall()
    finally:
        conn.close()
    return {offset: describe_raw(RawEvent.decode(record)) for offset, record in rows}


def describe_raw(event: RawEvent) -> dict[str, Any]:
    """A raw event as JSON: its body as text (undecodable bytes escaped)."""
    return {
        "ingress": event.ingress,
        "provider": event.provider,
        "kind": event.kind,
        "received_at": datetime.fromtimestamp(event.received_at_us / 1e6, UTC).isoformat(),
        "remote_addr": event.remote_addr,
        "method": event.method,
        "path": event.path,
        "query": event.query,
        "content_type": event.content_type,
        "headers": event.headers,
        "body": event.body.decode("utf-8", "backslashreplace"),
    }


def _deliveries(state: State, message_id: str) -> list[dict[str, Any]]:
    cursor = state.conn.execute(
        "SELECT id, route, sink, destination, state, attempts, last_error, created_at FROM deliveries"
        " WHERE message_id = ? ORDER BY route, id",
        (message_id,),
    )
    names = [column[0] for column in cursor.description]
    deliveries = [dict(zip(names, row, strict=True)) for row in cursor]
    for delivery in deliveries:
        delivery["attempt_log"] = state.deliveries.attempts(delivery["id"])
    return deliveries


def _dead_letters(state: State, message_id: str) -> list[dict[str, Any]]:
    """Its deliveries' dead letters, and its own when it was unrouted."""
    cursor = state.conn.execute(
        "SELECT id, stage, reason, delivery_id, created_at, replayed_at FROM dead_letters"
        " WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id = ?)"
        " OR (stage = 'route' AND json_extract(CAST(payload AS TEXT), '$.id') = ?) ORDER BY id",
        (message_id, message_id),
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
