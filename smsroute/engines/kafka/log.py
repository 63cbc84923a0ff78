"""The ingress's log on Kafka: raw events published to ``<prefix>.raw.v1`` with aiokafka.

The producer waits for every in-sync replica (``acks=all``) and is idempotent, so its own retries
never write a record twice; :meth:`KafkaLog.append` returns only once the broker acknowledged
every record of the request. Records are keyed by :meth:`Receiver.key` (provider, sender,
recipient): every part of a message and every provider retry of it land on one partition.

The ingress never waits for Kafka to start serving: until a producer is connected, appends fail
with :class:`LogUnavailable` (503, the provider retries) and ``ready`` is False. An idempotent
aiokafka producer never gives up on a record: when the broker is away, its sends just wait. So an
append waits ``request_timeout`` at most, then fails (503, not ready) while a fresh producer is
connected in the background; the old one delivers what it holds once the broker is back and is
then closed. Those late records were answered 503: the provider's retry makes a second raw event,
which the processors drop as a duplicate. What was answered 2xx is always on the topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ... import metrics
from ...config import KafkaConfig, RetentionConfig
from ...ingress.log import LogUnavailable
from .topics import ensure_topics

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_MAX = 5.0
"""Seconds between connection attempts: doubling from the first to the last."""

_acknowledged = metrics.KAFKA_RECORDS.labels(outcome="acknowledged")
_failed = metrics.KAFKA_RECORDS.labels(outcome="failed")


class KafkaLog:
    """Raw events on the configured Kafka cluster (topic ``config.raw_topic``)."""

    def __init__(self, config: KafkaConfig, retention: RetentionConfig) -> None:
        self.config = config
        self.retention = retention  # the raw topic's, when this process is the first to create it
        self.topic = config.raw_topic
        self._producer: AIOKafkaProducer | None = None
        self._healthy = False
        self._error = "not started"
        self._topics_ready = False
        self._connecting: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._producer is not None and self._healthy

    async def start(self) -> None:
        """Connect in the background (topics first); returns at once, see the module docstring."""
        self._reconnect()

    async def stop(self) -> None:
        """Stop connecting and close the producers. Call it after the HTTP server stopped."""
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
            self._connecting = None
        producer, self._producer = self._producer, None
        self._set_healthy(False)
        if producer is not None:
            await self._close(producer)
        await asyncio.gather(*self._retiring)

    async def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        producer = self._producer
        if producer is None:
            raise LogUnavailable(f"kafka not connected: {self._error}")
        started = time.perf_counter()
        try:
            await self._publish(producer, records)
        except (KafkaError, TimeoutError) as exc:
            _failed.inc(len(records))
            self._error = describe(exc)
            if producer is self._producer:
                self._set_healthy(False)
                self._reconnect()
            raise LogUnavailable(f"kafka publish failed: {self._error}") from exc
        metrics.KAFKA_PUBLISH_SECONDS.observe(time.perf_counter() - started)
        _acknowledged.inc(len(records))

    async def _publish(self, producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes]]) -> None:
        """Hand the records to the producer and wait for the broker's acknowledgement of each,
        ``request_timeout`` at most (TimeoutError). A record already handed over stays with the
        producer: waiting for it with asyncio.wait cancels nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        async with asyncio.timeout_at(deadline):
            acks = [await producer.send(self.topic, record, key=key.encode()) for key, record in records]
        done, pending = await asyncio.wait(acks, timeout=max(0.0, deadline - loop.time()))
        for ack in pending:
            ack.add_done_callback(_retrieve)  # nobody waits for it any more: its error is no news
        errors = [error for ack in done if (error := ack.exception()) is not None]
        if errors:
            raise errors[0]
        if pending:
            raise TimeoutError(f"no acknowledgement from kafka within {self.config.request_timeout} s")

    def _reconnect(self) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        """Until a producer is started (and the topics exist): then swap it in, retire the old one."""
        delay = RETRY_FIRST
        while True:
            try:
                if not self._topics_ready:
                    await ensure_topics(self.config, [self.topic], retention=self.retention)
                    self._topics_ready = True
                producer = await self._start_producer()
            except (KafkaError, OSError) as exc:
                self._error = describe(exc)
                log.error(
                    "kafka unavailable",
                    extra={
                        "event": "kafka_unavailable",
                        "bootstrap_servers": self.config.bootstrap_servers,
                        "error": self._error,
                        "retry_in": delay,
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            old, self._producer = self._producer, producer
            self._set_healthy(True)
            log.info(
                f"publishing to kafka topic {self.topic}",
                extra={
                    "event": "kafka_connected",
                    "bootstrap_servers": self.config.bootstrap_servers,
                    "topic": self.topic,
                },
            )
            if old is not None:
                retiring = asyncio.create_task(self._close(old))
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)
            return

    async def _start_producer(self) -> AIOKafkaProducer:
        config = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if config.compression == "none" else config.compression,
            linger_ms=int(config.linger * 1000),
            max_batch_size=config.max_batch_bytes,
            request_timeout_ms=int(config.request_timeout * 1000),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _close(self, producer: AIOKafkaProducer) -> None:
        """Publish what the producer still holds, ``request_timeout`` at most, then close it. Every
        request it served has had its answer by then: what is dropped was answered 503."""
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await producer.stop()
        except TimeoutError:
            log.warning(
                "kafka producer closed with records unpublished (their requests were answered 503)",
                extra={"event": "kafka_unpublished_at_close", "error": self._error},
            )

    def _set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy
        metrics.KAFKA_READY.set(1 if healthy else 0)


def _retrieve(ack: asyncio.Future[object]) -> None:
    if not ack.cancelled():
        ack.exception()


def describe(exc: BaseException) -> str:
    """``Type: message``, once: aiokafka's messages often start with their type already."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name
