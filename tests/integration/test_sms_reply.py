"""The SMS reply sink and its guards, with the real state db (reopened to play a restart) and a
real HTTP server playing openvoip: what is sent, what is suppressed and why, what is final."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_providers import FakeOpenVoip
from smsroute.config import load_settings
from smsroute.engines.embedded.state import State
from smsroute.models.delivery import Delivery
from smsroute.sinks.outbound import build_provider
from smsroute.sinks.sms_reply import sender
from smsroute.streams.optouts import OptOuts

ALICE = "+393331234567"
BOB = "+393337654321"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def delivery(
    number: int, sender_number: str = ALICE, text: str = "Ciao {{ from }}, grazie per {{ keyword }}!", **action: Any
) -> Delivery:
    message = {
        "id": f"m{number}",
        "from": sender_number,
        "to": "+393201234567",
        "text": "INFO prezzi",
        "keyword": "INFO",
        "route": "info",
    }
    return Delivery(
        f"d{number}",
        f"m{number}",
        "info",
        "sms_reply",
        {"text": text, "retry": {"delays": [1]}, **action},
        json.dumps(message),
        0.0,
    )


class Sink:
    """The sink as the engine builds it, over a state db that can be closed and reopened."""

    def __init__(self, path: Path, http: aiohttp.ClientSession, openvoip: FakeOpenVoip, **reply: Any) -> None:
        self.path, self.http = path, http
        self.config = load_settings(
            sms_reply={"provider": "openvoip", "openvoip": openvoip.settings(), **reply}
        ).sms_reply
        self.open()

    def open(self) -> None:
        self.state = State(self.path)
        provider = build_provider(self.config, self.http)
        assert provider is not None
        self.send = sender(provider, self.config, self.state.opt_outs, self.state.replies)

    def restart(self) -> None:
        self.state.close()
        self.open()


@pytest.fixture
def sink(tmp_path: Path, http: aiohttp.ClientSession, openvoip: FakeOpenVoip) -> Callable[..., Sink]:
    made: list[Sink] = []

    def make(**reply: Any) -> Sink:
        made.append(Sink(tmp_path / "state.db", http, openvoip, **reply))
        return made[-1]

    yield make  # type: ignore[misc]
    for each in made:
        each.state.close()


def texts(openvoip: FakeOpenVoip) -> list[tuple[str, str]]:
    return [(r["params"]["sms_destination"], r["params"]["sms_text"]) for r in openvoip.requests]


async def test_reply_is_rendered_sent_and_recorded(sink: Callable[..., Sink], openvoip: FakeOpenVoip) -> None:
    run = sink()
    attempt = await run.send(delivery(1))
    assert (attempt.outcome, attempt.error, attempt.permanent) == ("delivered", "", False)
    assert texts(openvoip) == [(ALICE, f"Ciao {ALICE}, grazie per INFO!")]
    [reply] = run.state.replies.all()
    assert (reply["delivery_id"], reply["message_id"], reply["recipient"], reply["provider"], reply["status"]) == (
        "d1",
        "m1",
        ALICE,
        "openvoip",
        "sent",
    )


async def test_rate_limit_per_recipient_survives_a_restart(sink: Callable[..., Sink], openvoip: FakeOpenVoip) -> None:
    run = sink(rate_limit=2, rate_window=3600)
    assert [(await run.send(delivery(n))).outcome for n in (1, 2)] == ["delivered", "delivered"]
    run.restart()
    third = await run.send(delivery(3))
    assert third.outcome == "suppressed" and third.error.startswith(f"rate_limited: 2 replies to {ALICE}")
    assert (await run.send(delivery(4, BOB))).outcome == "delivered"  # another number has its own budget
    assert [destination for destination, _ in texts(openvoip)] == [ALICE, ALICE, BOB]


async def test_a_retry_of_an_admitted_reply_is_not_rate_limited(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    run = sink(rate_limit=1)
    openvoip.answers.append("099")
    first = await run.send(delivery(1))
    assert (first.outcome, first.permanent, first.error, first.code) == (
        "failed",
        False,
        "openvoip 099: Errore generico",
        "provider_error",
    )
    assert (await run.send(delivery(1))).outcome == "delivered"  # the same delivery again: its place is kept
    assert (await run.send(delivery(2))).outcome == "suppressed"


async def test_never_two_replies_to_one_message_even_after_a_restart(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    run = sink()
    assert (await run.send(delivery(1))).outcome == "delivered"
    run.restart()
    other_route = Delivery(
        "d1-other", "m1", "info-2", "sms_reply", {"text": "again", "retry": {"delays": []}}, delivery(1).body, 0.0
    )
    second = await run.send(other_route)
    assert (second.outcome, second.error) == ("suppressed", "already_replied: message m1 was answered by delivery d1")
    assert len(openvoip.requests) == 1


@pytest.mark.parametrize("number", ["ACME", "+39800123456", "+393209999999"])
async def test_loop_guard_never_answers_our_senders_or_listed_numbers(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
    number: str,
) -> None:
    run = sink(never_reply_to=["+39 800", "+393209999999"])
    attempt = await run.send(delivery(1, number))
    assert attempt.outcome == "suppressed" and attempt.error.startswith(f"loop: {number} ")
    assert openvoip.requests == [] and run.state.replies.all() == []


async def test_opted_out_number_gets_only_compliance_replies_until_it_opts_in(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    run = sink()
    opt_outs = OptOuts(run.state.opt_outs)
    opt_outs.apply("stop", ALICE, "m-stop", 100.0)
    run.restart()
    info = await run.send(delivery(1))
    assert (info.outcome, info.error) == ("suppressed", f"opted_out: {ALICE} opted out (message m-stop)")
    confirmation = await run.send(delivery(2, text="You will get no more messages.", compliance="stop"))
    assert confirmation.outcome == "delivered"
    OptOuts(run.state.opt_outs).apply("start", ALICE, "m-start", 200.0)
    assert (await run.send(delivery(3))).outcome == "delivered"
    assert [text for _, text in texts(openvoip)] == [
        "You will get no more messages.",
        f"Ciao {ALICE}, grazie per INFO!",
    ]


async def test_final_refusals_are_permanent_and_do_not_use_the_budget(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    run = sink(rate_limit=1)
    openvoip.answers.append("020")
    refused = await run.send(delivery(1))
    assert (refused.outcome, refused.permanent) == ("failed", True)
    assert refused.error.startswith("openvoip 020: ")
    abroad = await run.send(delivery(2, "+447700900123"))
    assert (abroad.outcome, abroad.permanent) == ("failed", True)
    assert "only to Italian numbers" in abroad.error
    assert [reply["status"] for reply in run.state.replies.all()] == ["failed", "failed"]
    assert (await run.send(delivery(3))).outcome == "delivered"  # refused replies reached no one


async def test_template_that_fails_on_the_message_is_a_permanent_failure(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    run = sink()
    attempt = await run.send(delivery(1, text="{{ extra.carrier }}"))
    assert (attempt.outcome, attempt.permanent) == ("failed", True)
    assert attempt.error.startswith("template failed: ")
    assert openvoip.requests == []


async def test_a_reply_sent_before_a_crash_is_not_sent_again(sink: Callable[..., Sink], openvoip: FakeOpenVoip) -> None:
    run = sink()
    assert (await run.send(delivery(1))).outcome == "delivered"
    run.restart()  # the dispatcher's record of that attempt was lost: the delivery is claimed again
    again = await run.send(delivery(1))
    assert (again.outcome, len(openvoip.requests)) == ("delivered", 1)


async def test_the_sent_record_is_made_durable_before_the_attempt_counts(
    sink: Callable[..., Sink],
    openvoip: FakeOpenVoip,
) -> None:
    """state.db commits survive a crash, not a power loss (synchronous=NORMAL): the record that a
    reply went out is fsynced before the dispatcher learns it was delivered."""
    run = sink()
    calls: list[str] = []
    reply_sent, sync = run.state.replies.sent, run.state.replies.sync
    run.state.replies.sent = lambda *args: (calls.append("sent"), reply_sent(*args))[1]  # type: ignore[method-assign]
    run.state.replies.sync = lambda: (calls.append("sync"), sync())[1]  # type: ignore[method-assign]
    attempt = await run.send(delivery(1))
    calls.append(attempt.outcome)
    assert calls == ["sent", "sync", "delivered"]
