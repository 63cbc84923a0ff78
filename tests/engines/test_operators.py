"""Operators' tools end to end on a running embedded engine, with real traffic posted over HTTP:
``messages search`` and ``trace``, ``erase``, ``rules replay`` (compare, and ``--deliver``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engines import Running, StartEngine, rules_yaml
from helpers import eventually
from local_server import Receiver
from samples import AGILE
from smsroute.cli import main

pytestmark = pytest.mark.parametrize("engine", ["embedded"], indirect=True)

ALICE = "+393331234567"  # AGILE's originator
BOB = "+393339876543"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """Run ``smsroute ARGS --json`` and return its JSON."""
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


async def test_search_finds_a_message_and_trace_says_where_it_went_and_why(
    start_engine: StartEngine, receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await start_engine()
    for _ in range(2):  # the provider retries once
        assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "Ciao, where is my parcel?"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "originator": BOB, "text": "DEAD end"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 1)
    data = data_dir(tmp_path)
    await eventually(lambda: len(cli(capsys, "messages", "search", "--data-dir", data)) == 2)

    [found] = cli(capsys, "messages", "search", "--data-dir", data, "--number", ALICE, "--text", "PARCEL")
    assert (found["from"], found["routes"], found["provider"]) == (ALICE, ["inbox"], "agiletelecom")
    assert cli(capsys, "messages", "search", "--data-dir", data, "--route", "dead", "--since", "1h")[0]["from"] == BOB
    assert cli(capsys, "messages", "search", "--data-dir", data, "--provider", "vonage") == []

    trace = cli(capsys, "messages", "trace", found["id"], "--data-dir", data, "--routes", str(tmp_path / "routes"))
    assert trace["routes"] == ["inbox"] and trace["message"]["text"] == "Ciao, where is my parcel?"
    assert [event["decision"] for event in trace["events"]] == ["message", "duplicate"]
    assert all("parcel" in event["raw"]["body"] for event in trace["events"])
    assert trace["explanation"]["matched"] == ["inbox"] and trace["explanation"]["same_rules"]
    statuses = {route["name"]: route["status"] for route in trace["explanation"]["routes"]}
    assert statuses["opt-out"] != statuses["inbox"]
    [delivery] = trace["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempt_log"][0]["outcome"] == "delivered"

    capsys.readouterr()
    assert main(["messages", "trace", found["id"], "--data-dir", data, "--routes", str(tmp_path / "routes")]) == 0
    text = capsys.readouterr().out
    assert "a provider retry: dropped by dedupe" in text and "attempt 1: delivered" in text


async def test_erase_leaves_no_trace_of_the_number_and_its_stop_still_holds(
    start_engine: StartEngine, receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop_route = rules_yaml(receiver.url).replace(
        "match: {keyword: STOP}", "compliance: stop\n    match: {keyword: STOP}"
    )
    run = await start_engine(stop_route)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "STOP"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "my address is here"}) == 200
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "originator": BOB, "text": "keep me"}) == 200
    await eventually(lambda: len(receiver.at("/inbox")) == 2 and len(receiver.at("/optout")) == 1)
    data = tmp_path / "data"
    await eventually(lambda: len(cli(capsys, "messages", "search", "--data-dir", str(data))) == 3)

    capsys.readouterr()
    assert main(["erase", ALICE, "--data-dir", str(data)]) == 0
    assert "erased" in capsys.readouterr().out

    assert cli(capsys, "messages", "search", "--data-dir", str(data), "--number", ALICE) == []
    assert len(cli(capsys, "messages", "search", "--data-dir", str(data), "--number", BOB)) == 1
    for name in ("log.db", "state.db"):
        assert not holds(data / name, b"393331234567"), f"{name} still holds the number"
    state = running_state(run)
    assert state.opt_outs.get(ALICE) is not None  # STOP still holds, by digest
    [(erasures,)] = state.conn.execute("SELECT count(*) FROM erasures").fetchall()
    assert erasures == 1


async def test_replay_shows_what_new_rules_would_change_and_delivers_the_unrouted(
    start_engine: StartEngine, receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_stop = rules_yaml(receiver.url).split("  - name: flaky")[0]  # opt-out alone: the rest is unrouted
    run = await start_engine(only_stop)
    for text in ("PROMO one", "PROMO two", "hello", "STOP"):
        assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": text}) == 200
    data = data_dir(tmp_path)
    await eventually(lambda: len(cli(capsys, "messages", "search", "--data-dir", data)) == 4)

    new_rules = tmp_path / "new-rules"
    new_rules.mkdir()
    (new_rules / "rules.yaml").write_text(
        only_stop
        + f"""
  - name: promo
    match: {{keyword: PROMO}}
    actions:
      - webhook: {{url: "{receiver.url}/promo"}}
"""
    )
    report = cli(capsys, "rules", "replay", "--rules", str(new_rules), "--since", "1h", "--data-dir", data)
    assert (report["messages"], report["changed"], report["newly_unrouted"]) == (4, 2, 0)
    [move] = report["moves"]
    assert (move["from"], move["to"], move["count"]) == ("(unrouted)", "promo", 2)
    assert {example["text"] for example in move["examples"]} == {"PROMO one", "PROMO two"}
    assert receiver.at("/promo") == []  # nothing delivered

    capsys.readouterr()
    args = ["rules", "replay", "--deliver", "--data-dir", data, "--routes", str(new_rules)]
    assert main(args) == 0
    assert "2 unrouted messages routed again; 1 still unrouted" in capsys.readouterr().out
    await eventually(lambda: len(receiver.at("/promo")) == 2)


def running_state(run: Running) -> Any:
    return run.engine.processing.state  # type: ignore[attr-defined]


def holds(path: Path, digits: bytes) -> bool:
    """Whether any cell of any table in the database holds ``digits``."""
    conn = sqlite3.connect(path)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for cell in row:
                    value = cell if isinstance(cell, bytes) else str(cell).encode()
                    if digits in value:
                        return True
    finally:
        conn.close()
    return False
