"""The offsets a worker's transaction commits: never past an event still being processed, and
never while an event of that transaction is being processed."""

from __future__ import annotations

import asyncio

from faust.types import TP

from smsroute.engines.kafka.transactions import Admission, Gate, Progress

RAW = TP("smsroute.raw.v1", 0)
DELIVERIES = TP("smsroute.deliveries.v1", 0)
SETTLE = 0.05
"""Seconds for the tasks started to run as far as they may: a commit or an event that failed to
wait would have shown in ``order`` by then (many event-loop turns; nothing marks "is waiting")."""


def test_commits_stop_at_the_first_unfinished_event() -> None:
    progress = Progress()
    for offset in (10, 11, 12, 14):  # 13: a transaction marker, never handed to an agent
        progress.received(DELIVERIES, offset)
    progress.finished(DELIVERIES, 10)
    progress.finished(DELIVERIES, 12)  # finished out of order, behind 11
    assert progress.committable([DELIVERIES]) == {DELIVERIES: 11}
    progress.committed[DELIVERIES] = 11
    assert progress.committable([DELIVERIES]) == {}  # nothing new
    progress.finished(DELIVERIES, 11)
    assert progress.committable([DELIVERIES]) == {DELIVERIES: 13}
    progress.finished(DELIVERIES, 14)
    assert progress.committable([DELIVERIES]) == {DELIVERIES: 15}


def test_only_the_given_partitions_and_forgotten_ones_start_afresh() -> None:
    progress = Progress()
    progress.received(RAW, 5)
    progress.finished(RAW, 5)
    progress.received(DELIVERIES, 7)
    progress.finished(DELIVERIES, 7)
    assert progress.committable([RAW]) == {RAW: 6}
    progress.forget([DELIVERIES])
    assert progress.committable([RAW, DELIVERIES]) == {RAW: 6}
    progress.received(DELIVERIES, 3)  # read again from the committed offset after a rebalance
    progress.finished(DELIVERIES, 3)
    assert progress.committable([DELIVERIES]) == {DELIVERIES: 4}


async def test_a_commit_waits_for_the_event_in_process_and_holds_back_new_ones() -> None:
    gate = Gate()
    order: list[str] = []
    processing = asyncio.Event()
    release = asyncio.Event()

    async def event(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.processing("tx-0"):
            order.append(f"{name} start")
            processing.set()
            if wait is not None:
                await wait.wait()
            order.append(f"{name} end")

    async def commit() -> None:
        async with gate.committing("tx-0"):
            order.append("commit")

    first = asyncio.create_task(event("a", release))
    await processing.wait()
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)
    second = asyncio.create_task(event("b"))
    other = asyncio.create_task(gate_other(gate, order))
    await asyncio.sleep(SETTLE)
    assert order == ["a start", "other"]  # the commit waits for a; b waits for the commit; tx-1 is free
    release.set()
    await asyncio.gather(first, committing, second, other)
    assert order == ["a start", "other", "a end", "commit", "b start", "b end"]


async def gate_other(gate: Gate, order: list[str]) -> None:
    async with gate.processing("tx-1"):
        order.append("other")


def test_admission_lets_records_in_once_in_order_and_reads_holes_again() -> None:
    admission = Admission(contiguous=[RAW.topic])
    admission.start({RAW: 10, DELIVERIES: None})
    assert admission.admit(DELIVERIES, 3) is True  # nothing committed yet: the first there is
    assert admission.admit(RAW, 10) is True
    assert admission.admit(RAW, 10) is False  # again: processed already
    assert admission.admit(RAW, 13) == 11  # a hole after 10: read again from 11
    assert admission.admit(RAW, 14) is False  # fetched before the new reading
    assert admission.admit(RAW, 11) is True  # the new reading: 11 was there after all
    assert admission.admit(RAW, 12) is True
    assert admission.admit(RAW, 15) == 13
    assert admission.admit(RAW, 15) is True  # read again, 15 comes first: 13 and 14 hold no record
    assert admission.admit(TP("other", 0), 0) is False  # not served
    admission.stop([RAW])
    assert admission.admit(RAW, 16) is False


def test_gaps_in_transactional_topics_are_checked_only_while_a_rebalance_settles() -> None:
    admission = Admission(contiguous=[RAW.topic], settle=0.0)
    admission.start({RAW: 10, DELIVERIES: 20})
    assert admission.admit(DELIVERIES, 22) is True  # 20, 21: a transaction's marker, say
    assert admission.admit(RAW, 12) == 10  # the raw topic has no markers: a gap is a hole
    settling = Admission(contiguous=[RAW.topic], settle=60.0)
    settling.start({DELIVERIES: 20})
    assert settling.admit(DELIVERIES, 22) == 20
