"""WAL checkpoints happen in the background: the databases' own files take the data in, without any
commit having to checkpoint (automatic checkpoints are off on the writers)."""

from __future__ import annotations

from pathlib import Path

from helpers import eventually
from smsroute.engines.embedded.checkpoint import WAL_RESTART_PAGES
from smsroute.engines.embedded.log import SQLiteLog, connect
from smsroute.engines.embedded.state import State

TIMEOUT = 10.0


async def grows_past(path: Path, size: int) -> None:
    await eventually(
        lambda: path.stat().st_size > size,
        TIMEOUT,
        lambda: f"{path.name} stayed at {path.stat().st_size} bytes: no checkpoint",
        interval=0.05,
    )


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
    state = State(tmp_path / "state.db")
    try:
        with state.transaction():
            for n in range(500):
                state.dedupe[f"key-{n}-" + "x" * 1000] = 1.0
        await grows_past(tmp_path / "state.db", 500_000)
    finally:
        state.close()


def test_the_state_wal_starts_over_while_writes_never_pause(tmp_path: Path) -> None:
    """Short commits back to back, as the engine's under sustained load: a background PASSIVE
    checkpoint never copies the WAL up to its end before the next commit extends it. The WAL must
    start over all the same (its file keeps its largest size), not take in all that is written:
    about 250 MB here."""
    state = State(tmp_path / "state.db")
    try:
        for batch in range(1500):
            with state.transaction():
                for n in range(20):
                    state.dedupe[f"key-{batch}-{n}-" + "x" * 1000] = 1.0
        largest = (tmp_path / "state.db-wal").stat().st_size
    finally:
        state.close()
    assert largest < 2 * WAL_RESTART_PAGES * 4096


def test_the_log_writer_lets_its_wal_start_over_too(tmp_path: Path) -> None:
    conn = connect(tmp_path / "log.db", busy_timeout=1.0)
    try:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_RESTART_PAGES
    finally:
        conn.close()
