"""The embedded engine's state in SQLite (``<data_dir>/state.db``), one store per concern over one
connection: progress through the log (:mod:`.offsets`), the core's dedupe keys, pending parts and
opt-out list (:mod:`.stores`), messages as routed and what became of each raw event
(:mod:`.messages`), deliveries with their attempts (:mod:`.deliveries`), dead letters
(:mod:`.dead_letters`), SMS replies (:mod:`.replies`) and delivery reports (:mod:`.reports`).

Processing a batch of raw events and recording what it produced is one transaction across them, so
a crash re-does a batch but never skips or doubles it. WAL with ``synchronous=NORMAL``: every commit
survives a process crash (``kill -9``); after a power loss the last moments of processing are done
again from the raw log, which is fsynced on every commit. The one record that could not be done
again, an SMS reply the provider took, is fsynced before it counts as sent (:meth:`State.sync`)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..checkpoint import WAL_RESTART_PAGES, Checkpointer
from ..log import incremental_vacuum
from . import dead_letters, deliveries, messages, offsets, replies, reports, stores


class State:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self.conn = conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        incremental_vacuum(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_RESTART_PAGES}")
        for module in (offsets, stores, messages, deliveries, dead_letters, replies, reports):
            conn.executescript(module.SCHEMA)
        self._checkpointer = Checkpointer(path)
        self._checkpointer.start()
        self.offsets = offsets.Offsets(conn)
        self.dedupe = stores.DedupeStore(conn)
        self.pending = stores.PendingStore(conn)
        self.opt_outs = stores.OptOutStore(conn)
        self.messages = messages.Messages(conn)
        self.deliveries = deliveries.Deliveries(conn)
        self.dead_letters = dead_letters.DeadLetters(conn)
        self.replies = replies.Replies(conn, self.sync)
        self.reports = reports.Reports(conn)

    def close(self) -> None:
        self._checkpointer.stop()
        self.conn.close()

    def sync(self) -> None:
        """Make every commit so far survive a power loss, not only a crash: fsync the WAL they are
        in (``synchronous=NORMAL`` leaves that to checkpoints). Touches only the file, so it may run
        in a thread while the event loop goes on."""
        for path in (self._wal, self.path):  # no WAL file: the commits are in the database itself
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: the writes of the block are undone when it raises (the rest
        of the transaction stands)."""
        self.conn.execute("SAVEPOINT block")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO block")
            raise
        finally:
            self.conn.execute("RELEASE block")
