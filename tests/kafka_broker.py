"""A real Apache Kafka broker for the tests, from the first source that can give one:

1. ``KAFKA_BOOTSTRAP_SERVERS``: a broker someone already runs;
2. a testcontainers Kafka, where a Docker engine answers;
3. the local broker of ``scripts/kafka-local`` (Maven Central jars, no Docker), on free ports.

The local broker can also be stopped and restarted on the same ports and data, and more of them
can be started, for tests about a broker going away. There is no fallback to skipping: a test that
needs Kafka fails, saying why none could be had. ``read_topic`` and ``partition_count`` tell what is
on a topic.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine_process import free_port
from helpers import eventually
from smsroute.engines.kafka.log import describe

KAFKA_LOCAL = Path(__file__).resolve().parent.parent / "scripts" / "kafka-local"
START_TIMEOUT = 180.0
"""Seconds for a broker to answer: generous, a cold start may resolve the jars from Maven first."""
STOP_TIMEOUT = 60.0
"""Seconds for a clean shutdown after SIGTERM before SIGKILL."""
JVM_OPTS = "-XX:TieredStopAtLevel=1"
"""Only the quick JIT: starts the broker about two seconds sooner here; test loads are small."""
DOCKER_PROBE_TIMEOUT = 3
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # Apache Kafka 3.9, as scripts/kafka-local runs


class NoBroker(Exception):
    """No Kafka broker could be had; the message says what was tried and why it failed."""


async def cluster_answers(bootstrap: str, timeout: float = 5.0) -> str | None:
    """None once the cluster answers a metadata request with a broker, else why not."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
    except (KafkaError, OSError, TimeoutError) as exc:
        return describe(exc)
    finally:
        await admin.close()
    return None if cluster["brokers"] else "no broker registered yet"


async def wait_until_answers(bootstrap: str, timeout: float, gone: Callable[[], str | None] = lambda: None) -> None:
    """Until the broker answers; ``gone()`` returns a reason to stop early (its process died).
    :class:`NoBroker` saying why when it does not."""
    reason: str | None = None

    async def answers() -> bool:
        nonlocal reason
        if (reason := await cluster_answers(bootstrap)) is None:
            return True
        if (died := gone()) is not None:
            raise NoBroker(died)
        return False

    try:
        await eventually(answers, timeout, interval=0.25)
    except AssertionError:
        raise NoBroker(f"{bootstrap} did not answer within {timeout:.0f} s: {reason}") from None


async def partition_count(bootstrap: str, topic: str, timeout: float = 30.0) -> int:
    """How many partitions ``topic`` has, once the broker describes it (a topic just created
    takes a moment to reach the broker's metadata)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    described: dict[str, Any] = {}

    async def is_described() -> bool:
        described.update((await admin.describe_topics([topic]))[0])
        return not described["error_code"]

    try:
        await eventually(is_described, timeout, lambda: f"topic {topic} not described: {described}", interval=0.1)
    finally:
        await admin.close()
    return len(described["partitions"])


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of every partition of ``topic``, from the beginning to the end as it
    is now: partition by partition, each in offset order."""
    partitions = [TopicPartition(topic, partition) for partition in range(await partition_count(bootstrap, topic))]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in partitions}
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for tp, batch in (await consumer.getmany(*partitions, timeout_ms=1000)).items():
                records[tp] += batch
        return [record for tp in partitions for record in records[tp]]
    finally:
        await consumer.stop()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no broker outlives a killed test run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalBroker:
    """One ``scripts/kafka-local`` broker: its data, configuration and log in ``directory``.

    The async methods are for tests that stop or restart it while requests are in flight; the
    sync ones for fixtures. Either way the process is started from the event loop's thread (the
    main one), which its parent-death signal is tied to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start_async(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or start again on the same ports and data) and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen(
                [str(KAFKA_LOCAL), "start", str(self.directory), str(self.port), str(self.controller_port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"KAFKA_JVM_OPTS": JVM_OPTS, **os.environ},
                preexec_fn=_die_with_parent,
            )
        try:
            await wait_until_answers(self.bootstrap, timeout, self._exited)
        except NoBroker:
            await self.stop_async()
            raise

    async def stop_async(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it takes longer than STOP_TIMEOUT."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        asyncio.run(self.start_async())

    def stop(self) -> None:
        asyncio.run(self.stop_async())

    def _exited(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        return f"scripts/kafka-local exited with {self.process.returncode}:\n{self.output()}"

    def output(self, lines: int = 40) -> str:
        """The last lines of what the script printed and of the broker's own log."""
        tails = []
        for name in ("stdout.log", "broker.log"):
            path = self.directory / name
            if path.exists():
                tails.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)


@dataclass
class Broker:
    """The session's broker: where it is, and the local broker behind it when that is what runs."""

    bootstrap: str
    source: str
    local: LocalBroker | None = None


@contextmanager
def session_broker(directory: Path) -> Iterator[Broker]:
    """The first broker that can be had (see the module docstring), stopped on exit."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        asyncio.run(wait_until_answers(bootstrap, 30.0))
        yield Broker(bootstrap, "KAFKA_BOOTSTRAP_SERVERS")
        return
    docker = docker_unavailable()
    if docker is None:
        with _container() as bootstrap:
            yield Broker(bootstrap, "testcontainers")
        return
    local = LocalBroker(directory)
    try:
        local.start()
    except NoBroker as exc:
        raise NoBroker(
            "no Kafka broker for the tests: KAFKA_BOOTSTRAP_SERVERS is not set; "
            f"no Docker engine ({docker}); the local broker failed: {exc}"
        ) from None
    try:
        yield Broker(local.bootstrap, "scripts/kafka-local", local)
    finally:
        local.stop()


def docker_unavailable() -> str | None:
    """None when a Docker engine answers a ping within a few seconds, else why not."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return "DOCKER_HOST is not set and /var/run/docker.sock does not exist"
    import docker  # testcontainers' dependency

    try:
        docker.from_env(timeout=DOCKER_PROBE_TIMEOUT).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE).with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    with container:
        bootstrap = container.get_bootstrap_server()
        asyncio.run(wait_until_answers(bootstrap, START_TIMEOUT))
        yield bootstrap
