"""The processing core never lets one bad event stop the stream: it becomes a dead letter."""

from __future__ import annotations

from pathlib import Path

from helpers import MemoryBackend
from samples import logged
from smsroute.models.raw import RawEvent
from smsroute.providers.agiletelecom import Normalizing as AgileTelecom
from smsroute.rules import load_rules
from smsroute.streams.pipeline import Pipeline

ROUTES = Path(__file__).resolve().parents[2] / "routing_rules"


class Broken(AgileTelecom):
    def normalize(self, event: RawEvent, region: str | None):  # type: ignore[override]
        raise RuntimeError("a bug in a normalizer")


def pipeline(normalizer: AgileTelecom) -> Pipeline:
    rules = load_rules(ROUTES)
    return Pipeline({"agiletelecom": normalizer}, MemoryBackend(), lambda: rules)


def event(text: str) -> bytes:
    body = f"originator=%2B393331234567&destination=%2B393201234567&date_time=2026-11-21+10%3A00%3A00&text={text}"
    return logged("agiletelecom", body.encode(), "k", received=0).encode()


def test_an_adapter_bug_is_a_dead_letter_with_the_raw_event() -> None:
    outcome = pipeline(Broken()).process(event("hello"), now=0.0)
    [letter] = outcome.dead_letters
    assert (letter.stage, letter.reason) == ("normalize", "error: RuntimeError: a bug in a normalizer")
    assert RawEvent.decode(letter.payload).body.endswith(b"text=hello")
    assert outcome.deliveries == []


def test_an_undecodable_record_is_a_dead_letter() -> None:
    outcome = pipeline(AgileTelecom()).process(b"\x01garbage", now=0.0)
    [letter] = outcome.dead_letters
    assert letter.stage == "normalize" and letter.reason.startswith("undecodable:")
    assert letter.payload == b"\x01garbage"


def test_a_good_event_after_them_is_routed() -> None:
    outcome = pipeline(AgileTelecom()).process(event("STOP"), now=0.0)
    assert outcome.dead_letters == []
    assert {delivery.route for delivery in outcome.deliveries} >= {"opt-out-audit"}
