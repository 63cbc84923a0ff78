"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1, in the test's event loop) that records
every connection and message, and answers what a test tells it to: fixtures ``start_smtp`` and
``certificates`` (registered by tests/conftest.py), and the email tests' settings and routes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "smsroute", "s3cret-pa55"
FROM = "smsroute@example.com"
"""The engine's sender address in the email tests' settings."""
RULES = """
routes:
  - name: info
    match: {keyword: INFO}
    actions:
      - email:
          to: [sales@example.com, desk@example.com]
          subject: "INFO from {{ from }}: {{ text }}"
          body: |
            {{ from }} wrote to {{ to }} at {{ received_at }}:
            {{ text }}
          html: "<p><b>{{ from }}</b>: {{ text }}</p>"
          retry: {schedule: [0.2, 0.2, 0.2]}
  - name: refused
    match: {keyword: REFUSED}
    actions: [{email: {to: [nobody@example.com], retry: {schedule: [0.2, 0.2, 0.2]}}}]
  - name: broken
    match: {keyword: BROKEN}
    actions: [{email: {to: [ops@example.com], subject: "{{ extra.device }}", retry: {schedule: [0.2, 0.2]}}}]
  - name: rest
    actions: [{email: {to: [ops@example.com], retry: {schedule: [0.2, 0.2]}}}]
"""
"""The email tests' routes: INFO to two recipients with every template, REFUSED, BROKEN (a template
that fails on every message) and the rest to ops."""


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    connection: int
    """Which connection (1, 2...) it came over."""
    tls: bool
    login: str | None


@dataclass
class Mailbox:
    """What the server got. ``replies`` are answers to the next DATA commands, in order (then 250);
    ``refuse`` maps a recipient to the answer its RCPT gets."""

    port: int = 0
    connections: list[SMTP] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_commands: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_commands += 1
        if self.replies:
            return self.replies.pop(0)
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        login = session.auth_data.login.decode() if session.authenticated else None
        connection = next(n for n, smtp in enumerate(self.connections, 1) if smtp is server)
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(envelope.mail_from or "", list(envelope.rcpt_tos), message, connection, tls, login)
        )
        return "250 2.0.0 queued"

    def drop_connections(self) -> None:
        """As a server does to idle clients."""
        for smtp in self.connections:
            if smtp.transport is not None:
                smtp.transport.close()


def smtp_settings(mailbox: Mailbox, **overrides: Any) -> dict[str, Any]:
    """``[smtp]`` settings for a server started by ``start_smtp`` (plain, no login, unless overridden)."""
    return {"host": "127.0.0.1", "port": mailbox.port, "tls": "none", "from_address": FROM, **overrides}


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)  # handled=False: aiosmtpd answers 535


@dataclass
class Certificates:
    """A test CA (trustme) and a certificate for 127.0.0.1 it signed; ``ca_file`` is what clients trust."""

    ca_file: Path
    server: ssl.SSLContext


StartSMTP = Callable[..., Awaitable[Mailbox]]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certificates(ca_file, server)


@pytest.fixture
async def start_smtp(certificates: Certificates) -> AsyncIterator[StartSMTP]:
    """``await start_smtp(tls="none"|"starttls"|"tls", auth=False)``: a running server, stopped after the test."""
    servers: list[tuple[asyncio.AbstractServer, Mailbox]] = []

    async def start(tls: str = "none", auth: bool = False) -> Mailbox:
        mailbox = Mailbox()

        def connection() -> SMTP:
            with warnings.catch_warnings():  # "AUTH without TLS": aiosmtpd cannot see implicit TLS, but it is there
                warnings.simplefilter("ignore", UserWarning)
                smtp = SMTP(
                    mailbox,
                    hostname="mx.test",
                    tls_context=certificates.server if tls == "starttls" else None,
                    require_starttls=tls == "starttls",
                    authenticator=_authenticate if auth else None,
                    auth_required=auth,
                    auth_require_tls=tls == "starttls",
                )
            mailbox.connections.append(smtp)
            return smtp

        loop = asyncio.get_running_loop()
        server = await loop.create_server(connection, "127.0.0.1", 0, ssl=certificates.server if tls == "tls" else None)
        servers.append((server, mailbox))
        mailbox.port = server.sockets[0].getsockname()[1]
        return mailbox

    yield start
    for server, mailbox in servers:
        server.close()
        mailbox.drop_connections()
        await server.wait_closed()
