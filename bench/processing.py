"""The processing half alone: a log already full of Agile Telecom messages, turned into webhook
deliveries as fast as one process can, beside its ceiling: the same number of JSON POSTs sent by a
bare aiohttp client with the engine's connection settings, to the same receiver (``bench/receiver.py``,
its own process).

Run from the repository root: ``.venv/bin/python -m bench.processing [--messages 20000] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import uvloop

from bench.ingress import agile_event, free_port
from smsroute.config import load_settings
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.engines.embedded.processing import InProcess
from smsroute.rules.watch import RulesWatcher

# a new sender each message, as in bench/e2e.py's load (each new number is parsed once)
BODY = "originator=%2B39333{n:07d}&destination=%2B393201234567&date_time=2026-11-21+10%3A00%3A00&text={run}-{n}+hello"


@dataclass
class Figures:
    name: str
    messages: int
    seconds: float
    per_s: float
    cpu_us_per_message: float
    """This process's CPU time (user + system) per message."""
    wal_mb: float | None = None
    """The processing half's ``state.db-wal`` at the end: it must stay bounded however long the run."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def delivered(http: aiohttp.ClientSession, receiver: str, run: str) -> int:
    async with http.get(f"{receiver}/count", params={"run": run}) as response:
        return int(await response.text())


async def until_delivered(http: aiohttp.ClientSession, receiver: str, run: str, count: int) -> None:
    while await delivered(http, receiver, run) < count:
        await asyncio.sleep(0.05)


async def ceiling(receiver: str, messages: int, per_destination: int) -> Figures:
    """What the processing half can at best approach: only the webhook POSTs, ``per_destination`` in flight."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_destination)
    async with aiohttp.ClientSession(connector=connector) as http:
        bodies = iter(range(messages))
        body = json.dumps({"text": "ceiling-{n}", "received_at": "2026-11-21T10:00:00.000Z"})

        async def worker() -> None:
            for n in bodies:
                headers = {"content-type": "application/json", "webhook-id": f"c{n}"}
                async with http.post(
                    f"{receiver}/inbox", data=body.replace("{n}", str(n)), headers=headers
                ) as response:
                    await response.read()

        cpu, started = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(per_destination)))
        seconds = time.perf_counter() - started
        return Figures(
            "bare webhook POSTs", messages, seconds, messages / seconds, (cpu_seconds() - cpu) / messages * 1e6
        )


async def processing(receiver: str, messages: int, data_dir: Path) -> Figures:
    routes = data_dir / "routes"
    routes.mkdir(parents=True)
    (routes / "all.yaml").write_text(
        f'routes:\n  - name: all\n    actions:\n      - webhook: {{url: "{receiver}/inbox"}}\n'
    )
    settings = load_settings(data_dir=data_dir, routes=routes, default_region="IT")
    event_log = SQLiteLog(data_dir / "log.db")
    event_log.start()
    for start in range(0, messages, 1000):
        await event_log.append(
            [
                (
                    "agile",
                    agile_event(BODY.format(run="proc", n=n).encode(), "agile").encode(),
                )
                for n in range(start, min(start + 1000, messages))
            ]
        )
    event_log.stop()
    half = InProcess(settings, RulesWatcher(routes))
    await half.start()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        cpu, started = cpu_seconds(), time.perf_counter()
        running = asyncio.create_task(half.run(stop))
        half.appended()
        await until_delivered(http, receiver, "proc", messages)
        seconds = time.perf_counter() - started
        used = cpu_seconds() - cpu
    stop.set()
    await running
    wal = (data_dir / "state.db-wal").stat().st_size / 1e6
    await half.close()
    return Figures("processing half", messages, seconds, messages / seconds, used / messages * 1e6, round(wal, 1))


async def main(args: argparse.Namespace) -> list[Figures]:
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.receiver", "--port", str(port)])
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    await delivered(http, receiver, "none")
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        per_destination = load_settings().per_destination
        with tempfile.TemporaryDirectory() as tmp:
            return [
                await ceiling(receiver, args.messages, per_destination),
                await processing(receiver, args.messages, Path(tmp)),
            ]
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = uvloop.run(main(args))
    if args.json:
        print(json.dumps([asdict(f) for f in figures], indent=2))
    else:
        for f in figures:
            wal = "" if f.wal_mb is None else f"   state.db-wal {f.wal_mb:,.0f} MB"
            print(
                f"{f.name:<22} {f.per_s:>8,.0f} msgs/s   {f.cpu_us_per_message:>6,.0f} µs CPU/msg   "
                f"({f.messages:,} in {f.seconds:.2f} s){wal}"
            )
