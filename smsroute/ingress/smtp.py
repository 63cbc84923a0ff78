"""The SMTP receiver: inbound SMS that a provider delivers by email, into the same durable log.

Each accepted email becomes one raw event, the whole email as its body (``message/rfc822``), so the
provider receiver normalizes it like its webhook posts. As with the HTTP ingress, nothing is
acknowledged before it is durable: ``250`` only after the log commit, ``451`` when the log cannot
take it (the sending server tries again later, as mail servers do). What can never be a message is
refused with a 5xx that says why, logged and counted, and never reaches the log: a From address not
allowed (550), no plain text or fields missing (554), too large (552).

Checking the From address keeps out mistakes, not attackers: anyone can write any From. Listen on
127.0.0.1 behind the mail server that receives from the provider, or on a network only it reaches.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from typing import AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from .. import metrics
from ..config import ConfigError, InboundEmailConfig
from ..models.raw import RawEvent
from ..providers import available, mail
from ..providers.base import Receiver
from .log import EventLog, LogUnavailable

log = logging.getLogger("smsroute.ingress.smtp")

STORED = "250 2.0.0 OK: stored"
RETRY_LATER = "451 4.3.0 temporarily unable to store the message; try again later"


class MailReceiver:
    """The aiosmtpd handler, and the server it runs in the engine's event loop."""

    def __init__(self, config: InboundEmailConfig, receiver: Receiver, event_log: EventLog, log_timeout: float) -> None:
        self.config = config
        self.receiver = receiver
        self.event_log = event_log
        self.log_timeout = log_timeout
        self.allowed = frozenset(address.lower() for address in config.allow_senders)
        self.port = config.port
        self._server: asyncio.AbstractServer | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._hostname = socket.gethostname()

    @classmethod
    def build(
        cls, config: InboundEmailConfig, names: set[str], event_log: EventLog, log_timeout: float
    ) -> MailReceiver:
        """The receiver ``config`` describes; :class:`ConfigError` for a provider that sends no email,
        or a source name an HTTP ingress (``names``) already has."""
        providers = {name: provider.receiving for name, provider in available().items()}
        by_email = sorted(name for name, receiving in providers.items() if receiving.email_labels)
        receiving = providers.get(config.provider)
        if receiving is None or not receiving.email_labels:
            raise ConfigError(
                f"inbound_email.provider: {config.provider!r} delivers no SMS by email (providers that do: {', '.join(by_email)})"
            )
        if config.source in names:
            raise ConfigError(f"inbound_email.source: {config.source!r} is already the name of an HTTP ingress")
        return cls(
            config, receiving(config.source, receiving.config_class(provider=config.provider)), event_log, log_timeout
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            f"inbound email on smtp://{self.config.host}:{self.port}",
            extra={
                "event": "mail_listening",
                "source": self.config.source,
                "provider": self.receiver.provider,
                "allow_senders": sorted(self.allowed),
            },
        )

    async def stop(self) -> None:
        """No new connections, and open ones closed: a client sending now is not answered 250 and
        sends again later, as mail servers do."""
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                if session.transport is not None:
                    session.transport.close()
            await self._server.wait_closed()
            self._server = None

    def _session(self) -> SMTP:
        session = _Session(
            self,
            hostname=self._hostname,
            ident="smsroute",
            data_size_limit=self.config.max_message_bytes,
            enable_SMTPUTF8=True,
        )
        self._sessions.add(session)
        return session

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook for a complete email: the reply is the SMTP answer."""
        started = time.perf_counter()
        received_at_us = time.time_ns() // 1000
        raw = envelope.original_content or b""
        try:
            answer, outcome = await self._accept(raw, session, envelope, received_at_us)
        except mail.Refused as exc:
            answer, outcome = exc.answer, exc.outcome
            self.refused(exc.answer, session, envelope)
        metrics.INGRESS_REQUESTS.labels(self.config.source, outcome).inc()
        metrics.INGRESS_LATENCY.labels(self.config.source).observe(time.perf_counter() - started)
        return answer

    async def _accept(self, raw: bytes, session: Session, envelope: Envelope, received_at_us: int) -> tuple[str, str]:
        """The SMTP answer and the metric outcome for an email that may be a message."""
        message = mail.parse(raw)
        sender = mail.sender(message)
        if sender not in self.allowed:
            raise mail.Refused("550 5.7.1", "forbidden", f"sender {sender} is not allowed here")
        fields = self.receiver.email_fields(message)
        event = RawEvent(
            ingress=self.receiver.name,
            provider=self.receiver.provider,
            kind="inbound",
            received_at_us=received_at_us,
            remote_addr=_peer(session),
            method="SMTP",
            path="",
            query="",
            content_type=mail.RFC822,
            headers={"mail-from": envelope.mail_from or "", "rcpt-to": ", ".join(envelope.rcpt_tos)},
            body=raw,
            key=self.receiver.key("inbound", fields),
        )
        try:
            async with asyncio.timeout(self.log_timeout):
                await self.event_log.append([(event.key, event.encode())])
        except (LogUnavailable, TimeoutError) as exc:
            log.error(
                "log unavailable", extra={"event": "log_unavailable", "source": self.receiver.name, "error": str(exc)}
            )
            return RETRY_LATER, "log_unavailable"
        metrics.INGRESS_EVENTS.labels(self.receiver.name, "inbound").inc()
        return STORED, "accepted"

    def refused(self, answer: str, session: Session, envelope: Envelope) -> None:
        log.warning(
            "email refused",
            extra={
                "event": "ingress_refused",
                "source": self.config.source,
                "smtp": answer,
                "remote": _peer(session),
                "mail_from": envelope.mail_from,
            },
        )


class _Session(SMTP):
    """One SMTP connection. aiosmtpd answers an email over ``data_size_limit`` with 552 by itself;
    this counts and logs it like every other refusal."""

    def __init__(self, receiver: MailReceiver, **options: object) -> None:
        super().__init__(receiver, **options)  # type: ignore[arg-type]
        self.receiver = receiver

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith("552"):
            self.receiver.refused(status, self.session, self.envelope)  # type: ignore[arg-type]
            metrics.INGRESS_REQUESTS.labels(self.receiver.config.source, "too_large").inc()
        await super().push(status)


def _peer(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
