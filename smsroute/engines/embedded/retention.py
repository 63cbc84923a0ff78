"""Retention: what the embedded engine is done with, deleted once its window has passed, and the
space given back to the file system.

A thread of its own with connections of its own, so neither the ingress nor the processing loop
ever runs it. Each transaction deletes at most ``batch`` rows and the thread pauses between two, so
the log's group commit and the processing transaction wait for a few milliseconds at most (the
benchmark ``bench/retention.py`` measures the ingress with and without it). Freed pages go back with
``PRAGMA incremental_vacuum``, a few at a time, for the same reason.

Raw events go only once processed (offset at most the processor's) and past ``raw_events``; dedupe
keys, pending parts and opt-outs are never touched here (they keep their own windows), and SMS
replies are kept at least ``sms_reply.rate_window`` (checked at start-up) so the rate limit holds."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ... import metrics
from ...config import RetentionConfig
from ...models.avro import DecodeError
from ...models.raw import RawEvent
from .log import connect as connect_log
from .state.offsets import Offsets

log = logging.getLogger("smsroute.retention")

PAUSE = 0.02
"""Seconds between two transactions at least: the writers that waited for one go first."""
REST = 2.0
"""And twice as long as the transaction took: a pass takes at most a third of a core from the
ingress and the processing (the machine may have two)."""
VACUUM_PAGES = 64
"""Pages given back per transaction (256 KiB of 4 KiB pages): each moves pages under the write lock."""
VACUUM_MIN_PAGES = 2560
"""Free pages (10 MiB) worth giving back; in a smaller file, a tenth of it is."""


class Pruner:
    def __init__(self, data_dir: Path, config: RetentionConfig, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.config = config
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune()
            except sqlite3.Error as exc:  # a locked or full database: tried again next pass
                log.warning(f"retention pass failed: {exc}", extra={"event": "retention_failed", "error": str(exc)})
            self._stop.wait(self.config.interval)

    def prune(self) -> dict[str, int]:
        """One pass over both databases; rows deleted by table."""
        now = self.clock()
        config = self.config
        pruned: dict[str, int] = {}
        state = _open(self.data_dir / "state.db")
        try:
            processed = Offsets(state).get()
            m_cut, r_cut, d_cut = now - config.messages, now - config.replies, now - config.dead_letters
            pruned["messages"] = self._delete(state, "messages", "received_at < ?", (m_cut,))
            pruned["events"] = self._older(state, "events", "at", m_cut)
            pruned["dead_letters"] = self._older(state, "dead_letters", "created_at", d_cut)
            pruned["deliveries"], pruned["attempts"] = self._deliveries(state, m_cut)
            pruned["replies"] = self._older(state, "replies", "created_at", r_cut)
            pruned["delivery_reports"] = self._older(state, "delivery_reports", "received_at", r_cut)
            self._vacuum(state)
        finally:
            state.close()
        raw = connect_log(self.data_dir / "log.db", busy_timeout=10.0)
        try:
            last = _last_before(raw, (now - config.raw_events) * 1_000_000, processed)
            pruned["raw_events"] = self._delete(raw, "raw_events", '"offset" <= ?', (last,))
            self._vacuum(raw)
        finally:
            raw.close()
        self.measure()
        if any(pruned.values()):
            log.info("retention pass", extra={"event": "retention_pruned", "pruned": pruned})
        return pruned

    def measure(self) -> None:
        """The bytes kept and the bytes still free, for the gauges (and the disk alert)."""
        for name in ("log", "state"):
            path = self.data_dir / f"{name}.db"
            sizes = (p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
            metrics.DATA_BYTES.labels(name).set(sum(sizes))
        stat = os.statvfs(self.data_dir)
        metrics.DATA_FREE_BYTES.set(stat.f_bavail * stat.f_frsize)

    def _older(self, conn: sqlite3.Connection, table: str, column: str, cut: float) -> int:
        """Delete the rows of ``table`` whose ``column`` is before ``cut``, in a table whose rows come
        in time order: the last one is found by a read (no lock held), the deletes walk the row ids."""
        bound = conn.execute(f"SELECT max(rowid) FROM {table} WHERE {column} < ?", (cut,)).fetchone()[0]
        return 0 if bound is None else self._delete(conn, table, f"rowid <= ? AND {column} < ?", (bound, cut))

    def _delete(self, conn: sqlite3.Connection, table: str, where: str, params: tuple[float, ...]) -> int:
        """Delete the rows of ``table`` matching ``where``, ``batch`` per transaction."""
        total = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            with _write(conn):
                count = conn.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT ?)",
                    (*params, self.config.batch),
                ).rowcount
            metrics.RETENTION_PRUNED.labels(table).inc(count)  # as it goes: a long pass shows its progress
            total += count
            if count < self.config.batch:
                break
            _rest(started)
        return total

    def _deliveries(self, conn: sqlite3.Connection, cut: float) -> tuple[int, int]:
        """Finished deliveries (the last attempt before ``cut``) with their attempts; a dead one stays
        while its dead letter does (it is what a replay makes due again)."""
        deliveries = attempts = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            with _write(conn):
                ids = conn.execute(
                    "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries WHERE state IN"
                    " ('delivered', 'suppressed', 'dead') AND next_at < ? AND (state != 'dead' OR NOT EXISTS"
                    " (SELECT 1 FROM dead_letters WHERE delivery_id = deliveries.id)) LIMIT ?) RETURNING id",
                    (cut, self.config.batch),
                ).fetchall()
                gone = sum(
                    conn.execute("DELETE FROM attempts WHERE delivery_id = ?", (delivery_id,)).rowcount
                    for (delivery_id,) in ids
                )
            metrics.RETENTION_PRUNED.labels("deliveries").inc(len(ids))
            metrics.RETENTION_PRUNED.labels("attempts").inc(gone)
            deliveries += len(ids)
            attempts += gone
            if len(ids) < self.config.batch:
                break
            _rest(started)
        return deliveries, attempts

    def _vacuum(self, conn: sqlite3.Connection) -> None:
        """Give the free pages back to the file system, a few per transaction, once there are enough
        of them to matter; only as many as were free at the start: the engine's own churn (dedupe keys
        expiring, parts stitched) frees and reuses pages all the time, and chasing those would move
        pages about under every commit for nothing."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return  # a file made before incremental vacuum: its free pages are reused, not given back
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free < min(VACUUM_MIN_PAGES, conn.execute("PRAGMA page_count").fetchone()[0] // 10):
            return
        for _ in range(-(-free // VACUUM_PAGES)):
            if self._stop.is_set():
                return
            started = time.perf_counter()
            conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")  # stepped to the end: a page a step
            _rest(started)


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def _rest(started: float) -> None:
    """Pause after a transaction that began at ``started`` (``time.perf_counter``)."""
    time.sleep(max(PAUSE, REST * (time.perf_counter() - started)))


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _last_before(conn: sqlite3.Connection, received_us: float, processed: int) -> int:
    """The last offset, at most ``processed``, whose event was received before ``received_us`` (0:
    none). Offsets follow arrival, so a binary search reads a few records, not the log."""
    low, high = 0, processed  # the answer is in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        row = conn.execute(
            'SELECT "offset", record FROM raw_events WHERE "offset" >= ? ORDER BY "offset" LIMIT 1', (middle,)
        ).fetchone()
        if row is None or row[0] > high or _received_us(row[1]) >= received_us:
            high = middle - 1
        else:
            low = row[0]
    return low


def _received_us(record: bytes) -> float:
    """When a raw event was received; a record that cannot be decoded counts as old (it has been
    processed, into a dead letter that keeps it)."""
    try:
        return RawEvent.decode(record).received_at_us
    except DecodeError:
        return 0
