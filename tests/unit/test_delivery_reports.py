"""Delivery reports: every SMSGateway24 status code mapped, reports stored once, linked to the
reply they report on, a final status never overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from samples import GATEWAY24_STATUS as STATUS
from smsroute.engines.embedded.state import State
from smsroute.models.raw import RawEvent
from smsroute.models.report import DeliveryReport
from smsroute.providers import smsgateway24
from smsroute.providers.kit import Unprocessable

NORMALIZER = smsgateway24.Normalizing()

# Every status_id of the document and what it means for an SMS we sent.
DOCUMENTED = {
    1: "pending",
    2: "pending",
    3: "pending",
    5: "pending",
    6: "sent",
    7: "delivered",
    8: "failed",
    9: "failed",
    10: "failed",
    11: "failed",
    12: "failed",
    100: "failed",
    101: "failed",
}


def status_event(**fields: Any) -> RawEvent:
    body = json.dumps({**STATUS, **fields}).encode()
    return RawEvent(
        "smsgateway24",
        "smsgateway24",
        "status",
        1_700_000_000_000_000,
        "127.0.0.1",
        "POST",
        "/status/smsgateway24",
        "",
        "application/json",
        {},
        body,
        "k",
    )


@pytest.mark.parametrize(("code", "status"), sorted(DOCUMENTED.items()))
def test_every_documented_status_code_is_mapped(code: int, status: str) -> None:
    for sent_as in (code, str(code)):  # the document types it int, phones send strings too
        report = NORMALIZER.report(status_event(status_id=sent_as), "IT")
        assert (report.status, report.code) == (status, str(code))
    assert report.provider_message_id == str(STATUS["sms_id"])
    assert report.recipient == STATUS["sendto"]
    assert report.provider_time == datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)
    assert report.description.endswith(f": {STATUS['status_message']}")


def test_an_undocumented_code_is_kept_as_unknown_not_guessed() -> None:
    report = NORMALIZER.report(status_event(status_id=42, status_message=""), "IT")
    assert (report.status, report.code, report.description) == (
        "unknown",
        "42",
        "a status code the document does not list",
    )


def test_an_inbound_event_is_no_report() -> None:
    event = status_event()
    event.kind = "inbound"
    with pytest.raises(Unprocessable):
        NORMALIZER.report(event, "IT")


def report(status: str, code: str, sms_id: str = "22074938") -> DeliveryReport:
    return DeliveryReport(
        "smsgateway24",
        sms_id,
        status,
        code,
        "",
        "+393331234567",  # type: ignore[arg-type]
        datetime(2026, 11, 21, tzinfo=UTC),
    )


def test_reports_link_to_the_reply_and_its_first_final_status_sticks(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    state.replies.reserve("d1", "m1", "+393331234567", "smsgateway24", 1.0)
    state.replies.sent("d1", "22074938", 2.0)
    linked = state.reports.add(report("sent", "6"), 3.0)
    assert linked is not None and (linked.delivery_id, linked.became) == ("d1", None)
    linked = state.reports.add(report("delivered", "7"), 4.0)
    assert linked is not None and (linked.delivery_id, linked.became) == ("d1", "delivered")
    assert state.reports.add(report("delivered", "7"), 5.0) is None  # the same report again
    late = state.reports.add(report("failed", "8"), 6.0)
    assert late is not None and late.became is None
    assert [r["status"] for r in state.replies.all()] == ["delivered"]
    assert [(r["code"], r["delivery_id"]) for r in state.reports.all("d1")] == [("6", "d1"), ("7", "d1"), ("8", "d1")]
    other = state.reports.add(report("delivered", "7", sms_id="999"), 7.0)
    assert other is not None and (other.delivery_id, other.became) == (None, None)
    state.close()
