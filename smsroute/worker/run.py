"""Running a worker: topics first, then the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ..config import Settings
from ..logs import setup_logging
from ..rules.watch import RulesWatcher
from .app import Worker, prepare_state_dir, topic_names

log = logging.getLogger("smsroute.worker")


class FaustWorker(faust.Worker):
    """Faust's worker with smsroute's JSON logs instead of its own console setup."""

    def __init__(self, *args: object, log_level: str, **kwargs: object) -> None:
        self.smsroute_log_level = log_level
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _setup_logging(self) -> None:
        setup_logging(self.smsroute_log_level)


def run(settings: Settings, rules: RulesWatcher) -> None:
    """Serve until stopped; a clean stop marks the local tables as trustworthy for the next start."""
    marker = prepare_state_dir(settings)
    worker = Worker(settings, rules)
    asyncio.run(create_topics(settings, worker.changelogs()))
    try:
        FaustWorker(worker.app, log_level=settings.log_level, quiet=True).execute_from_commandline()
    except SystemExit as exc:
        if not exc.code:
            marker.touch()
        raise


async def create_topics(settings: Settings, changelogs: list[str]) -> None:
    """The engine's topics and the workers' changelogs (compacted), with the configured partitions,
    when missing: all before the first worker joins, or its first assignment could miss one."""
    kafka = settings.kafka
    assert kafka is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id=kafka.client_id)
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact"}
        response = await admin.create_topics(
            [NewTopic(name, kafka.partitions, kafka.replication_factor) for name in topic_names(settings).values()]
            + [NewTopic(name, kafka.partitions, kafka.replication_factor, topic_configs=compacted) for name in changelogs]
        )
        for name, code, message in response.topic_errors:
            if code and code != TopicAlreadyExistsError.errno:
                raise RuntimeError(f"cannot create topic {name}: {message}")
    finally:
        await admin.close()
