"""The email sink: the routed message as an email, through one SMTP server, over reused connections.

A small pool keeps up to ``pool_size`` connections open and authenticated, so a burst of emails
costs one TLS handshake and one login per connection, not per email. A connection the server
dropped is replaced; an email that met a dropped connection is sent once more on a fresh one.

What the server says decides what follows: a 4xx (greylisting, a full queue) and any network
trouble are tried again on the route's schedule; a 5xx reply to the message's envelope or content
is final, and the delivery is a dead letter at once. Login and TLS failures are the operator's to
fix, not the message's: they are retried, so fixed settings still deliver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate

import aiosmtplib

from ..config import SMTPConfig
from ..models.attempt import Attempt
from ..models.delivery import Delivery
from ..rules.templates import RenderError, render

log = logging.getLogger("smsroute.sinks.email")

USER_AGENT = "smsroute-email/1"
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


class Pool:
    """Open, authenticated SMTP connections to the configured server, reused one email at a time."""

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(config.pool_size)
        self._tls = _tls_context(config) if config.tls != "none" else None

    async def send(self, email: Message, recipients: list[str]) -> Attempt:
        """One attempt at one email; never raises for what the network or the server does."""
        started = time.perf_counter()
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            refused: str | None = None
            try:
                if client is not None and client.is_connected:
                    with contextlib.suppress(aiosmtplib.SMTPServerDisconnected):  # closed while idle
                        refused = await self._transact(client, email, recipients)
                if refused is None:
                    client = None
                    client = await self._connect()
                    refused = await self._transact(client, email, recipients)
            except aiosmtplib.SMTPResponseException as exc:
                self._keep(client)
                return _refusal(exc, time.perf_counter() - started)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._keep(client)
                return _refused_all(exc, time.perf_counter() - started)
            except _CONNECTION_ERRORS as exc:
                if client is not None:
                    client.close()
                code = "timeout" if isinstance(exc, asyncio.TimeoutError) else "network"  # SMTPTimeoutError is one
                return Attempt("failed", None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started, code=code)
            self._keep(client)
        return Attempt("delivered", 250, refused, time.perf_counter() - started)

    async def close(self) -> None:
        """Say goodbye on every idle connection."""
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except _CONNECTION_ERRORS:
                client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.server_port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            timeout=config.timeout,
            use_tls=config.tls == "tls",
            start_tls=config.tls == "starttls",
            tls_context=self._tls,
        )
        try:
            await client.connect()  # greeting, EHLO, STARTTLS, login
        except BaseException:
            client.close()
            raise
        return client

    async def _transact(self, client: aiosmtplib.SMTP, email: Message, recipients: list[str]) -> str:
        """Send; what some (not all) recipients refused, as text for the attempt's record."""
        refused, _ = await client.send_message(email, sender=self.config.from_address, recipients=recipients)
        if not refused:
            return ""
        text = "; ".join(f"{address} refused: {reply.code} {reply.message}" for address, reply in refused.items())
        log.warning(
            "some recipients refused the email",
            extra={"event": "email_recipients_refused", "refused": sorted(refused), "detail": text},
        )
        return text

    def _keep(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            self._idle.append(client)


def _tls_context(config: SMTPConfig) -> ssl.SSLContext:
    """Verified TLS: the system's CAs, or only those of ``ca_file``."""
    return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)


_SETUP_ERRORS = (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPHeloError, aiosmtplib.SMTPConnectResponseError)
NEEDS_AUTHENTICATION = 530
"""530: the server wants a login (or STARTTLS) first: our settings are wrong, not the email."""


def _refusal(exc: aiosmtplib.SMTPResponseException, duration: float) -> Attempt:
    permanent = exc.code >= 500 and exc.code != NEEDS_AUTHENTICATION and not isinstance(exc, _SETUP_ERRORS)
    code = f"smtp_{exc.code // 100}xx"
    return Attempt("failed", exc.code, f"SMTP {exc.code}: {exc.message}", duration, code=code, permanent=permanent)


def _refused_all(exc: aiosmtplib.SMTPRecipientsRefused, duration: float) -> Attempt:
    """Every recipient refused: final only when every refusal is (a 4xx one may pass later)."""
    codes = [refusal.code for refusal in exc.recipients]
    text = "; ".join(f"{refusal.recipient} refused: {refusal.code} {refusal.message}" for refusal in exc.recipients)
    code = f"smtp_{min(codes) // 100}xx"
    return Attempt("failed", max(codes), f"SMTP {text}", duration, code=code, permanent=min(codes) >= 500)


def compose(delivery: Delivery, from_address: str) -> Message:
    """The email of one delivery: rendered subject and body, the HTML alternative if the route has one.

    ``Message-ID`` is derived from the delivery id, the same on every retry, so a mail system can
    recognise a repeat. ``Auto-Submitted`` tells auto-responders not to answer (RFC 3834). Built
    with the classic MIME classes: the header-parsing ``EmailMessage`` API costs about 1 ms of the
    event loop per email, these about 40 µs."""
    action, message = delivery.action, delivery.message
    email: Message = _text(render(action["body"], message), "plain")
    if action.get("html"):
        email = MIMEMultipart(
            "alternative", _subparts=[email, _text(render(action["html"], message, html=True), "html")]
        )
    subject = " ".join(render(action["subject"], message).split())  # one line, whatever the SMS held
    email["From"] = from_address
    email["To"] = ", ".join(action["to"])
    email["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = f"<{delivery.id}@{from_address.rpartition('@')[2]}>"
    email["Auto-Submitted"] = "auto-generated"
    email["X-Mailer"] = USER_AGENT
    email["X-Smsroute-Route"] = delivery.route
    email["X-Smsroute-Message-Id"] = delivery.message_id
    return email


def _text(content: str, subtype: str) -> MIMEText:
    """UTF-8 as quoted-printable: readable in the raw, safe for any server."""
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return MIMEText(content, subtype, charset)  # type: ignore[arg-type]


def sender(pool: Pool) -> Callable[[Delivery], Awaitable[Attempt]]:
    """The email sink as the dispatcher calls it."""

    async def send(delivery: Delivery) -> Attempt:
        try:
            email = compose(delivery, pool.config.from_address)
        except RenderError as exc:  # the same on every retry
            return Attempt("failed", None, f"cannot compose the email: {exc}", 0.0, code="template", permanent=True)
        return await pool.send(email, list(delivery.action["to"]))

    return send
