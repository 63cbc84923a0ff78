"""WAL checkpoints off the hot path, for the engine's SQLite databases.

By default SQLite checkpoints inside whichever commit pushes the WAL past 1,000 pages: that commit
then also copies pages into the database file and fsyncs it, and every request waiting on it (or
the event loop running it) waits too. This thread checkpoints in the background instead: PASSIVE
checkpoints run beside writers and readers.

A PASSIVE checkpoint copies the WAL as it was when it began, and under sustained writes new frames
always arrive meanwhile: the WAL would never be wholly copied, never start over, and grow without
end (gigabytes in a long burst, with every page read searching it). So the writers keep automatic
checkpoints, only rarer (:data:`WAL_RESTART_PAGES`): by then this thread has copied all but the
last moments, the writer's own checkpoint copies the rest, and its next write starts the WAL over."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

WAL_RESTART_PAGES = 16384
"""The writers' ``wal_autocheckpoint``: 64 MiB of WAL at SQLite's default 4 KiB pages."""


class Checkpointer:
    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"checkpoint-{self.path.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or failing disk: the next round tries again
                    log.warning(
                        "checkpoint failed",
                        extra={"event": "checkpoint_failed", "db": self.path.name, "error": str(exc)},
                    )
        finally:
            conn.close()
