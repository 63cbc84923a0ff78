"""The backlog gauges' cost: one :func:`smsroute.engines.embedded.backlog.export` (the queries the embedded engine
runs every 2 s on its event loop) against state dbs holding 1,000 to 100,000 unfinished deliveries,
as many finished ones, and a dead letter for every tenth. The fastest of ``--repeat`` runs is kept.

Run from the repository root: ``.venv/bin/python -m bench.backlog [--repeat 20] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from smsroute.engines.embedded import backlog
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.engines.embedded.state import State
from smsroute.models.dead_letter import DeadLetter
from smsroute.models.delivery import Delivery

SIZES = (1_000, 10_000, 100_000)
NOW = 1_800_000_000.0


def filled(directory: Path, size: int) -> tuple[State, SQLiteLog]:
    state, log = State(directory / "state.db"), SQLiteLog(directory / "log.db")
    log.start()
    deliveries = [
        Delivery(
            f"msg_{n:032d}",
            f"{n:032x}",
            "inbox",
            "webhook",
            {"url": f"http://127.0.0.1:{9000 + n % 50}/"},
            '{"text":"hello"}',
            NOW - 600,
        )
        for n in range(2 * size)
    ]
    with state.transaction():
        state.deliveries.add(deliveries, NOW - 600)
        # half finished, a quarter waiting for a retry, a quarter due
        state.conn.execute("UPDATE deliveries SET state = 'delivered' WHERE rowid % 2 = 0")
        state.conn.execute("UPDATE deliveries SET next_at = ? WHERE rowid % 4 = 1", (NOW + 60,))
        state.dead_letters.add([DeadLetter("deliver", "attempts_exhausted", b"{}")] * (size // 10), NOW)
    return state, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            state, log = filled(Path(tmp), size)
            timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                backlog.export(state, log, NOW)
                timings.append(time.perf_counter() - started)
            log.stop()
            state.close()
        results[size] = min(timings) * 1000
    if args.json:
        print(json.dumps({"export_ms": results}))
    else:
        for size, ms in results.items():
            print(f"{size:>7} unfinished deliveries: export {ms:7.2f} ms")


if __name__ == "__main__":
    main()
