"""The Kafka engine's ingress process (``smsroute ingress``): provider requests in, raw events
published to Kafka out; the workers read them from there."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ...config import KafkaConfig, Settings
from ...ingress.server import IngressServer
from ...ingress.smpp import Binds
from ...providers.base import Receiver
from .log import KafkaLog


class KafkaIngress:
    """The Kafka engine's ingress process (a :class:`~smsroute.engines.base.Service`): providers'
    requests in, raw events on Kafka out."""

    def __init__(self, settings: Settings, receivers: Mapping[str, Receiver], kafka: KafkaConfig) -> None:
        self.log = KafkaLog(kafka, settings.retention)
        self.server = IngressServer(settings, receivers, self.log)
        self.smpp = Binds(settings.smpp, self.log, settings.log_timeout)

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.log.start()
        await self.server.start(bootstrap_servers=self.log.config.bootstrap_servers, topic=self.log.topic)
        await self.smpp.start()

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def close(self) -> None:
        await self.smpp.stop()
        await self.server.stop()
        await self.log.stop()
