"""Running a worker: topics first, then the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging

import faust

from ...config import Settings
from ...logs import setup_logging
from ...rules.watch import RulesWatcher
from .topics import ensure_topics
from .worker import Worker, prepare_state_dir, topic_names

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
    # Every topic before the first worker joins, or its first assignment could miss a changelog.
    assert settings.kafka is not None
    names = list(topic_names(settings).values())
    asyncio.run(ensure_topics(settings.kafka, names, compacted=worker.changelogs(), retention=settings.retention))
    try:
        FaustWorker(worker.app, log_level=settings.log_level, quiet=True).execute_from_commandline()
    except SystemExit as exc:
        if not exc.code:
            marker.touch()
        raise
