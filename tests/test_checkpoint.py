"""WAL checkpoints happen in the background: the databases' own files take the data in, without any
commit having to checkpoint (automatic checkpoints are off on the writers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from smsroute.eventlog.sqlite import SQLiteLog
from smsroute.streams.statedb import StateDB

TIMEOUT = 10.0


async def grows_past(path: Path, size: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while path.stat().st_size <= size:
        assert time.monotonic() < deadline, f"{path.name} stayed at {path.stat().st_size} bytes: no checkpoint"
        await asyncio.sleep(0.05)


async def test_raw_log_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.db")
    log.start()
    try:
        await log.append([("key", bytes(1000))] * 500)
        assert (tmp_path / "log.db-wal").stat().st_size > 500_000, "the commit went into the WAL"
        await grows_past(tmp_path / "log.db", 500_000)
    finally:
        log.stop()


async def test_state_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    try:
        with state.transaction():
            for n in range(500):
                state.dedupe[f"key-{n}-" + "x" * 1000] = 1.0
        await grows_past(tmp_path / "state.db", 500_000)
    finally:
        state.close()
