"""What keeping each message for search, trace and replay costs the processing transaction.

The state writes a batch of routed messages makes in the embedded engine (a delivery each, a dedupe
key each, 100 to a transaction, on a real ``state.db``), with and without the messages' rows
(``state.messages.add``, which is all the record adds to the state writes), alternating, CPU time per
message; the median of ``--repeats`` runs each. No HTTP, no pipeline: the rest of a message's ~450 µs
in the processing half (``bench/processing.py``) is the same either way.

Run from the repository root: ``.venv/bin/python -m bench.records [--messages 40000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from smsroute.engines.embedded.state import State
from smsroute.models.delivery import Delivery
from smsroute.models.message import InboundMessage
from smsroute.streams.pipeline import Routed

BATCH = 100


def messages(n: int) -> tuple[list[Routed], list[Delivery]]:
    action = {"url": "http://127.0.0.1:1/inbox", "retry": {"delays": [1.0, 2.0]}}
    routed, deliveries = [], []
    for i in range(n):
        digest = hashlib.sha256(str(i).encode()).hexdigest()[:32]
        message = InboundMessage(
            id=digest,
            provider="agiletelecom",
            source="agiletelecom",
            sender=f"+39333{i:07d}",
            recipient="+393201234567",
            text=f"hello there, message {i}",
            received_at=datetime.now(UTC),
            keyword="HELLO",
            rules_version="bench",
        )
        body = json.dumps(message.to_json() | {"route": "inbox"}, ensure_ascii=False, separators=(",", ":"))
        routed.append(Routed(message, ("inbox",), digest, body))
        deliveries.append(Delivery.of(message, "inbox", 1, "webhook", action, body))
    return routed, deliveries


def run(routed: list[Routed], deliveries: list[Delivery], record: bool) -> float:
    """CPU µs per message of the batch transactions."""
    with tempfile.TemporaryDirectory(prefix="smsroute-bench-records-") as tmp:
        state = State(Path(tmp) / "state.db")
        started = time.process_time()
        for start in range(0, len(routed), BATCH):
            with state.transaction():
                if record:
                    state.messages.add(routed[start : start + BATCH], start)
                state.deliveries.add(deliveries[start : start + BATCH], 0.0)
                for kept in routed[start : start + BATCH]:
                    state.dedupe[kept.group] = 0.0
        spent = time.process_time() - started
        state.close()
    return spent / len(routed) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The message record's cost in the processing transaction.")
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    routed, deliveries = messages(args.messages)
    runs: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.repeats):
        runs["without"].append(run(routed, deliveries, record=False))
        runs["with"].append(run(routed, deliveries, record=True))
    for name, values in runs.items():
        print(
            f"{name:<8} the message record  {statistics.median(values):6.1f} µs CPU/msg  runs {[round(v, 1) for v in values]}"
        )
    extra = statistics.median(runs["with"]) - statistics.median(runs["without"])
    print(f"the record: +{extra:.1f} µs CPU a message in the state writes (medians of {args.repeats} alternating runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
