"""A Kafka worker's partition state: batch records carry exactly the changes since the last one,
records read back rebuild the same state, and records whose entries were all superseded are
deleted without ever bringing a deleted key back."""

from __future__ import annotations

from typing import Any

from smsroute.engines.kafka.partition import PartitionState, Records, in_order
from smsroute.streams.optouts import OptOut


def write(state: PartitionState, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the worker does at a flush: the batch as one record, superseded records deleted."""
    record = state.take_batch()
    name = f"{state.partition}:{record['seq']}"
    table[name] = record
    state.records.written(name, record)
    for dead in state.records.take_dead():
        del table[dead]
    return record


def rebuilt(table: dict[str, dict[str, Any]]) -> PartitionState:
    state = PartitionState(0)
    for name, record in in_order(table.items()):
        state.apply(record, {})
        state.records.written(name, record)
    return state


def test_a_batch_record_holds_the_changes_since_the_last_one_and_through() -> None:
    state, table = PartitionState(0), {}
    state.dedupe["a"] = 1.0
    state.opt_outs["+39333"] = OptOut("m1", 1.0)
    state.last_offset = 41
    first = write(state, table)
    assert first["through"] == 42 and first["dedupe"] == {"a": 1.0} and first["opt_outs"] == {"+39333": ["m1", 1.0]}
    del state.dedupe["a"]
    second = write(state, table)
    assert second["dedupe"] == {"a": None} and "opt_outs" not in second and second["seq"] == first["seq"] + 1
    again = rebuilt(table)
    assert (again.through, again.dedupe.get("a"), again.opt_outs.get("+39333")) == (42, None, OptOut("m1", 1.0))


def test_superseded_records_are_deleted_and_deleted_keys_stay_deleted() -> None:
    state, table = PartitionState(0), {}
    state.dedupe["a"] = 1.0
    state.dedupe["b"] = 1.0
    write(state, table)  # 0:0 holds a, b
    state.dedupe["a"] = 2.0
    write(state, table)  # 0:1 holds a (0:0 still holds b)
    assert set(table) == {"0:0", "0:1"}
    del state.dedupe["a"]
    write(state, table)  # 0:2 deletes a: 0:1 is superseded, but 0:0 still has an old a
    assert set(table) == {"0:0", "0:2"}
    assert rebuilt(table).dedupe.get("a") is None  # the deletion hides 0:0's a
    del state.dedupe["b"]
    write(state, table)  # 0:3 deletes b: 0:0 is gone, then 0:2's deletion hides nothing
    state.dedupe["c"] = 3.0
    write(state, table)  # 0:4: the newest record is always kept (it carries the highest through)
    assert set(table) == {"0:4"}
    again = rebuilt(table)
    assert (again.dedupe.get("a"), again.dedupe.get("b"), again.dedupe.get("c")) == (None, None, 3.0)


def test_records_read_back_account_the_same_as_records_written() -> None:
    state, table = PartitionState(0), {}
    for n in range(5):
        state.dedupe[f"k{n % 2}"] = float(n)
        write(state, table)
    again = rebuilt(table)
    assert set(again.records.live) == set(state.records.live) and again.seq == state.seq
    assert isinstance(again.records, Records) and again.records.take_dead() == []
