"""End to end: Agile Telecom messages in at the ingress, out at a webhook receiver, on one machine.

Three child processes: the engine (``smsroute serve``, fresh data directory, one catch-all webhook
route), the receiver (``bench/receiver.py``, answers 204 and notes each delivery's receipt-to-delivery
latency) and the ceiling (``bench/ceiling.py``, the bare ``+OK`` server). Two modes, one after the
other, each waited out until every accepted message has reached the receiver:

- full speed: wrk with the Lua script of ``bench/ingress.py`` (the ceiling gets the same load first);
- paced: the same script at fixed rates (default 2,000 and 3,000 msg/s). wrk asks the script's
  ``delay()`` how long to wait before each request; it hands out send times on a fixed schedule,
  so the rate holds whatever the answers' speed, and reports how far behind it ever fell.

Then the Kafka engine side by side, at full speed and paced (``--kafka-rate``, default 300 msg/s):
a local broker (``scripts/kafka-local``), one ``smsroute ingress`` and one, then two
``smsroute worker`` processes (``--workers 1,2``).

Run from the repository root: ``.venv/bin/python -m bench.e2e [--duration 10] [--rate 2000,3000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.ingress import LUA, Result, Server, add_load_options, free_port, measure, parse_wrk, wrk, wrk_missing
from bench.kafka import Broker, KafkaEngine

TARGET = 3000.0
"""Delivered messages per second end to end, the issue's target on a 2-core machine."""

# Appended to the full-speed script for the paced mode. wrk calls ``delay()`` before every request
# but each connection's first, and waits that many milliseconds. Each call takes the next free
# slot of a fixed schedule (``interval`` apart, the first ones taken by the connections' first
# requests), so the rate does not depend on how fast answers come back; a slot already past (all
# connections were waiting for answers) is sent at once and counts in ``lag``. wrk's Lua is LuaJIT,
# whose ffi reads the monotonic clock.
PACING = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } pacing_timespec;
int clock_gettime(int clock, pacing_timespec *now);
]]
local clock = ffi.new("pacing_timespec")
local interval = %(interval_ms)r
local start, slots = nil, 0
lag = 0

local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

function delay()
  local now = now_ms()
  slots = math.max(slots, counter)
  start = start or now - slots * interval
  local due = start + slots * interval
  slots = slots + 1
  if due <= now then
    lag = math.max(lag, now - due)
    return 0
  end
  return due - now
end
"""


@dataclass
class Mode:
    """One measured mode, from the first request sent to the last accepted message delivered."""

    mode: str
    sent: int
    accepted: int
    """Answers that were exactly ``+OK``."""
    accepted_per_s: float
    answer_p50_ms: float
    answer_p99_ms: float
    errors: int
    delivered: int
    """Distinct webhook-ids the receiver got for this mode."""
    duplicates: int
    delivered_in_window_per_s: float
    """Deliveries that arrived while the load ran, over the load's duration."""
    drain_s: float
    """From the end of the load to the last delivery."""
    end_to_end_per_s: float
    """Delivered messages over the time from the first request to the last delivery."""
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    """Receipt (the engine's ``received_at``) to arrival at the receiver."""
    engine_cpu_percent: float
    schedule_lag_ms: float | None = None
    """Paced mode: the furthest any request fell behind its scheduled send time (all connections busy)."""


def wrk_duration(value: str) -> str:
    """A duration in whole seconds, in wrk's form (``10`` or ``10s``)."""
    if not value.removesuffix("s").isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds")
    return value.removesuffix("s") + "s"


def rates(value: str) -> list[float]:
    """Comma-separated messages per second (``2000,3000``)."""
    try:
        parsed = [float(rate) for rate in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of rates") from None
    if not all(rate > 0 for rate in parsed):
        raise argparse.ArgumentTypeError("rates must be positive")
    return parsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))] if ordered else 0.0


def run_stats(receiver: Server, run: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{receiver.url}/stats?run={run}", timeout=30) as response:
        return json.loads(response.read())


def drain(receiver: Server, run: str, accepted: int, timeout: float) -> dict[str, object]:
    """The run's receiver figures once it holds ``accepted`` distinct deliveries (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{receiver.url}/count?run={run}", timeout=30) as response:
            if int(response.read()) >= accepted:
                break
        time.sleep(0.2)
    return run_stats(receiver, run)


def load(
    engine: Server | KafkaEngine, receiver: Server, script: Path, run: str, mode: str, args: argparse.Namespace
) -> tuple[Mode, str]:
    """wrk with ``script`` against the engine for ``--duration``, waited out at the receiver: the
    mode's figures, and wrk's output."""
    cpu_before, started = engine.cpu_seconds(), time.time()
    output = wrk(engine, script, run, args.duration, args)
    ended = time.time()
    if args.verbose:
        print(f"--- wrk against {engine.name}, {mode}\n{output}", file=sys.stderr)
    result = parse_wrk(output, engine.name, 0.0)
    return summarize(mode, run, engine, receiver, started, ended, cpu_before, result, args), output


def summarize(
    mode: str,
    run: str,
    engine: Server | KafkaEngine,
    receiver: Server,
    started: float,
    ended: float,
    cpu_before: float,
    result: Result,
    args: argparse.Namespace,
) -> Mode:
    """Wait for the run's deliveries, then put the load's and the receiver's figures together."""
    stats = drain(receiver, run, result.ok_answers, args.drain_timeout)
    arrivals: list[float] = stats["arrivals"]  # type: ignore[assignment]
    latencies: list[float] = stats["latencies"]  # type: ignore[assignment]
    last = max(arrivals, default=ended)
    window = ended - started
    return Mode(
        mode=mode,
        sent=result.requests,
        accepted=result.ok_answers,
        accepted_per_s=round(result.ok_answers / window, 1),
        answer_p50_ms=round(result.p50_ms, 2),
        answer_p99_ms=round(result.p99_ms, 2),
        errors=result.errors,
        delivered=int(stats["delivered"]),  # type: ignore[call-overload]
        duplicates=int(stats["requests"]) - int(stats["delivered"]),  # type: ignore[call-overload]
        delivered_in_window_per_s=round(sum(started <= t <= ended for t in arrivals) / window, 1),
        drain_s=round(max(0.0, last - ended), 2),
        end_to_end_per_s=round(int(stats["delivered"]) / (last - started), 1),  # type: ignore[call-overload]
        latency_p50_ms=round(1000 * percentile(latencies, 0.50), 1),
        latency_p99_ms=round(1000 * percentile(latencies, 0.99), 1),
        latency_max_ms=round(1000 * max(latencies, default=0.0), 1),
        engine_cpu_percent=round(100 * (engine.cpu_seconds() - cpu_before) / (last - started), 1),
    )


def warm_up(engine: Server | KafkaEngine, receiver: Server, script: Path, args: argparse.Namespace) -> None:
    """wrk for ``--warmup``, then until its messages are delivered."""
    run = f"{engine.name}warmup"
    warmup = parse_wrk(wrk(engine, script, run, args.warmup, args), engine.name, 0.0)
    drain(receiver, run, warmup.ok_answers, args.drain_timeout)


def full_speed(
    engine: Server | KafkaEngine,
    receiver: Server,
    script: Path,
    args: argparse.Namespace,
    mode: str = "full speed (wrk)",
) -> Mode:
    return load(engine, receiver, script, f"{engine.name}measure", mode, args)[0]


def paced(
    engine: Server | KafkaEngine,
    receiver: Server,
    workdir: Path,
    rate: float,
    args: argparse.Namespace,
    label: str = "",
) -> Mode:
    """wrk at ``rate`` requests a second in all (each of its threads keeps its share of the schedule)."""
    script = workdir / f"paced-{rate:.0f}.lua"
    script.write_text(LUA + PACING % {"interval_ms": 1000 * args.threads / rate})
    mode, output = load(engine, receiver, script, f"{engine.name}paced{rate:.0f}", f"{label}paced {rate:,.0f}/s", args)
    mode.schedule_lag_ms = float(re.search(r"^schedule lag max: ([\d.]+) ms$", output, re.MULTILINE)[1])
    return mode


def rules(receiver: Server) -> str:
    return f"""routes:
  - name: everything
    actions:
      - webhook: {{url: "{receiver.url}/inbox"}}
"""


def profile(engine: Server, duration: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the engine for ``duration`` seconds (folded stacks, all threads, idle frames left out)."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "-p",
        str(engine.process.pid),
        "-d",
        str(duration),
        "-r",
        "200",
        "--threads",
        "-f",
        "raw",
        "-o",
        str(output),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def render(ceiling_per_s: float, modes: list[Mode]) -> str:
    rows = [
        ("accepted msgs/s", lambda m: f"{m.accepted_per_s:,.0f}"),
        ("accepted (+OK) / sent", lambda m: f"{m.accepted:,} / {m.sent:,}"),
        ("answer p50 / p99 ms", lambda m: f"{m.answer_p50_ms:.1f} / {m.answer_p99_ms:.1f}"),
        ("delivered msgs/s in window", lambda m: f"{m.delivered_in_window_per_s:,.0f}"),
        ("drain after load s", lambda m: f"{m.drain_s:.2f}"),
        ("end to end msgs/s", lambda m: f"{m.end_to_end_per_s:,.0f}"),
        ("latency p50 / p99 ms", lambda m: f"{m.latency_p50_ms:,.0f} / {m.latency_p99_ms:,.0f}"),
        ("latency max ms", lambda m: f"{m.latency_max_ms:,.0f}"),
        ("delivered / duplicates", lambda m: f"{m.delivered:,} / {m.duplicates}"),
        ("errors", lambda m: f"{m.errors}"),
        ("engine cpu % (all processes)", lambda m: f"{m.engine_cpu_percent:.0f}"),
        ("schedule lag max ms", lambda m: "" if m.schedule_lag_ms is None else f"{m.schedule_lag_ms:,.0f}"),
    ]
    lines = [f"{'':<28}" + "".join(f"{m.mode:>22}" for m in modes)]
    lines += [f"{label:<28}" + "".join(f"{show(m):>22}" for m in modes) for label, show in rows]
    best = max(m.end_to_end_per_s for m in modes)
    lines += [
        "",
        f"ceiling (bare +OK, same wrk load): {ceiling_per_s:,.0f} requests/s",
        f"end to end: {best:,.0f} delivered msgs/s at best "
        f"({'meets' if best >= TARGET else 'BELOW'} the {TARGET:,.0f} target)",
    ]
    return "\n".join(lines)


def kafka_modes(receiver: Server, script: Path, workdir: Path, args: argparse.Namespace) -> list[Mode]:
    """Full speed on the Kafka engine (local broker, one ingress), once per worker count."""
    counts = [int(count) for count in args.workers.split(",") if count.strip()]
    if not counts:
        return []
    broker = Broker(workdir)
    modes = []
    try:
        broker.wait_listening()
        for count in counts:
            engine = KafkaEngine(f"kafka{count}", broker, workdir / "routes", workdir, count)
            try:
                engine.wait_ready()
                warm_up(engine, receiver, script, args)
                modes.append(
                    full_speed(engine, receiver, script, args, f"kafka, {count} worker{'s' if count > 1 else ''}")
                )
                modes += [paced(engine, receiver, workdir, rate, args, f"kafka {count}w, ") for rate in args.kafka_rate]
            finally:
                engine.stop()
    finally:
        broker.stop()
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Engine throughput and latency end to end, ingress to webhook.")
    parser.add_argument("--duration", type=wrk_duration, default="10s", help="load per mode in seconds (default 10s)")
    parser.add_argument(
        "--rate",
        type=rates,
        default=[2000.0, 3000.0],
        help="paced modes, messages per second, comma-separated (default 2000,3000)",
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="longest wait for deliveries (s)")
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks of the engine at full speed, to this file")
    parser.add_argument("--workers", default="1,2", help="Kafka engine runs, workers each (default 1,2; '' for none)")
    parser.add_argument(
        "--kafka-rate",
        type=rates,
        default=[300.0],
        help="paced modes of each Kafka engine run, messages per second (default 300)",
    )
    add_load_options(parser)
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2

    with tempfile.TemporaryDirectory(prefix="smsroute-e2e-") as tmp:
        workdir = Path(tmp)
        script = workdir / "agiletelecom.lua"
        script.write_text(LUA)
        ports = {name: free_port() for name in ("receiver", "ceiling", "engine")}
        receiver = Server(
            "receiver",
            [sys.executable, "-m", "bench.receiver", "--port", str(ports["receiver"])],
            ports["receiver"],
            workdir,
        )
        ceiling = Server(
            "ceiling",
            [sys.executable, "-m", "bench.ceiling", "--port", str(ports["ceiling"])],
            ports["ceiling"],
            workdir,
        )
        (workdir / "routes").mkdir()
        (workdir / "routes" / "rules.yaml").write_text(rules(receiver))
        engine = Server(
            "engine",
            [
                sys.executable,
                "-m",
                "smsroute",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["engine"]),
                "--data-dir",
                str(workdir / "data"),
                "--routes",
                str(workdir / "routes"),
            ],
            ports["engine"],
            workdir,
        )
        servers = [receiver, ceiling, engine]
        try:
            for server in servers:
                server.wait_listening()
            wrk(ceiling, script, "warmup", args.warmup, args)
            ceiling_per_s = measure(ceiling, script, args).requests_per_s
            ceiling.stop()
            warm_up(engine, receiver, script, args)
            profiler = profile(engine, int(args.duration[:-1]), args.profile) if args.profile else None
            modes = [full_speed(engine, receiver, script, args)]
            if profiler is not None:
                profiler.wait()
            modes += [paced(engine, receiver, workdir, rate, args) for rate in args.rate]
            engine.stop()
            modes += kafka_modes(receiver, script, workdir, args)
        finally:
            for server in servers:
                server.stop()

    complete = all(m.delivered >= m.accepted for m in modes)
    if args.json:
        print(
            json.dumps(
                {
                    "ceiling_requests_per_s": ceiling_per_s,
                    "modes": [asdict(m) for m in modes],
                    "target_delivered_per_s": TARGET,
                    "complete": complete,
                    "settings": {
                        "duration": args.duration,
                        "warmup": args.warmup,
                        "rate": args.rate,
                        "connections": args.connections,
                        "threads": args.threads,
                    },
                },
                indent=2,
            )
        )
    else:
        print(render(ceiling_per_s, modes))
        if not complete:
            print(f"NOT ALL ACCEPTED MESSAGES DELIVERED within {args.drain_timeout:.0f} s of the load's end")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
