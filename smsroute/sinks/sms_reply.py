"""The SMS reply sink: answers the sender of a routed message through the outbound provider.

Before anything is sent, the guards users expect; the first that holds suppresses the reply, which
is then final (counted, logged, never retried, not a dead letter):

- ``opted_out``: the number sent STOP and no START since (a compliance route's own replies, such as
  the STOP confirmation or a HELP answer, still go);
- ``loop``: the number is where our replies come from, or listed in ``never_reply_to`` (other
  auto-responders): never auto-reply to an auto-reply;
- ``already_replied``: another reply to the same message exists: one message, one reply, across
  restarts (a retry of this reply is the same reply);
- ``rate_limited``: ``rate_limit`` replies to this number within ``rate_window`` already. Checked
  on the first attempt only: once admitted, a reply keeps its place through its retries.

The guards' memory is the reply ledger (the state db), written before the provider is called: two
replies in flight see each other. A reply's "sent" record is made durable (fsynced) before the
attempt counts as delivered. A reply the provider took is ``delivered`` for the dispatcher (and
recorded sent at once, so a crash before the dispatcher records the attempt sends no second SMS);
a refusal for good (a bad destination) is a permanent failure; anything else is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .. import metrics
from ..config import SmsReplyConfig
from ..models.attempt import Attempt
from ..models.delivery import Delivery
from ..models.report import DeliveryReport
from ..rules.templates import RenderError, render
from ..streams.optouts import OptOut
from .outbound import Provider, Reply

log = logging.getLogger("smsroute.sinks")


class OptOutList(Protocol):
    def get(self, number: str) -> OptOut | None: ...


class ReplyLedger(Protocol):
    """Every reply made, for the guards and for linking delivery reports (the state db)."""

    def reply_for(self, message_id: str) -> tuple[str, str] | None: ...

    def recent_replies(self, recipient: str, since: float) -> int: ...

    def reserve(self, delivery_id: str, message_id: str, recipient: str, provider: str, now: float) -> None: ...

    def sent(self, delivery_id: str, provider_message_id: str | None, now: float) -> None: ...

    def failed(self, delivery_id: str, now: float) -> None: ...

    def sync(self) -> None:
        """Make the records so far survive a power loss (called from a thread)."""


class Guards:
    """The four checks, in the order of the module's docstring, over the opt-out list and the ledger."""

    def __init__(
        self, config: SmsReplyConfig, own_senders: frozenset[str], opt_outs: OptOutList, ledger: ReplyLedger
    ) -> None:
        self.config = config
        self.never = tuple(number.lstrip("+") for number in config.never_reply_to)
        self.own = frozenset(sender.lstrip("+") for sender in own_senders)
        self.opt_outs = opt_outs
        self.ledger = ledger

    def suppress(self, delivery: Delivery, recipient: str, now: float, replied: tuple[str, str] | None) -> str | None:
        """Why this reply must not be sent (``reason: words``), or None. ``replied``: the ledger's
        reply to the same message (delivery id, status), if any."""
        if delivery.action.get("compliance") is None and (opt_out := self.opt_outs.get(recipient)) is not None:
            return f"opted_out: {recipient} opted out (message {opt_out.message_id})"
        bare = recipient.lstrip("+")
        if bare in self.own or (self.never and bare.startswith(self.never)):
            return f"loop: {recipient} is one of our senders or in sms_reply.never_reply_to"
        if replied is not None and replied[0] == delivery.id:
            return None  # a retry of this very reply: admitted before
        if replied is not None:
            return f"already_replied: message {delivery.message_id} was answered by delivery {replied[0]}"
        recent = self.ledger.recent_replies(recipient, now - self.config.rate_window)
        if recent >= self.config.rate_limit:
            return (
                f"rate_limited: {recent} replies to {recipient} in the last {self.config.rate_window:g} s"
                f" (limit {self.config.rate_limit})"
            )
        return None


def sender(
    provider: Provider, config: SmsReplyConfig, opt_outs: OptOutList, ledger: ReplyLedger
) -> Callable[[Delivery], Awaitable[Attempt]]:
    """The SMS reply sink as the dispatcher calls it."""
    guards = Guards(config, provider.senders, opt_outs, ledger)

    async def send(delivery: Delivery) -> Attempt:
        started = time.perf_counter()
        now = time.time()
        message = delivery.message
        recipient = str(message.get("from") or "")
        if not recipient:
            return Attempt("failed", None, "the message has no sender to reply to", 0.0, code="error", permanent=True)
        replied = ledger.reply_for(delivery.message_id)
        if replied in ((delivery.id, "sent"), (delivery.id, "delivered")):
            # sent before a crash took the dispatcher's record of it: the ledger remembers, no second SMS
            return Attempt("delivered", None, "", 0.0)
        if (why := guards.suppress(delivery, recipient, now, replied)) is not None:
            metrics.REPLIES_SUPPRESSED.labels(why.split(":", 1)[0]).inc()
            metrics.SMS_REPLIES.labels(provider.name, "suppressed").inc()
            return Attempt("suppressed", None, why, time.perf_counter() - started)
        try:
            text = render(delivery.action["text"], message)
        except RenderError as exc:  # a retry would render the same
            return Attempt("failed", None, str(exc), 0.0, code="error", permanent=True)
        if not text.strip():
            return Attempt("failed", None, "the reply text rendered empty", 0.0, code="error", permanent=True)
        ledger.reserve(delivery.id, delivery.message_id, recipient, provider.name, now)
        result = await provider.send(Reply(delivery.id, recipient, text))
        duration = time.perf_counter() - started
        if result.status == "sent":
            ledger.sent(delivery.id, result.provider_message_id, time.time())
            await asyncio.to_thread(
                ledger.sync
            )  # a reply the provider took is never sent again, even after a power loss
            metrics.SMS_REPLIES.labels(provider.name, "sent").inc()
            log.info(
                f"sms reply sent through {provider.name}",
                extra={
                    "event": "sms_reply_sent",
                    "delivery_id": delivery.id,
                    "message_id": delivery.message_id,
                    "provider": provider.name,
                    "provider_message_id": result.provider_message_id,
                    "code": result.code,
                },
            )
            return Attempt("delivered", None, "", duration)
        code = metric_code(result.code)
        if result.status == "failed":
            ledger.failed(delivery.id, time.time())
            metrics.SMS_REPLIES.labels(provider.name, "failed").inc()
            return Attempt("failed", None, result.reason, duration, code=code, permanent=True)
        return Attempt("failed", None, result.reason, duration, code=code)

    return send


def metric_code(code: str) -> str:
    """A provider's answer code as a bounded metric label: providers may answer codes no one listed."""
    if code in ("timeout", "network"):
        return code
    if code.startswith("http_") and code[5:].isdigit():
        return f"http_{code[5]}xx"
    if code in ("not_json", "bad_answer"):
        return "bad_answer"
    return "provider_error"


def count_report(report: DeliveryReport, delivery_id: str | None, became: str | None) -> None:
    """Count and log a delivery report, as either engine linked it: to our reply ``delivery_id``
    (None: not ours, or not found), whose outcome ``became`` final with it (None: no change)."""
    metrics.DELIVERY_REPORTS.labels(report.provider, report.status, str(delivery_id is not None).lower()).inc()
    if became is not None:
        metrics.SMS_REPLIES.labels(report.provider, became).inc()
    log.info(
        f"delivery report: {report.status} ({report.description})",
        extra={
            "event": "delivery_report",
            "provider": report.provider,
            "provider_message_id": report.provider_message_id,
            "status": report.status,
            "code": report.code,
            "delivery_id": delivery_id,
        },
    )
