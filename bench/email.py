"""The email sink under load: what reusing SMTP connections buys.

A local aiosmtpd server (its own process, accepting everything) receives ``--emails`` emails sent
``--concurrency`` at a time, three ways, each over plain SMTP and over STARTTLS with a login (test
certificates from trustme):

- **pool**: :class:`smsroute.sinks.email.Pool` with ``--pool-size`` connections, as the engine sends;
- **pool of 1**: the same pool with one connection (every email waits its turn on it);
- **no reuse**: ``aiosmtplib.send`` per email, a new connection (TLS handshake, login) each time.

It prints emails/s (the fastest of ``--repeat`` rounds: on a shared machine the slower ones measure
the neighbours) and the connections the server saw in that round. Run from the repository root:
``.venv/bin/python -m bench.email [--emails 2000] [--concurrency 32] [--pool-size 4] [--repeat 3] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import ssl
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiosmtplib
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from smsroute.config import SMTPConfig
from smsroute.models.delivery import Delivery
from smsroute.sinks.email import Pool, compose

from .ingress import free_port

USER, PASSWORD, FROM = "bench", "bench-password", "smsroute@example.com"


class _Accept:
    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        return "250 OK"


def _login(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=isinstance(data, LoginPassword), handled=False)


def _serve(port: int, cert_dir: str, connections: Any) -> None:
    """The server process: STARTTLS offered, login accepted, every email taken."""
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd notes a deprecation at every login
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(f"{cert_dir}/server.pem")

    def session() -> SMTP:
        with connections.get_lock():
            connections.value += 1
        return SMTP(_Accept(), hostname="bench", tls_context=context, authenticator=_login, auth_require_tls=True)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(session, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


@dataclass
class Result:
    tls: str
    mode: str
    emails: int
    seconds: float
    connections: int
    failed: int

    @property
    def per_s(self) -> float:
        return self.emails / self.seconds


def _delivery(number: int) -> Delivery:
    message = {"from": "+393331234567", "to": "+393201234567", "text": f"bench {number}", "route": "bench"}
    action = {"to": ["ops@example.com"], "subject": "SMS from {{ from }}", "body": "{{ text }}"}
    return Delivery(f"msg_{number:032x}", f"m{number}", "bench", "email", action, json.dumps(message), time.time())


async def _run(config: SMTPConfig, mode: str, emails: int, concurrency: int) -> tuple[float, int]:
    """Seconds for all emails, and how many failed."""
    pool = Pool(config.model_copy(update={"pool_size": 1})) if mode == "pool of 1" else Pool(config)
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(number: int) -> None:
        nonlocal failed
        email = compose(_delivery(number), FROM)
        async with gate:
            if mode == "no reuse":
                try:
                    await aiosmtplib.send(
                        email,
                        hostname=config.host,
                        port=config.server_port,
                        start_tls=config.tls == "starttls",
                        username=config.username,
                        password=config.password.get_secret_value() if config.password else None,
                        tls_context=ssl.create_default_context(cafile=str(config.ca_file)) if config.ca_file else None,
                        sender=FROM,
                        recipients=["ops@example.com"],
                    )
                except aiosmtplib.SMTPException:
                    failed += 1
            elif (await pool.send(email, ["ops@example.com"])).outcome != "delivered":
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(number) for number in range(emails)))
    seconds = time.perf_counter() - started
    await pool.close()
    return seconds, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cert_dir:
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(f"{cert_dir}/server.pem")
        ca.cert_pem.write_to_path(f"{cert_dir}/ca.pem")
        port = free_port()
        connections = multiprocessing.Value("i", 0)
        server = multiprocessing.Process(target=_serve, args=(port, cert_dir, connections), daemon=True)
        server.start()
        time.sleep(1.0)
        base = {"host": "127.0.0.1", "port": port, "from_address": FROM, "pool_size": args.pool_size, "timeout": 60}
        setups = {
            "none": SMTPConfig.model_validate({**base, "tls": "none"}),
            "starttls+login": SMTPConfig.model_validate(
                {
                    **base,
                    "tls": "starttls",
                    "username": USER,
                    "password": PASSWORD,
                    "ca_file": Path(cert_dir) / "ca.pem",
                }
            ),
        }
        results = []
        try:
            for tls, config in setups.items():
                for mode in ("pool", "pool of 1", "no reuse"):
                    rounds = []
                    for _ in range(args.repeat):
                        before = connections.value
                        seconds, failed = asyncio.run(_run(config, mode, args.emails, args.concurrency))
                        rounds.append(Result(tls, mode, args.emails, seconds, connections.value - before, failed))
                    best = min(rounds, key=lambda result: result.seconds)
                    results.append(replace(best, failed=sum(result.failed for result in rounds)))
        finally:
            server.terminate()
            server.join()

    if args.json:
        print(json.dumps([asdict(result) | {"per_s": result.per_s} for result in results], indent=2))
    else:
        print(f"{args.emails} emails, {args.concurrency} at a time, pool_size {args.pool_size}")
        print(f"{'transport':<16}{'mode':<12}{'emails/s':>10}{'connections':>13}{'failed':>8}")
        for result in results:
            print(f"{result.tls:<16}{result.mode:<12}{result.per_s:>10,.0f}{result.connections:>13,}{result.failed:>8}")
    return 1 if any(result.failed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
