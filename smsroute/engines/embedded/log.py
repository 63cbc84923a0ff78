"""The embedded durable log: SQLite in WAL mode with group commit.

One writer thread owns the write connection. Requests queue their records; the thread takes
everything queued so far and writes it in one transaction, so a burst of concurrent requests
shares a single fsync. Each request's future resolves only after its transaction committed.
Checkpoints run in a thread of their own (:mod:`smsroute.engines.embedded.checkpoint`); a commit only finishes one
once the WAL has grown large, so that it starts over.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path

from ... import metrics
from ...ingress.log import LogUnavailable
from .checkpoint import WAL_RESTART_PAGES, Checkpointer

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_events (
    "offset" INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    record BLOB NOT NULL
)
"""

_Pending = tuple[Sequence[tuple[str, bytes]], asyncio.Future[None]]
_PROBE_INTERVAL = 1.0
"""Seconds between write probes while the last commit failed."""


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection with the log's durability settings (WAL, fsync on every commit)."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    incremental_vacuum(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_RESTART_PAGES}")
    conn.execute(_SCHEMA)
    return conn


def incremental_vacuum(conn: sqlite3.Connection) -> None:
    """A new database file is made with incremental vacuum, so that retention can give its pages
    back. Only a new one: on an existing file the setting would change nothing without a VACUUM, and
    setting it waits for the write lock."""
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")


class SQLiteLog:
    """Raw events in ``<data_dir>/log.db``; offsets are SQLite row ids, strictly increasing."""

    def __init__(self, path: Path, *, busy_timeout: float = 2.0, max_batch: int = 5000) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._reader: sqlite3.Connection | None = None
        self._checkpointer = Checkpointer(self.path)
        self.on_commit: Callable[[], None] | None = None
        """Called on the event loop after each successful commit (the processor's wake-up)."""

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._healthy

    def start(self) -> None:
        """Open the database (raising if it cannot be opened) and start the writer thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, self.busy_timeout)
        self._healthy = True
        self._thread = threading.Thread(target=self._write_loop, args=(conn,), name="log-writer", daemon=True)
        self._thread.start()
        self._checkpointer.start()

    def stop(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._checkpointer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        if self._thread is None:
            raise LogUnavailable("log is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((records, future))
        await future

    def read(self, after: int = 0, limit: int = 1000) -> list[tuple[int, str, bytes]]:
        """Records with offset > ``after``, oldest first, as ``(offset, key, record)``."""
        return (
            self._reading()
            .execute(
                'SELECT "offset", key, record FROM raw_events WHERE "offset" > ? ORDER BY "offset" LIMIT ?',
                (after, limit),
            )
            .fetchall()
        )

    def last_offset(self) -> int:
        """The offset of the newest record (0 when empty)."""
        return int(self._reading().execute('SELECT coalesce(max("offset"), 0) FROM raw_events').fetchone()[0])

    def _reading(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = connect(self.path, self.busy_timeout)
        return self._reader

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=None if self._healthy else _PROBE_INTERVAL)
            except queue.Empty:
                self._probe(conn)
                continue
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(conn, batch)
        conn.close()

    def _probe(self, conn: sqlite3.Connection) -> None:
        """After a failed commit, find out with no traffic when writes work again: a not-ready
        instance gets no requests from its load balancer, so it must recover on its own."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            return
        self._healthy = True
        log.info("log writable again", extra={"event": "log_recovered"})

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO raw_events (key, record) VALUES (?, ?)",
                    chain.from_iterable(records for records, _ in batch),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            error = LogUnavailable(f"log write failed: {exc}")
            log.error(
                "log commit failed", extra={"event": "log_commit_failed", "error": str(exc), "requests": len(batch)}
            )
        self._healthy = error is None
        metrics.LOG_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.LOG_COMMIT_REQUESTS.observe(len(batch))
        metrics.LOG_COMMITS.labels(outcome="error" if error else "ok").inc()
        loop = batch[0][1].get_loop()
        loop.call_soon_threadsafe(_settle, [future for _, future in batch], error, self.on_commit)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None, on_commit: Callable[[], None] | None) -> None:
    if error is None and on_commit is not None:
        on_commit()
    for future in futures:
        if future.done():  # the request gave up waiting (timeout or client gone)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
