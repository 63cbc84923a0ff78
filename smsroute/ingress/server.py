"""The ingress served over HTTP, over whatever log it writes to: SQLite in the embedded engine,
Kafka in ``smsroute ingress`` (:mod:`smsroute.engines.kafka.ingress`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ..config import Settings
from ..health import MoreMetrics
from ..providers.base import Receiver
from .app import create_app
from .log import EventLog

log = logging.getLogger("smsroute")


class IngressServer:
    """The ingress app on ``settings.host:settings.port``; with port 0, ``port`` is the one chosen."""

    def __init__(
        self,
        settings: Settings,
        receivers: Mapping[str, Receiver],
        event_log: EventLog,
        more_metrics: MoreMetrics | None = None,
        operators: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.settings = settings
        self.receivers = receivers
        self.port = settings.port
        self._runner = web.AppRunner(
            create_app(settings, receivers, event_log, more_metrics, operators=operators), access_log=None
        )

    @property
    def running(self) -> bool:
        return self._runner.server is not None

    async def start(self, **details: Any) -> None:
        """Listen, log every mount and its authentication, then "listening" with ``details``."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        for name, receiver in self.receivers.items():
            auth = describe_auth(receiver)
            log.log(
                logging.WARNING if auth == "none" else logging.INFO,
                f"ingress {name} mounted" + (" with no authentication" if auth == "none" else ""),
                extra={
                    "event": "ingress_mounted",
                    "source": name,
                    "provider": receiver.provider,
                    "auth": auth,
                    "paths": [f"/{kind}/{name}" for kind in sorted(receiver.kinds)],
                },
            )
        log.info(f"listening on http://{self.settings.host}:{self.port}", extra={"event": "listening", **details})

    async def stop(self) -> None:
        """Finish the requests in flight (their log writes included), then close."""
        await self._runner.cleanup()


def describe_auth(receiver: Receiver) -> str:
    config = receiver.config
    checks = [
        name
        for name, on in (
            ("signature", receiver.signed),
            ("token", config.token is not None),
            ("ip-allow-list", bool(config.allow_ips)),
        )
        if on
    ]
    return "+".join(checks) or "none"
