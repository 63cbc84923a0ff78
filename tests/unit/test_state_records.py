"""What the embedded engine's state keeps for operators, over a temporary SQLite file: opt-outs as
digests only (a data directory from before them converted once), messages as routed."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from smsroute.engines.embedded.state import State
from smsroute.models.message import InboundMessage
from smsroute.streams.optouts import OptOut
from smsroute.streams.pipeline import Routed

NUMBER = "+393331234567"


def test_opt_outs_are_kept_as_digests_and_found_by_number(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    state.opt_outs[NUMBER] = OptOut("m1", 1.0)
    assert state.opt_outs.get(NUMBER) == OptOut("m1", 1.0)
    assert state.opt_outs.get("+393330000000") is None
    rows = state.conn.execute("SELECT * FROM opt_out_hashes").fetchall()
    assert NUMBER not in repr(rows) and NUMBER.lstrip("+") not in repr(rows)
    del state.opt_outs[NUMBER]
    assert state.opt_outs.get(NUMBER) is None
    state.close()


def test_a_data_directory_with_numbers_in_clear_is_converted_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE opt_outs (number TEXT PRIMARY KEY, message_id TEXT NOT NULL, at REAL NOT NULL)")
    conn.execute("INSERT INTO opt_outs VALUES (?, 'm0', 5.0)", (NUMBER,))
    conn.commit()
    conn.close()
    state = State(tmp_path / "state.db")
    assert state.opt_outs.get(NUMBER) == OptOut("m0", 5.0)
    assert state.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'opt_outs'").fetchone()[0] == 0
    state.close()


def test_a_message_round_trips_through_its_stored_json(tmp_path: Path) -> None:
    message = InboundMessage(
        id="abc",
        provider="vonage",
        source="vonage",
        sender=NUMBER,
        recipient="+447700900000",
        text="Ciao",
        received_at=datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=UTC),
        keyword="CIAO",
        provider_message_ids=("p1",),
        parts=2,
        complete=False,
        flags=("incomplete",),
        rules_version="v1",
        extra={"parts_received": [1]},
    )
    state = State(tmp_path / "state.db")
    state.messages.add([Routed(message, ("inbox", "audit"), "g1", json.dumps(message.to_json()))], 7)
    found = state.messages.get("abc")
    assert (
        found is not None and found["routes"] == ["inbox", "audit"] and (found["group"], found["offset"]) == ("g1", 7)
    )
    assert InboundMessage.from_json(found["message"]) == message
    state.close()
