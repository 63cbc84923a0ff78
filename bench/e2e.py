"""End to end: Agile Telecom messages in at the ingress, out at a webhook receiver, on one machine;
smsroute beside Kannel 1.4.5, its peer, under the same load.

The same workload for every engine: wrk with the Lua script of ``bench/ingress.py`` posts Agile
Telecom messages (one text in ten starts with STOP, every text carries its send time), and each
message is routed to one of two webhooks of the receiver (``bench/receiver.py``): STOP to
``.../stop``, everything else to ``.../inbox``. The receiver counts deliveries by message and times
each from the send time in its text, the same way for every engine.

- smsroute: ``smsroute serve`` (fresh data directory) with a routes file of two routes, a ``keyword:
  STOP`` route and a catch-all;
- Kannel: bearerbox with an HTTP SMSC and smsbox with two sms-services, a ``stop`` keyword and the
  default (``bench/kannel``), in a private network namespace with their own receiver;
- the ceiling (``bench/ceiling.py``, the bare ``+OK`` server) gets the same load first.

Modes, each waited out until every accepted message has reached the receiver, the engines
alternating within each mode (and the first of them alternating from mode to mode):

- full speed: the wrk script as fast as answers come;
- paced: the same script at fixed rates (default 2,000 and 3,000 msg/s). wrk asks the script's
  ``delay()`` how long to wait before each request; it hands out send times on a fixed schedule,
  so the rate holds whatever the answers' speed, and reports how far behind it ever fell.

``--repeat N`` runs the whole sequence N times and reports medians. Then the Kafka engine, at full
speed and paced (``--kafka-rate``, default 300 msg/s): a local broker (``scripts/kafka-local``), one
``smsroute ingress`` and one, then two ``smsroute worker`` processes (``--workers 1,2``).

Run from the repository root: ``.venv/bin/python -m bench.e2e [--engines smsroute,kannel,kafka]
[--duration 10] [--rate 2000,3000] [--repeat 1] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

from bench.ingress import (
    LUA,
    Result,
    Server,
    add_load_options,
    children,
    cpu_seconds,
    free_port,
    measure,
    parse_wrk,
    serve_command,
    wrk,
    wrk_missing,
)
from bench.kafka import Broker, KafkaEngine
from bench.kannel import Kannel, Netns, kannel_missing

TARGET = 3000.0
"""Delivered messages per second end to end, the issue's target on a 2-core machine."""
ENGINES = ("smsroute", "kannel", "kafka")

# Appended to the full-speed script for the paced mode. wrk calls ``delay()`` before every request
# but each connection's first, and waits that many milliseconds. Each call takes the next free
# slot of a fixed schedule (``interval`` apart, the first ones taken by the connections' first
# requests), so the rate does not depend on how fast answers come back; a slot already past (all
# connections were waiting for answers) is sent at once and counts in ``lag``. ``clock_ms`` is the
# script's own (LuaJIT's ffi, here on the monotonic clock).
PACING = r"""
local interval = %(interval_ms)r
local start, slots = nil, 0
lag = 0

function delay()
  local now = clock_ms(CLOCK_MONOTONIC)
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


class Engine(Protocol):
    """What the load needs of an engine: wrk's way in, and its processes' ids for their CPU time."""

    name: str
    url: str
    wrk_prefix: list[str]
    wrk_args: list[str]

    def pids(self) -> dict[str, int]: ...

    def stop(self) -> None: ...


class Smsroute(Server):
    """``smsroute serve``: the ingress process and, beside it, its processing child."""

    def pids(self) -> dict[str, int]:
        kids = children(self.process.pid)
        return {"ingress": self.process.pid} | ({"processing": kids[0]} if kids else {})


@dataclass
class Mode:
    """One engine in one measured mode, from the first request sent to the last accepted message delivered."""

    engine: str
    mode: str
    sent: int
    accepted: int
    """Answers that were exactly ``+OK`` (smsroute), any 2xx (Kannel)."""
    accepted_per_s: float
    answer_p50_ms: float
    answer_p99_ms: float
    errors: int
    delivered: int
    """Distinct messages the receiver got for this mode."""
    duplicates: int
    misrouted: int
    """Deliveries to the wrong webhook (STOP elsewhere than ``stop``, or another text to ``stop``)."""
    delivered_in_window_per_s: float
    """Deliveries that arrived while the load ran, over the load's duration."""
    drain_s: float
    """From the end of the load to the last delivery."""
    end_to_end_per_s: float
    """Delivered messages over the time from the first request to the last delivery."""
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    """From the send time wrk wrote into the text to arrival at the receiver."""
    engine_cpu_percent: float
    engine_cpu_us_per_message: float
    cpu_percent: dict[str, float]
    """Each engine process's CPU time over the mode (100 = one core): smsroute's ingress and
    processing, Kannel's bearerbox and smsbox, the Kafka engine's ingress and workers."""
    cpu_us_per_message: dict[str, float]
    """Each engine process's CPU time over the mode per delivered message."""
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


def engines(value: str) -> list[str]:
    """Comma-separated engines among ``ENGINES``, in their order."""
    chosen = {name.strip() for name in value.split(",") if name.strip()}
    if not chosen or chosen - set(ENGINES):
        raise argparse.ArgumentTypeError(f"{value!r}: choose among {', '.join(ENGINES)}")
    return [name for name in ENGINES if name in chosen]


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


def cpu_times(engine: Engine) -> dict[str, float]:
    """User + system CPU seconds of each engine process (/proc/<pid>/stat), by name."""
    return {name: cpu_seconds(pid) for name, pid in engine.pids().items()}


def load(
    engine: Engine, receiver: Server, script: Path, run: str, mode: str, args: argparse.Namespace
) -> tuple[Mode, str]:
    """wrk with ``script`` against the engine for ``--duration``, waited out at the receiver: the
    mode's figures, and wrk's output."""
    profiler = (
        profile(engine, int(args.duration[:-1]), args.profile.with_name(f"{args.profile.stem}-{run}.folded"))
        if args.profile and isinstance(engine, Smsroute)
        else None
    )
    cpu_before, started = cpu_times(engine), time.time()
    output = wrk(engine, script, run, args.duration, args)
    ended = time.time()
    if profiler is not None:
        profiler.wait()
    if args.verbose:
        print(f"--- wrk against {engine.name}, {mode}\n{output}", file=sys.stderr)
    result = parse_wrk(output, engine.name, 0.0)
    return summarize(mode, run, engine, receiver, started, ended, cpu_before, result, args), output


def summarize(
    mode: str,
    run: str,
    engine: Engine,
    receiver: Server,
    started: float,
    ended: float,
    cpu_before: dict[str, float],
    result: Result,
    args: argparse.Namespace,
) -> Mode:
    """Wait for the run's deliveries, then put the load's, the receiver's and the CPU figures together."""
    stats = drain(receiver, run, result.ok_answers, args.drain_timeout)
    cpu = {name: seconds - cpu_before.get(name, 0.0) for name, seconds in cpu_times(engine).items()}
    arrivals: list[float] = stats["arrivals"]  # type: ignore[assignment]
    latencies: list[float] = stats["latencies"]  # type: ignore[assignment]
    delivered = int(stats["delivered"])  # type: ignore[call-overload]
    last = max(arrivals, default=ended)
    window = ended - started
    span = last - started
    return Mode(
        engine=engine.name,
        mode=mode,
        sent=result.requests,
        accepted=result.ok_answers,
        accepted_per_s=round(result.ok_answers / window, 1),
        answer_p50_ms=round(result.p50_ms, 2),
        answer_p99_ms=round(result.p99_ms, 2),
        errors=result.errors,
        delivered=delivered,
        duplicates=int(stats["requests"]) - delivered,  # type: ignore[call-overload]
        misrouted=int(stats["misrouted"]),  # type: ignore[call-overload]
        delivered_in_window_per_s=round(sum(started <= t <= ended for t in arrivals) / window, 1),
        drain_s=round(max(0.0, last - ended), 2),
        end_to_end_per_s=round(delivered / span, 1),
        latency_p50_ms=round(1000 * percentile(latencies, 0.50), 1),
        latency_p99_ms=round(1000 * percentile(latencies, 0.99), 1),
        latency_max_ms=round(1000 * max(latencies, default=0.0), 1),
        engine_cpu_percent=round(100 * sum(cpu.values()) / span, 1),
        engine_cpu_us_per_message=round(1e6 * sum(cpu.values()) / max(delivered, 1), 1),
        cpu_percent={name: round(100 * seconds / span, 1) for name, seconds in cpu.items()},
        cpu_us_per_message={name: round(1e6 * seconds / max(delivered, 1), 1) for name, seconds in cpu.items()},
    )


def warm_up(engine: Engine, receiver: Server, script: Path, args: argparse.Namespace) -> None:
    """wrk for ``--warmup``, then until its messages are delivered."""
    run = f"{engine.name}warmup"
    warmup = parse_wrk(wrk(engine, script, run, args.warmup, args), engine.name, 0.0)
    drain(receiver, run, warmup.ok_answers, args.drain_timeout)


def full_speed(
    engine: Engine, receiver: Server, script: Path, args: argparse.Namespace, mode: str = "full speed", tag: str = ""
) -> Mode:
    return load(engine, receiver, script, f"{engine.name}measure{tag}", mode, args)[0]


def paced(
    engine: Engine,
    receiver: Server,
    workdir: Path,
    rate: float,
    args: argparse.Namespace,
    label: str = "",
    tag: str = "",
) -> Mode:
    """wrk at ``rate`` requests a second in all (each of its threads keeps its share of the schedule)."""
    script = workdir / f"paced-{rate:.0f}.lua"
    script.write_text(LUA + PACING % {"interval_ms": 1000 * args.threads / rate})
    mode, output = load(
        engine, receiver, script, f"{engine.name}paced{rate:.0f}{tag}", f"{label}paced {rate:,.0f}/s", args
    )
    mode.schedule_lag_ms = float(re.search(r"^schedule lag max: ([\d.]+) ms$", output, re.MULTILINE)[1])
    return mode


def rules(receiver: Server) -> str:
    """smsroute's routes, Kannel's two sms-services in its own terms: STOP to one webhook, the rest to the other."""
    return f"""routes:
  - name: stop
    match:
      keyword: STOP
    actions:
      - webhook: {{url: "{receiver.url}/webhook/stop"}}
  - name: everything-else
    actions:
      - webhook: {{url: "{receiver.url}/webhook/inbox"}}
"""


def profile(engine: Engine, duration: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the engine for ``duration`` seconds (folded stacks, both processes, all threads,
    idle frames left out)."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "-p",
        str(engine.pids()["ingress"]),
        "-d",
        str(duration),
        "-r",
        "200",
        "--threads",
        "--subprocesses",
        "-f",
        "raw",
        "-o",
        str(output),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def median_mode(runs: list[Mode]) -> Mode:
    """Each figure's median over the repetitions of one engine's mode (per process for the CPU figures)."""
    if len(runs) == 1:
        return runs[0]
    values: dict[str, object] = {}
    for field in fields(Mode):
        column = [getattr(run, field.name) for run in runs]
        if isinstance(column[0], dict):
            values[field.name] = {
                key: round(statistics.median(c.get(key, 0.0) for c in column), 1) for key in column[0]
            }
        elif isinstance(column[0], (int, float)) and not isinstance(column[0], bool):
            middle = statistics.median(column)
            values[field.name] = type(column[0])(middle) if isinstance(column[0], int) else round(middle, 2)
        else:
            values[field.name] = column[0]
    return Mode(**values)  # type: ignore[arg-type]


def ratio(smsroute: Mode, kannel: Mode) -> float | None:
    """smsroute's end-to-end delivered msg/s over Kannel's."""
    return round(smsroute.end_to_end_per_s / kannel.end_to_end_per_s, 2) if kannel.end_to_end_per_s else None


ROWS = [
    ("accepted msgs/s", lambda m: f"{m.accepted_per_s:,.0f}"),
    ("accepted / sent", lambda m: f"{m.accepted:,} / {m.sent:,}"),
    ("answer p50 / p99 ms", lambda m: f"{m.answer_p50_ms:.1f} / {m.answer_p99_ms:.1f}"),
    ("delivered msgs/s in window", lambda m: f"{m.delivered_in_window_per_s:,.0f}"),
    ("drain after load s", lambda m: f"{m.drain_s:.2f}"),
    ("end to end msgs/s", lambda m: f"{m.end_to_end_per_s:,.0f}"),
    ("latency p50 / p99 ms", lambda m: f"{m.latency_p50_ms:,.0f} / {m.latency_p99_ms:,.0f}"),
    ("latency max ms", lambda m: f"{m.latency_max_ms:,.0f}"),
    ("delivered / duplicates", lambda m: f"{m.delivered:,} / {m.duplicates}"),
    ("misrouted / errors", lambda m: f"{m.misrouted} / {m.errors}"),
    ("schedule lag max ms", lambda m: "" if m.schedule_lag_ms is None else f"{m.schedule_lag_ms:,.0f}"),
]


def per_process(name: str, m: Mode) -> str:
    """One process's CPU % and µs a message: the nth process of each engine on the same row."""
    return f"{m.cpu_percent[name]:.0f} % {m.cpu_us_per_message[name]:,.0f} µs"


def render_side_by_side(modes: list[Mode], rounds: int) -> str:
    """One table per mode: smsroute and Kannel side by side, and the ratio of their end-to-end figures."""
    lines: list[str] = []
    titles = list(dict.fromkeys(m.mode for m in modes))
    for title in titles:
        columns = [m for m in modes if m.mode == title]
        lines += [f"{title:<34}" + "".join(f"{m.engine:>26}" for m in columns)]
        lines += [f"{label:<34}" + "".join(f"{show(m):>26}" for m in columns) for label, show in ROWS]
        names = [list(m.cpu_percent) for m in columns]
        for row in range(max(map(len, names))):
            label = "cpu, µs/msg: " + " | ".join(n[row] for n in names if row < len(n))
            lines.append(
                f"{label:<34}"
                + "".join(
                    f"{per_process(n[row], m) if row < len(n) else '':>26}" for n, m in zip(names, columns, strict=True)
                )
            )
        totals = [f"{m.engine_cpu_percent:.0f} % {m.engine_cpu_us_per_message:,.0f} µs" for m in columns]
        lines.append(f"{'cpu, µs/msg: all processes':<34}" + "".join(f"{total:>26}" for total in totals))
        by_engine = {m.engine: m for m in columns}
        if "smsroute" in by_engine and "kannel" in by_engine:
            share = ratio(by_engine["smsroute"], by_engine["kannel"])
            lines.append(f"{'smsroute / kannel, end to end':<34}{'' if share is None else f'{share:.2f}x':>52}")
        lines.append("")
    if rounds > 1:
        lines.append(f"medians of {rounds} rounds, the engines alternating")
    return "\n".join(lines)


def render_kafka(modes: list[Mode]) -> str:
    rows = [*ROWS, ("engine cpu % (all processes)", lambda m: f"{m.engine_cpu_percent:.0f}")]
    lines = [f"{'':<28}" + "".join(f"{m.mode:>22}" for m in modes)]
    lines += [f"{label:<28}" + "".join(f"{show(m):>22}" for m in modes) for label, show in rows]
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


def compared_modes(
    peers: list[tuple[Engine, Server]], script: Path, workdir: Path, args: argparse.Namespace
) -> list[list[Mode]]:
    """Every mode ``--repeat`` times, each engine in turn; the first engine alternates from one mode
    to the next (A B, B A, A B...), so neither is always measured first on a machine that drifts.
    The runs of each (mode, engine), in that order."""
    steps: list[tuple[str, float | None]] = [
        ("full speed", None),
        *((f"paced {rate:,.0f}/s", rate) for rate in args.rate),
    ]
    runs: dict[tuple[str, str], list[Mode]] = {}
    turn = 0
    for round_ in range(1, args.repeat + 1):
        tag = f"r{round_}" if args.repeat > 1 else ""
        for title, rate in steps:
            order = peers if turn % 2 == 0 else peers[::-1]
            turn += 1
            for engine, receiver in order:
                if rate is None:
                    mode = full_speed(engine, receiver, script, args, title, tag)
                else:
                    mode = paced(engine, receiver, workdir, rate, args, tag=tag)
                runs.setdefault((title, engine.name), []).append(mode)
    return [runs[(title, engine.name)] for title, _ in steps for engine, _ in peers]


def summary(rounds: list[list[Mode]]) -> dict[str, dict[str, object]]:
    """Per mode, smsroute's end-to-end figure over Kannel's: of the medians, and round by round."""
    out: dict[str, dict[str, object]] = {}
    for title in dict.fromkeys(runs[0].mode for runs in rounds):
        pair = {runs[0].engine: runs for runs in rounds if runs[0].mode == title}
        if {"smsroute", "kannel"} <= pair.keys():
            out[title] = {
                "median": ratio(median_mode(pair["smsroute"]), median_mode(pair["kannel"])),
                "rounds": [ratio(a, b) for a, b in zip(pair["smsroute"], pair["kannel"], strict=True)],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    if wrk_missing() or ("kannel" in args.engines and kannel_missing()):
        return 2
    # SIGTERM unwinds like Ctrl-C: every server stopped, the network namespace removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with tempfile.TemporaryDirectory(prefix="smsroute-e2e-") as tmp:
            ceiling_per_s, rounds, kafka = measure_all(Path(tmp), args)
    except KeyboardInterrupt:
        print("bench: interrupted (every server stopped)", file=sys.stderr)
        return 130
    return report(ceiling_per_s, rounds, kafka, args)


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="smsroute and Kannel end to end, ingress to webhook, side by side.")
    parser.add_argument(
        "--engines",
        type=engines,
        default=list(ENGINES),
        help="comma-separated, among smsroute, kannel, kafka (default: all three)",
    )
    parser.add_argument("--duration", type=wrk_duration, default="10s", help="load per mode in seconds (default 10s)")
    parser.add_argument(
        "--rate",
        type=rates,
        default=[2000.0, 3000.0],
        help="paced modes, messages per second, comma-separated (default 2000,3000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        choices=range(1, 100),
        default=1,
        metavar="N",
        help="rounds of every mode, the engines alternating; medians reported (default 1)",
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="longest wait for deliveries (s)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy folded stacks of smsroute, both processes, during each of its modes: FILE-<run>.folded",
    )
    parser.add_argument("--workers", default="1,2", help="Kafka engine runs, workers each (default 1,2; '' for none)")
    parser.add_argument(
        "--kafka-rate",
        type=rates,
        default=[300.0],
        help="paced modes of each Kafka engine run, messages per second (default 300)",
    )
    add_load_options(parser)
    return parser.parse_args(argv)


def measure_all(workdir: Path, args: argparse.Namespace) -> tuple[float, list[list[Mode]], list[Mode]]:
    """Start what ``--engines`` asks for, measure the ceiling, warm every engine up, run the compared
    modes, then the Kafka engine's; stop everything, whatever happens. The ceiling's requests/s, the
    runs of each compared (mode, engine), the Kafka modes."""
    script = workdir / "agiletelecom.lua"
    script.write_text(LUA)
    servers: list[Server | Kannel] = []
    netns: Netns | None = None
    try:
        ports = {name: free_port() for name in ("receiver", "ceiling", "smsroute")}
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
        servers += [receiver, ceiling]
        (workdir / "routes").mkdir()
        (workdir / "routes" / "rules.yaml").write_text(rules(receiver))
        peers: list[tuple[Engine, Server]] = []
        smsroute = None
        if "smsroute" in args.engines:
            smsroute = Smsroute(
                "smsroute",
                serve_command(ports["smsroute"], workdir / "data", workdir / "routes"),
                ports["smsroute"],
                workdir,
            )
            servers.append(smsroute)
            peers.append((smsroute, receiver))
        for server in servers:
            server.wait_listening()  # type: ignore[union-attr]
        if "kannel" in args.engines:
            netns = Netns()
            kannel = Kannel("kannel", netns, workdir)
            servers.append(kannel)
            kannel.start()
            peers.append((kannel, kannel.receiver))  # type: ignore[arg-type]
        wrk(ceiling, script, "warmup", args.warmup, args)
        ceiling_per_s = measure(ceiling, script, args).requests_per_s
        ceiling.stop()
        for engine, engine_receiver in peers:
            warm_up(engine, engine_receiver, script, args)
        rounds = compared_modes(peers, script, workdir, args)
        for engine, _ in peers:
            engine.stop()
        kafka = kafka_modes(receiver, script, workdir, args) if "kafka" in args.engines else []
    finally:
        for server in reversed(servers):
            server.stop()
        if netns is not None:
            netns.remove()
    return ceiling_per_s, rounds, kafka


def report(ceiling_per_s: float, rounds: list[list[Mode]], kafka: list[Mode], args: argparse.Namespace) -> int:
    """The table (or JSON); exit status 1 when an accepted message was not delivered, or misrouted."""
    modes = [median_mode(runs) for runs in rounds]
    complete = all(
        m.delivered >= m.accepted and m.misrouted == 0 for m in [*(m for runs in rounds for m in runs), *kafka]
    )
    ratios = summary(rounds)
    if args.json:
        print(
            json.dumps(
                {
                    "ceiling_requests_per_s": ceiling_per_s,
                    "modes": [asdict(m) for m in modes + kafka],
                    "rounds": [[asdict(m) for m in runs] for runs in rounds] if args.repeat > 1 else None,
                    "smsroute_over_kannel_end_to_end": ratios,
                    "target_delivered_per_s": TARGET,
                    "complete": complete,
                    "settings": {
                        "engines": args.engines,
                        "duration": args.duration,
                        "warmup": args.warmup,
                        "rate": args.rate,
                        "repeat": args.repeat,
                        "connections": args.connections,
                        "threads": args.threads,
                    },
                },
                indent=2,
            )
        )
        return 0 if complete else 1
    if modes:
        print(render_side_by_side(modes, args.repeat))
    if kafka:
        print(render_kafka(kafka) + "\n")
    print(f"ceiling (bare +OK, same wrk load): {ceiling_per_s:,.0f} requests/s")
    best = max((m.end_to_end_per_s for m in modes if m.engine == "smsroute"), default=None)
    if best is not None:
        print(
            f"smsroute end to end: {best:,.0f} delivered msgs/s at best "
            f"({'meets' if best >= TARGET else 'BELOW'} the {TARGET:,.0f} target)"
        )
    for title, share in ratios.items():
        each = ", ".join("-" if r is None else f"{r:.2f}" for r in share["rounds"])  # type: ignore[attr-defined]
        median = "-" if share["median"] is None else f"{share['median']:.2f}x"
        print(f"smsroute / kannel end to end, {title}: {median}" + (f" (rounds: {each})" if args.repeat > 1 else ""))
    if not complete:
        print(
            f"NOT ALL ACCEPTED MESSAGES DELIVERED (or some misrouted) within {args.drain_timeout:.0f} s "
            "of the load's end"
        )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
