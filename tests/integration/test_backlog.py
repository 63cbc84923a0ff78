"""The backlog gauges read what waits in a real state db and log: due, scheduled and in-flight
deliveries with the age of the oldest due one, dead letters not replayed, unprocessed log records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from smsroute.engines.embedded import backlog
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.engines.embedded.state import State
from smsroute.engines.embedded.state.deliveries import Finished
from smsroute.models.dead_letter import DeadLetter
from smsroute.models.delivery import Delivery

NOW = 1_800_000_000.0


def delivery(number: int, sink: str = "webhook") -> Delivery:
    action = {"url": f"http://127.0.0.1:9/{number}"} if sink == "webhook" else {"to": ["ops@example.com"]}
    return Delivery(f"msg_{number:032d}", f"{number:032x}", "inbox", sink, action, '{"text":"hi"}', NOW - 60)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[State, SQLiteLog]]:
    state, log = State(tmp_path / "state.db"), SQLiteLog(tmp_path / "log.db")
    log.start()
    yield state, log
    log.stop()
    state.close()


async def test_gauges_follow_the_state(stores: tuple[State, SQLiteLog]) -> None:
    state, log = stores
    await log.append([("k", b"one"), ("k", b"two"), ("k", b"three")])
    state.offsets.set(1)
    state.deliveries.add([delivery(n) for n in range(4)] + [delivery(9, "email")], NOW - 100)
    state.deliveries.record([Finished("msg_" + "0" * 31 + "1", 1, "failed", 500, "HTTP 500", 0.1, NOW - 50, NOW + 30)])
    state.deliveries.record([Finished("msg_" + "0" * 31 + "2", 1, "delivered", 204, "", 0.1, NOW - 50, None)])
    state.deliveries.claim("http://127.0.0.1:9", NOW - 100, 1)  # delivery 0: in flight
    state.dead_letters.add([DeadLetter("route", "unrouted: no route matched", b"{}")], NOW)

    backlog.export(state, log, NOW)

    assert gauge("smsroute_processor_backlog_events") == 2
    assert gauge("smsroute_delivery_backlog", sink="webhook", state="due") == 1  # delivery 3
    assert gauge("smsroute_delivery_backlog", sink="webhook", state="scheduled") == 1  # delivery 1
    assert gauge("smsroute_delivery_backlog", sink="webhook", state="sending") == 1
    assert gauge("smsroute_delivery_backlog_age_seconds", sink="webhook") == 100
    assert gauge("smsroute_delivery_backlog", sink="email", state="due") == 1
    assert gauge("smsroute_delivery_backlog", sink="sms_reply", state="due") == 0
    assert gauge("smsroute_delivery_backlog_age_seconds", sink="sms_reply") == 0
    assert gauge("smsroute_dead_letters_waiting", stage="route") == 1
    assert gauge("smsroute_dead_letters_waiting", stage="deliver") == 0

    state.deliveries.record([Finished("msg_" + "0" * 31 + "3", 1, "delivered", 204, "", 0.1, NOW, None)])
    state.deliveries.record([Finished("msg_" + "0" * 31 + "9", 1, "failed", None, "no email sink", 0.0, NOW, None)])
    with state.transaction():
        assert state.dead_letters.replay_deliveries(None, NOW) == 1  # the email dead letter is due again
    backlog.export(state, log, NOW + 10)

    assert gauge("smsroute_delivery_backlog", sink="webhook", state="due") == 0
    assert gauge("smsroute_delivery_backlog_age_seconds", sink="webhook") == 0
    assert gauge("smsroute_delivery_backlog_age_seconds", sink="email") == 10
    assert gauge("smsroute_dead_letters_waiting", stage="deliver") == 0
