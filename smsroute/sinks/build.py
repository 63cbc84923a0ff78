"""The sinks as the engines build them: one sender per action kind, and a word about the missing ones."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp

from ..config import Settings
from ..engines.embedded.state import StateDB
from ..rules.watch import RulesWatcher
from . import sms_reply, webhook
from .outbound import build_provider
from .outcome import Sender

log = logging.getLogger("smsroute")


def build_senders(settings: Settings, state: StateDB, session: aiohttp.ClientSession) -> dict[str, Sender]:
    """The HTTP sinks by action kind (email has its own connections); a kind without a sink
    dead-letters its deliveries with that reason."""
    senders: dict[str, Sender] = {"webhook": webhook.sender(session)}
    provider = build_provider(settings.sms_reply, session)
    if provider is not None:
        senders["sms_reply"] = sms_reply.sender(provider, settings.sms_reply, state.opt_outs, state)
    return senders


def log_missing_sinks(rules: RulesWatcher, senders: Mapping[str, Sender]) -> None:
    """Routes whose actions have no sink would fill the dead letters: say so at start-up."""
    for kind in sorted({action.kind for route in rules.rules.routes for action in route.actions} - set(senders)):
        log.warning(
            f"routes have {kind} actions but no {kind} sink is configured: their deliveries become dead letters",
            extra={"event": "sink_missing", "sink": kind},
        )
