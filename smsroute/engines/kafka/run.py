"""Running a worker: topics first, then the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import faust
import uvloop

from ...config import Settings
from ...logs import setup_logging
from ...rules.watch import RulesWatcher
from .topics import ensure_topics
from .worker import Worker, prepare_state_dir, restart, topic_names


class FaustWorker(faust.Worker):
    """Faust's worker with smsroute's JSON logs instead of its own console setup."""

    def __init__(self, *args: object, log_level: str, **kwargs: object) -> None:
        self.smsroute_log_level = log_level
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _setup_logging(self) -> None:
        setup_logging(self.smsroute_log_level)


def run(settings: Settings, rules: RulesWatcher) -> None:
    """Serve until stopped; a clean stop marks the local tables as trustworthy for the next start."""
    # uvloop before anything makes a loop: Faust's own default is asyncio's (slower) loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    marker = prepare_state_dir(settings)
    worker = Worker(settings, rules)
    # Every topic before the first worker joins, or its first assignment could miss a changelog.
    assert settings.kafka is not None
    names = topic_names(settings)
    compacted = [names.pop("dead_letters"), *worker.changelogs()]  # letters stay until replayed, then their last state
    asyncio.run(ensure_topics(settings.kafka, list(names.values()), compacted=compacted, retention=settings.retention))
    try:
        FaustWorker(worker.app, log_level=settings.log_level, quiet=True).execute_from_commandline()
    except SystemExit as exc:
        if worker.hole is None:
            if not exc.code:
                marker.touch()
            raise
    except Exception:  # Faust re-raises what crashed it
        if worker.hole is None:
            raise
    if worker.hole is not None:
        # Faust handed a partition over from past its committed offset (docs/engines.md, Known
        # problems): start afresh, as a supervisor would, and read the partitions again from their
        # committed offsets; the state is rebuilt from the changelog.
        restart(worker.hole)
