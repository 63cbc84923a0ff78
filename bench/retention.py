"""Retention under load: the ingress's p99 while the engine prunes 100k rows of each kind, beside the
same run with nothing to prune.

A data directory is filled once with ``--rows`` old raw events (already processed), messages with
their events, and delivered deliveries with one attempt each, all past the default windows. Each run
copies it and starts ``smsroute serve`` on the copy: with the default ``[retention]`` (*pruning*: the
first pass starts with the engine and runs through the measured wrk run), or with windows too long
for anything to go (*idle*). The runs alternate idle, pruning, idle, pruning...; the figures are
medians. The rows pruned during each measured run are read from ``smsroute_retention_pruned_total``,
so a pruning run that finished before the load began is seen, not hidden.

Run from the repository root: ``.venv/bin/python -m bench.retention [--rows 100000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.ingress import (
    LUA,
    Server,
    add_load_options,
    agile_event,
    free_port,
    measure,
    serve_command,
    wrk,
    wrk_missing,
)
from smsroute.engines.embedded.log import connect as connect_log
from smsroute.engines.embedded.state import State

DAY = 86400.0
IDLE = {f"SMSROUTE_RETENTION__{name.upper()}": str(1000 * DAY) for name in ("raw_events", "messages")}


def fill(data: Path, rows: int) -> None:
    """``rows`` of each kind, all old enough for the default windows (raw events 3 days, the rest 7)."""
    data.mkdir(parents=True)
    old = time.time() - 10 * DAY
    log = connect_log(data / "log.db", busy_timeout=10.0)
    body = b"originator=%2B393331234567&destination=%2B393201234567&date_time=2026-11-21+10%3A00%3A00&text=hello"
    event = agile_event(body, "k", received=old)
    record = event.encode()
    log.execute("BEGIN")
    log.executemany("INSERT INTO raw_events (key, record) VALUES (?, ?)", (("k", record) for _ in range(rows)))
    log.execute("COMMIT")
    log.close()
    state = State(data / "state.db")
    message = json.dumps({"id": "", "text": "hello " + "x" * 200, "from": "+393331234567", "to": "+393201234567"})
    conn = state.conn
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO messages (id, received_at, sender, recipient, provider, source, routes, grp, message)"
        " VALUES (?, ?, '+393331234567', '+393201234567', 'agiletelecom', 'agiletelecom', 'inbox', ?, ?)",
        ((f"m{i}", old, f"g{i}", message) for i in range(rows)),
    )
    conn.executemany(
        "INSERT INTO events (\"offset\", grp, decision, at) VALUES (?, ?, 'message', ?)",
        ((i + 1, f"g{i}", old) for i in range(rows)),
    )
    conn.executemany(
        "INSERT INTO deliveries (id, message_id, route, sink, destination, action, message, received_at, created_at,"
        " state, attempts, next_at) VALUES (?, ?, 'inbox', 'webhook', 'http://x', '{}', ?, ?, ?, 'delivered', 1, ?)",
        ((f"d{i}", f"m{i}", message, old, old, old) for i in range(rows)),
    )
    conn.executemany(
        "INSERT INTO attempts (delivery_id, attempt, at, outcome, status, error, duration)"
        " VALUES (?, 1, ?, 'delivered', 204, '', 0.01)",
        ((f"d{i}", old) for i in range(rows)),
    )
    state.offsets.set(rows)
    conn.execute("COMMIT")
    state.close()


def pruned_total(server: Server) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "smsroute_retention_pruned"
        for sample in family.samples
        if sample.name == "smsroute_retention_pruned_total"
    )


def run_once(
    template: Path, workdir: Path, script: Path, mode: str, n: int, args: argparse.Namespace
) -> dict[str, float]:
    data = workdir / f"data-{mode}-{n}"
    shutil.copytree(template, data)
    port = free_port()
    command = serve_command(port, data)
    extra = IDLE if mode == "idle" else {}
    os.environ.update(extra)  # Server's child process inherits the environment
    try:
        server = Server(f"engine-{mode}-{n}", command, port, workdir)
    finally:
        for name in extra:
            del os.environ[name]
    try:
        server.wait_listening()
        wrk(server, script, "warmup", args.warmup, args)
        before = pruned_total(server)
        result = measure(server, script, args)
        during = pruned_total(server) - before
    finally:
        server.stop()
    shutil.rmtree(data)
    return {
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "requests_per_s": result.requests_per_s,
        "errors": result.errors,
        "pruned_during_run": during,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ingress p99 while retention prunes, beside a run with nothing to prune."
    )
    parser.add_argument("--rows", type=int, default=100_000, help="old rows of each kind to prune (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternating (default 3)")
    parser.add_argument("--duration", default="10s", help="measured wrk run (default 10s)")
    add_load_options(parser)
    parser.set_defaults(connections=16)
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    with tempfile.TemporaryDirectory(prefix="smsroute-bench-retention-") as tmp:
        workdir = Path(tmp)
        script = workdir / "agiletelecom.lua"
        script.write_text(LUA)
        template = workdir / "template"
        started = time.monotonic()
        fill(template, args.rows)
        sizes = {p.name: p.stat().st_size for p in template.iterdir() if p.suffix == ".db"}
        print(f"filled {args.rows} rows of each kind in {time.monotonic() - started:.1f} s: {sizes}", file=sys.stderr)
        runs: dict[str, list[dict[str, float]]] = {"idle": [], "pruning": []}
        for n in range(args.repeats):
            for mode in ("idle", "pruning"):
                runs[mode].append(run_once(template, workdir, script, mode, n, args))
                print(f"{mode:<8} run {n + 1}: {runs[mode][-1]}", file=sys.stderr)
    medians = {
        mode: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for mode, results in runs.items()
    }
    ratio = medians["pruning"]["p99_ms"] / medians["idle"]["p99_ms"]
    if args.json:
        print(json.dumps({"runs": runs, "medians": medians, "p99_ratio": round(ratio, 3), "rows": args.rows}, indent=2))
    else:
        print(f"{'mode':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'pruned in run':>14}")
        for mode, m in medians.items():
            print(
                f"{mode:<8} {m['requests_per_s']:>9,.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['errors']:>7.0f}"
                f" {m['pruned_during_run']:>14,.0f}"
            )
        print(f"p99 pruning / idle: {ratio:.2f} (medians of {args.repeats} alternating runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
