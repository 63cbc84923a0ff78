"""The sinks as the engines run them: their connections, one sender per action kind, and a word at
start-up about the action kinds no sink is configured for (their deliveries become dead letters)."""

from __future__ import annotations

import logging

import aiohttp

from ..config import Settings
from ..rules import RuleSet
from . import email, sms_reply, webhook
from .outbound import build_provider
from .outcome import Sender

log = logging.getLogger("smsroute")


class Sinks:
    """``senders`` by action kind, once :meth:`open`; ``replies``: the opt-out list and reply ledger
    SMS replies are guarded by (None: the engine sends none)."""

    def __init__(self, settings: Settings, replies: tuple[sms_reply.OptOutList, sms_reply.ReplyLedger] | None) -> None:
        self.settings = settings
        self.replies = replies
        self.senders: dict[str, Sender] = {}
        self._session: aiohttp.ClientSession | None = None
        self._smtp: email.Pool | None = None

    async def open(self) -> None:
        settings = self.settings
        self._session = session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=settings.per_destination)
        )
        self.senders["webhook"] = webhook.sender(session)
        if settings.smtp is not None:
            self._smtp = email.Pool(settings.smtp)
            self.senders["email"] = email.sender(self._smtp)
        provider = build_provider(settings.sms_reply, session)
        if provider is not None and self.replies is not None:
            opt_outs, ledger = self.replies
            self.senders["sms_reply"] = sms_reply.sender(provider, settings.sms_reply, opt_outs, ledger)

    def warn_missing(self, rules: RuleSet) -> None:
        """Routes whose actions have no sink would fill the dead letters: say so at start-up."""
        for kind in sorted({action.kind for route in rules.routes for action in route.actions} - set(self.senders)):
            log.warning(
                f"routes have {kind} actions but no {kind} sink is configured: their deliveries become dead letters",
                extra={"event": "sink_missing", "sink": kind},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._smtp is not None:
            await self._smtp.close()
