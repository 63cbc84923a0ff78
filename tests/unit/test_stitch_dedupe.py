"""Stitch and dedupe on both kinds of store: the dict-backed MemoryStore and the embedded engine's
SQLite tables (whose pending parts must survive a restart)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import permutations
from pathlib import Path

import pytest

from smsroute.engines.embedded.state import State
from smsroute.models.message import InboundMessage
from smsroute.models.part import Concat, Part
from smsroute.streams.dedupe import Dedupe
from smsroute.streams.state import MemoryStore
from smsroute.streams.stitch import Pending, Stitcher

TIMEOUT = 300.0
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SENDER = "+447700900123"


def expire(stitcher: Stitcher, now: float) -> list[InboundMessage]:
    """Every message due at ``now``, released (as the engines' housekeeping does)."""
    return [message for key in stitcher.due(now) if (message := stitcher.release(key)) is not None]


def part(index: int, total: int = 3, ref: str = "42", sender: str = SENDER, text: str | None = None) -> Part:
    """Part ``index`` of a Vonage message; each part its own message id, received a second apart."""
    return Part(
        provider="vonage",
        source="vonage",
        sender=sender,
        recipient="+447700900000",
        text=f"<{index}>" if text is None else text,
        received_at=T0 + timedelta(seconds=index),
        dedupe_key=f"vonage:{sender}:{ref}:{index}",
        provider_message_id=f"{ref}-{index}",
        concat=Concat(ref, total, index),
    )


@pytest.fixture(params=["memory", "sqlite"])
def stitcher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stitcher]:
    if request.param == "memory":
        yield Stitcher(MemoryStore(lambda pending: pending.first_seen), TIMEOUT)
        return
    db = State(tmp_path / "state.db")
    yield Stitcher(db.pending, TIMEOUT)
    db.close()


@pytest.mark.parametrize("order", list(permutations((1, 2, 3))))
def test_parts_in_any_order_make_one_whole_message(stitcher: Stitcher, order: tuple[int, ...]) -> None:
    results = [stitcher.add(part(index), now=float(n)) for n, index in enumerate(order)]
    assert results[:2] == [None, None]
    message = results[2]
    assert message is not None
    assert (message.text, message.parts, message.complete, message.flags) == ("<1><2><3>", 3, True, ())
    assert message.provider_message_ids == ("42-1", "42-2", "42-3")
    assert (message.sender, message.provider, message.received_at) == (SENDER, "vonage", T0 + timedelta(seconds=1))
    assert list(stitcher.pending.older_than(float("inf"))) == []


def test_message_id_does_not_depend_on_arrival_order(stitcher: Stitcher) -> None:
    ids = set()
    for order in permutations((1, 2, 3)):
        messages = [stitcher.add(part(index), now=0.0) for index in order]
        ids.add(messages[-1].id)  # type: ignore[union-attr]
    assert len(ids) == 1


def test_a_whole_sms_passes_straight_through(stitcher: Stitcher) -> None:
    whole = replace(part(1), concat=None, text="whole")
    single = replace(part(1), concat=Concat("7", 1, 1), text="one of one")
    assert [m.text for m in (stitcher.add(whole, 0.0), stitcher.add(single, 0.0)) if m] == ["whole", "one of one"]


def test_duplicate_part_is_dropped_and_the_first_copy_kept(stitcher: Stitcher) -> None:
    assert stitcher.add(part(1), 0.0) is None
    assert stitcher.add(part(1, text="<retry>"), 1.0) is None
    assert stitcher.add(part(2), 2.0) is None  # two distinct parts of three: still waiting
    message = stitcher.add(part(3), 3.0)
    assert message is not None and message.text == "<1><2><3>"


@pytest.mark.parametrize(
    "other",
    [
        {"sender": "+447700900999"},
        {"ref": "43"},
        {"total": 4},  # same reference, another message: a different part count
    ],
)
def test_parts_of_different_messages_never_mix(stitcher: Stitcher, other: dict[str, str | int]) -> None:
    outputs = [
        stitcher.add(part(1), 0.0),
        stitcher.add(part(2, **other), 0.0),  # type: ignore[arg-type]
        stitcher.add(part(3), 0.0),
        stitcher.add(part(1, **other), 0.0),  # type: ignore[arg-type]
        stitcher.add(part(2), 0.0),
    ]
    assert outputs[:4] == [None] * 4
    assert outputs[4] is not None and outputs[4].text == "<1><2><3>"
    [leftover] = expire(stitcher, TIMEOUT + 1)
    assert (leftover.text, leftover.complete) == ("<1><2>", False)


def test_pending_parts_survive_a_restart(tmp_path: Path) -> None:
    before = State(tmp_path / "state.db")
    assert Stitcher(before.pending, TIMEOUT).add(part(2), 0.0) is None
    before.close()
    after = State(tmp_path / "state.db")
    stitcher = Stitcher(after.pending, TIMEOUT)
    assert stitcher.add(part(1, total=2), 1.0) is None  # part 1 of another, 2-part message
    message = [stitcher.add(part(index), 2.0) for index in (3, 1)][-1]
    after.close()
    assert message is not None and message.text == "<1><2><3>"


def test_expire_releases_incomplete_messages_with_flags_after_the_timeout(stitcher: Stitcher) -> None:
    flagged = replace(part(3), flags=("from_not_e164",))
    assert stitcher.add(part(1), 100.0) is None
    assert stitcher.add(flagged, 350.0) is None  # a later part does not restart the clock
    assert expire(stitcher, 100.0 + TIMEOUT) == []  # exactly the timeout: still waiting
    [message] = expire(stitcher, 100.0 + TIMEOUT + 0.001)
    assert (message.text, message.parts, message.complete) == ("<1><3>", 3, False)
    assert message.flags == ("from_not_e164", "incomplete")
    assert message.extra == {"parts_received": [1, 3]}
    assert message.provider_message_ids == ("42-1", "42-3")
    assert expire(stitcher, 10_000.0) == []  # released once


def test_a_part_after_its_message_expired_starts_a_new_wait(stitcher: Stitcher) -> None:
    stitcher.add(part(1), 0.0)
    [early] = expire(stitcher, TIMEOUT + 1)
    assert stitcher.add(part(2), TIMEOUT + 2) is None
    [late] = expire(stitcher, 2 * TIMEOUT + 3)
    assert (early.text, late.text) == ("<1>", "<2>")
    assert early.id != late.id


def test_memory_store_finds_keys_first_written_before_a_moment() -> None:
    store: MemoryStore[Pending] = MemoryStore(lambda pending: pending.first_seen)
    store["a"], store["b"] = Pending(first_seen=1.0), Pending(first_seen=5.0)
    assert (store.older_than(1.0), store.older_than(5.0), sorted(store.older_than(6.0))) == ([], ["a"], ["a", "b"])
    del store["a"]
    assert (store.get("a"), store.older_than(6.0)) == (None, ["b"])


WINDOW = 100.0


@pytest.fixture(params=["memory", "sqlite"])
def dedupe(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dedupe]:
    if request.param == "memory":
        yield Dedupe(MemoryStore(lambda seen: seen), WINDOW)
        return
    db = State(tmp_path / "state.db")
    yield Dedupe(db.dedupe, WINDOW)
    db.close()


def test_dedupe_window_edges(dedupe: Dedupe) -> None:
    assert dedupe.is_retry("k", 1000.0) is False
    assert dedupe.is_retry("k", 1000.0) is True
    assert dedupe.is_retry("k", 1000.0 + WINDOW - 0.001) is True
    assert dedupe.is_retry("k", 1000.0 + WINDOW) is False  # the window is over: a new message
    assert dedupe.is_retry("k", 1000.0 + WINDOW + 1) is True  # ... remembered from then on


def test_retries_do_not_extend_the_window(dedupe: Dedupe) -> None:
    assert dedupe.is_retry("k", 0.0) is False
    assert dedupe.is_retry("k", WINDOW - 1) is True
    assert dedupe.is_retry("k", WINDOW) is False


def test_dedupe_keys_are_independent(dedupe: Dedupe) -> None:
    assert [dedupe.is_retry(key, 0.0) for key in ("vonage:A", "vonage:B", "twilio:A")] == [False] * 3
    assert dedupe.is_retry("vonage:A", 1.0) is True
