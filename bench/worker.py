"""The Kafka worker alone, beside the embedded processing half measured in the same run.

Raw events (Agile Telecom form posts, each from its own sender, keyed as the ingress keys them)
go straight onto a 12-partition raw topic, with no ingress; a receiver (``bench/receiver.py``)
answers 204. For each worker count (``--workers 1,2``), on fresh topics:

- preload: ``--messages`` events on the raw topic *before* the workers start, so that no load
  generator competes with them; measured from the first delivery to the last (CPU of the workers'
  processes, all threads, from /proc; delivered msg/s over the same window);
- paced: then, the workers serving every partition, events produced at each ``--rates`` rate for
  ``--paced-seconds``, each stamped with its send time: end-to-end p50/p99 (send to arrival at the
  receiver), CPU per message, delivered msg/s.

Beside them: the embedded processing half (``bench/processing.py``) and bare aiohttp POSTs with the
engine's settings, in this process, before the workers. ``--repeat N`` runs it all N times,
alternating the order of the worker counts, and prints medians. Compare ratios within a run.

Run from the repository root: ``.venv/bin/python -m bench.worker [--workers 1,2] [--messages 20000]
[--rates 300,1000] [--paced-seconds 10] [--repeat 1] [--kafka HOST:PORT] [--json FILE]``. Without
``--kafka``, a local broker is started (``scripts/kafka-local``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.ingress import Server, agile_event, free_port
from bench.kafka import Broker

PARTITIONS = 12
BODY = "originator=%2B39333{sender:07d}&destination=%2B393201234567&date_time=2026-11-21+10%3A00%3A00&text={text}"


@dataclass
class Mode:
    name: str
    workers: int
    messages: int
    delivered_per_s: float
    cpu_us_per_message: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    repeats: int = 0
    """Requests beyond distinct messages (a repeat carries the same webhook-id)."""


def raw_event(run: str, n: int) -> tuple[bytes, bytes]:
    """(key, value) of one Agile Telecom message as the ingress publishes it; its text is what the
    receiver counts and times (``<run>-0-<n>-<sent ms>``)."""
    sender = n % 10_000_000
    text = f"{run}-0-{n}-{time.time_ns() // 1_000_000}"
    event = agile_event(BODY.format(sender=sender, text=text).encode(), "agile")
    return f"agiletelecom:+39333{sender:07d}:+393201234567".encode(), event.encode()


async def produce(bootstrap: str, topic: str, run: str, messages: int, rate: float | None) -> None:
    """``messages`` raw events, at ``rate`` a second (sent every 10 ms), else as fast as they go."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    try:
        futures = []
        started, sent = time.time(), 0
        while sent < messages:
            due = messages if rate is None else min(messages, int((time.time() - started) * rate) + 1)
            for n in range(sent, due):
                key, value = raw_event(run, n)
                futures.append(await producer.send(topic, value, key=key))
            sent = due
            if rate is not None:
                await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def create_raw(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


class Workers:
    """``count`` ``smsroute worker`` processes on fresh topics (a new prefix)."""

    def __init__(self, count: int, workdir: Path, bootstrap: str, receiver: str) -> None:
        prefix = f"wb-{uuid.uuid4().hex[:8]}"
        routes = workdir / f"{prefix}-routes"
        routes.mkdir()
        (routes / "all.yaml").write_text(
            f'routes:\n  - name: all\n    actions:\n      - webhook: {{url: "{receiver}/webhook/inbox"}}\n'
        )
        self.config = workdir / f"{prefix}.toml"
        self.config.write_text(
            f'data_dir = "{workdir / prefix}"\nroutes = "{routes}"\nlog_level = "warning"\ndefault_region = "IT"\n'
            f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\npartitions = {PARTITIONS}\n'
            f'[worker]\nstore = "memory"\n'
        )
        self.raw_topic = f"{prefix}.raw.v1"
        self.count, self.workdir, self.prefix = count, workdir, prefix
        self.servers: list[Server] = []

    def start(self) -> None:
        for number in range(self.count):
            port = free_port()
            name = f"{self.prefix}-w{number}"
            command = [sys.executable, "-m", "smsroute", "worker", "--config", str(self.config)]
            command += ["--data-dir", str(self.workdir / name), "--metrics-port", str(port)]
            self.servers.append(Server(name, command, port, self.workdir))

    def served(self) -> int:
        served = 0
        for server in self.servers:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.stderr()[-3000:]}")
            try:
                served += int(get(server.url + "/readyz").decode().split()[1])
            except (OSError, ValueError, IndexError):
                pass
        return served

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.served() != PARTITIONS:
            if time.monotonic() > deadline:
                raise RuntimeError("workers not ready:\n" + "\n".join(s.stderr()[-2000:] for s in self.servers))
            time.sleep(0.2)

    def cpu(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def delivered(receiver: str, run: str) -> int:
    return int(get(f"{receiver}/count?run={run}"))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def preloaded(workers: Workers, bootstrap: str, receiver: str, messages: int, timeout: float = 600) -> Mode:
    """Events on the raw topic first, then the workers: from the first delivery to the last."""
    run = f"pre{uuid.uuid4().hex[:6]}"
    uvloop.run(create_raw(bootstrap, workers.raw_topic))
    uvloop.run(produce(bootstrap, workers.raw_topic, run, messages, None))
    workers.start()
    deadline = time.monotonic() + timeout
    while (first := delivered(receiver, run)) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("nothing delivered:\n" + "\n".join(s.stderr()[-2000:] for s in workers.servers))
        workers.served()  # raises when a worker died
        time.sleep(0.01)
    cpu, started = workers.cpu(), time.monotonic()
    while (count := delivered(receiver, run)) < messages and time.monotonic() < deadline:
        time.sleep(0.02)
    seconds, used = time.monotonic() - started, workers.cpu() - cpu
    figures = json.loads(get(f"{receiver}/stats?run={run}"))
    window = count - first
    return Mode(
        "preload",
        workers.count,
        count,
        round(window / seconds),
        round(used / max(1, window) * 1e6, 1),
        repeats=figures["requests"] - figures["delivered"],
    )


def paced(workers: Workers, bootstrap: str, receiver: str, rate: float, seconds: float) -> Mode:
    run = f"p{int(rate)}x{uuid.uuid4().hex[:6]}"
    messages = int(rate * seconds)
    cpu, started = workers.cpu(), time.time()
    uvloop.run(produce(bootstrap, workers.raw_topic, run, messages, rate))
    deadline = time.monotonic() + 300
    while delivered(receiver, run) < messages and time.monotonic() < deadline:
        time.sleep(0.05)
    used = workers.cpu() - cpu
    figures = json.loads(get(f"{receiver}/stats?run={run}"))
    ended = max(figures["arrivals"]) if figures["arrivals"] else time.time()
    latencies = [1000 * value for value in figures["latencies"]]
    return Mode(
        f"paced {rate:g}/s",
        workers.count,
        figures["delivered"],
        round(figures["delivered"] / (ended - started)),
        round(used / max(1, figures["delivered"]) * 1e6, 1),
        round(percentile(latencies, 0.5), 1) if latencies else None,
        round(percentile(latencies, 0.99), 1) if latencies else None,
        figures["requests"] - figures["delivered"],
    )


def embedded(receiver: str, messages: int) -> list[Mode]:
    """The embedded processing half, and bare aiohttp POSTs with the same settings (its ceiling)."""
    from bench.processing import ceiling, processing
    from smsroute.config import load_settings

    bare = uvloop.run(ceiling(receiver + "/webhook", messages, load_settings().per_destination))
    with tempfile.TemporaryDirectory() as tmp:
        half = uvloop.run(processing(receiver, messages, Path(tmp)))
    return [
        Mode("bare POST", 0, bare.messages, round(bare.per_s), round(bare.cpu_us_per_message, 1)),
        Mode("embedded half", 0, half.messages, round(half.per_s), round(half.cpu_us_per_message, 1)),
    ]


def render(modes: list[Mode]) -> str:
    lines = [
        f"{'mode':<16} {'workers':>7} {'msgs':>7} {'deliv/s':>8} {'CPU µs/msg':>10} {'p50 ms':>8} {'p99 ms':>8} {'repeats':>7}"
    ]
    for m in modes:
        lines.append(
            f"{m.name:<16} {m.workers or '':>7} {m.messages:>7} {m.delivered_per_s:>8,.0f} {m.cpu_us_per_message:>10,.0f}"
            f" {m.p50_ms if m.p50_ms is not None else '':>8} {m.p99_ms if m.p99_ms is not None else '':>8} {m.repeats:>7}"
        )
    return "\n".join(lines)


def median(runs: list[Mode]) -> Mode:
    def mid(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    p50s = [m.p50_ms for m in runs if m.p50_ms is not None]
    p99s = [m.p99_ms for m in runs if m.p99_ms is not None]
    first = runs[0]
    return Mode(
        first.name,
        first.workers,
        first.messages,
        mid([m.delivered_per_s for m in runs]),
        mid([m.cpu_us_per_message for m in runs]),
        mid(p50s) if p50s else None,
        mid(p99s) if p99s else None,
        max(m.repeats for m in runs),
    )


def one_round(args: argparse.Namespace, bootstrap: str, receiver: str, workdir: Path, order: list[int]) -> list[Mode]:
    modes = embedded(receiver, args.messages)
    print(render(modes), flush=True)
    for count in order:
        workers = Workers(count, workdir, bootstrap, receiver)
        try:
            modes.append(preloaded(workers, bootstrap, receiver, args.messages))
            print(render(modes[-1:]).splitlines()[-1], flush=True)
            workers.wait_ready()
            for rate in args.rates:
                modes.append(paced(workers, bootstrap, receiver, rate, args.paced_seconds))
                print(render(modes[-1:]).splitlines()[-1], flush=True)
        finally:
            workers.stop()
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rates", default="300,1000")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--kafka", help="a running broker (default: start one with scripts/kafka-local)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.rates = [float(rate) for rate in args.rates.split(",") if rate]
    counts = [int(count) for count in args.workers.split(",") if count]
    rounds: list[list[Mode]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = None if args.kafka else Broker(workdir)
        try:
            if broker is not None:
                broker.wait_listening()
            bootstrap = args.kafka or broker.bootstrap  # type: ignore[union-attr]
            for number in range(args.repeat):
                order = counts if number % 2 == 0 else counts[::-1]
                port = free_port()  # a fresh receiver a round: the embedded half's run name is fixed
                command = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
                receiver = Server(f"receiver{number}", command, port, workdir)
                try:
                    receiver.wait_listening()
                    rounds.append(one_round(args, bootstrap, receiver.url, workdir, order))
                finally:
                    receiver.stop()
        finally:
            if broker is not None:
                broker.stop()
    by_mode: dict[tuple[str, int], list[Mode]] = {}
    for modes in rounds:
        for mode in modes:
            by_mode.setdefault((mode.name, mode.workers), []).append(mode)
    medians = [median(runs) for runs in by_mode.values()]
    print(f"\nmedians over {len(rounds)} round(s):\n{render(medians)}")
    half = by_mode.get(("embedded half", 0))
    for count in counts:
        worker = by_mode.get(("preload", count))
        if half and worker:
            ratios = [w.cpu_us_per_message / h.cpu_us_per_message for w, h in zip(worker, half, strict=True)]
            print(
                f"{count} worker(s), CPU a message / embedded half's, same round: {', '.join(f'{r:.2f}x' for r in ratios)}"
            )
    one, two = by_mode.get(("preload", 1)), by_mode.get(("preload", 2))
    if one and two:
        ratios = [b.delivered_per_s / a.delivered_per_s for a, b in zip(one, two, strict=True)]
        print(f"2 workers / 1 worker, delivered msg/s (preload): {', '.join(f'{r:.2f}x' for r in ratios)}")
    if args.json:
        args.json.write_text(json.dumps([[asdict(m) for m in modes] for modes in rounds], indent=2))


if __name__ == "__main__":
    main()
