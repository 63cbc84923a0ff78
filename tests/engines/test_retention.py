"""Retention on a running embedded engine filled over HTTP: rows past their windows gone, their
space given back to the file system, everything inside the windows still there, and dedupe keys,
pending parts and dead deliveries whose dead letters wait never cut short."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from engines import Running, StartEngine
from helpers import eventually
from local_server import Receiver
from samples import AGILE, vonage_part
from scraping import scrape
from smsroute.config import RetentionConfig
from smsroute.engines.embedded.retention import Pruner

pytestmark = pytest.mark.parametrize("engine", ["embedded"], indirect=True)

OLD = 400
NEW = 20
FILLER = "x" * 600  # a message of some size, so pruning frees pages worth measuring


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def pages(db: Path) -> int:
    """Pages in use by the database (its size once the WAL is checkpointed)."""
    return count(db, "PRAGMA page_count") - count(db, "PRAGMA freelist_count")


async def post_many(run: Running, prefix: str, n: int) -> None:
    for i in range(n):
        originator = f"+39333{i:07d}"
        assert (
            await run.post(
                "/inbound/agiletelecom", data={**AGILE, "originator": originator, "text": f"{prefix} {i} {FILLER}"}
            )
            == 200
        )


async def test_retention_prunes_what_is_past_its_window_and_gives_the_space_back(
    start_engine: StartEngine, receiver: Receiver, tmp_path: Path
) -> None:
    run = await start_engine()
    data = tmp_path / "data"
    state_db, log_db = data / "state.db", data / "log.db"
    receiver.fail["/dead"] = -1
    await post_many(run, "old", OLD)
    assert await run.post("/inbound/agiletelecom", data={**AGILE, "text": "DEAD letter, kept 30 days"}) == 200
    assert await run.post("/inbound/vonage", data=vonage_part(1, "waiting for ")) == 204  # parts 2, 3 never come
    await eventually(lambda: count(state_db, "SELECT count(*) FROM dead_letters") == 1)
    await eventually(lambda: count(state_db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'") == OLD)
    await asyncio.sleep(0.01)  # the clock moves on: a cut with every old row before it and every new one after
    cut = time.time()
    await asyncio.sleep(0.01)
    await post_many(run, "new", NEW)
    await eventually(lambda: count(state_db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'") == OLD + NEW)

    dedupe_keys = count(state_db, "SELECT count(*) FROM dedupe")
    log_pages, state_pages = pages(log_db), pages(state_db)
    window = 3600.0
    config = RetentionConfig(raw_events=window, messages=window, replies=window, batch=50)
    pruned = Pruner(data, config, clock=lambda: cut + window).prune()  # an hour after the cut

    assert pruned["raw_events"] == OLD + 2 and pruned["messages"] == OLD + 1  # the dead-lettered one too
    assert pruned["deliveries"] == OLD and pruned["attempts"] == OLD
    assert pruned["dead_letters"] == 0  # 30 days
    assert count(log_db, "SELECT count(*) FROM raw_events") == NEW
    assert count(state_db, "SELECT count(*) FROM messages") == NEW
    assert count(state_db, "SELECT count(*) FROM messages WHERE json_extract(message, '$.text') LIKE 'new %'") == NEW
    assert count(state_db, "SELECT count(*) FROM deliveries WHERE state = 'dead'") == 1  # its dead letter waits
    assert count(state_db, "SELECT count(*) FROM dead_letters") == 1
    assert count(state_db, "SELECT count(*) FROM dedupe") == dedupe_keys  # the dedupe window is its own
    assert count(state_db, "SELECT count(*) FROM pending_parts") == 1  # so is the stitch timeout
    for db, before in ((log_db, log_pages), (state_db, state_pages)):
        assert count(db, "PRAGMA freelist_count") == 0, f"{db.name}: free pages not given back"
        assert pages(db) < before / 2, f"{db.name}: {before} pages before, {pages(db)} after"

    # The file itself shrinks once the WAL is checkpointed into it.
    conn = sqlite3.connect(log_db)
    try:
        size_before = log_db.stat().st_size
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert log_db.stat().st_size <= size_before
        assert log_db.stat().st_size == count(log_db, "PRAGMA page_count") * count(log_db, "PRAGMA page_size")
    finally:
        conn.close()

    assert (
        await run.post(
            "/inbound/agiletelecom", data={**AGILE, "text": f"old 0 {FILLER}", "originator": "+393330000000"}
        )
        == 200
    )
    await eventually(lambda: count(log_db, "SELECT count(*) FROM raw_events") == NEW + 1)
    metrics = await scrape(run)
    assert metrics[("smsroute_data_free_bytes", frozenset())] > 0
    assert metrics[("smsroute_retention_pruned_total", frozenset({("table", "raw_events")}))] >= OLD + 2


async def test_raw_events_not_processed_yet_are_never_pruned(start_engine: StartEngine, tmp_path: Path) -> None:
    run = await start_engine()
    data = tmp_path / "data"
    await post_many(run, "some", 5)
    await eventually(lambda: count(data / "state.db", "SELECT count(*) FROM messages") == 5)
    conn = sqlite3.connect(data / "state.db")
    try:
        conn.execute('UPDATE offsets SET "offset" = 2')  # as if the processor were three events behind
        conn.commit()
    finally:
        conn.close()
    config = RetentionConfig(raw_events=1.0)
    pruned = Pruner(data, config, clock=lambda: time.time() + 86400).prune()
    assert pruned["raw_events"] == 2
    assert count(data / "log.db", 'SELECT min("offset") FROM raw_events') == 3
