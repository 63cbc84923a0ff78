"""Ingress throughput: the engine against a bare aiohttp "+OK" server, under the same wrk load.

Both servers run as child processes; wrk POSTs form-encoded Agile Telecom messages with a distinct
text per request. The engine's share of the ceiling is what durability (body parsing, Avro, the
group-committed SQLite log) costs. Afterwards the engine's log is read back: it must hold at least
one event per ``+OK`` that wrk counted, or the run fails.

The engine's processing process is paused (SIGSTOP) while wrk runs, so the figure is the ingress's
own, as the ceiling's is; ``bench/e2e.py`` measures ingress and processing working together.

Run from the repository root: ``.venv/bin/python -m bench.ingress [--duration 10s] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qs

from prometheus_client.parser import text_string_to_metric_families

from smsroute.engines.embedded.log import SQLiteLog
from smsroute.models.raw import RawEvent

ROOT = Path(__file__).resolve().parent.parent
PATH = "/inbound/agiletelecom"
TARGET = 0.60
STARTUP_TIMEOUT = 20.0

# One Lua state per wrk thread: ``id`` (set in setup) and ``counter`` make every text distinct.
# Arguments after wrk's ``--``: the run's name, where the form goes (``body``, or ``query`` for
# Kannel, whose HTTP SMSC reads only the URL's query) and what counts as accepted (``+OK``: an exact
# "200 +OK"; ``2xx``: any 2xx, Kannel's "202 Sent"). One text in ten starts with STOP; every text ends
# with its send time (Unix ms, read just before the request is written), from which the receiver
# times the delivery. ``response`` counts accepted answers; ``done`` prints their total for the
# parser below, and the paced script's worst lag behind its schedule (``bench/e2e.py`` adds the
# pacing). wrk's Lua is LuaJIT, whose ffi reads the clocks.
LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local timespec = ffi.new("bench_timespec")
local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1

local function clock_ms(clock)
  ffi.C.clock_gettime(clock, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

function init(args)
  run = args[1]
  in_query = args[2] == "query"
  any_2xx = args[3] == "2xx"
  counter = 0
  ok = 0
  wrk.method = "POST"
  if not in_query then wrk.headers["Content-Type"] = "application/x-www-form-urlencoded" end
end

function request()
  counter = counter + 1
  -- a sender per message, as on a busy short code: the Kafka engine partitions by sender
  local form = string.format(
    "originator=%%2B39333%07d&destination=%%2B393201234567&date_time=2026-11-21+10%%3A00%%3A00&text=%s%s-%d-%d-%.0f",
    counter % 10000000, counter % 10 == 0 and "STOP%20" or "", run, id, counter, clock_ms(CLOCK_REALTIME))
  if in_query then
    return wrk.format(nil, wrk.path .. "?" .. form)
  end
  return wrk.format(nil, nil, nil, form)
end

function response(status, headers, body)
  if any_2xx then
    if status >= 200 and status < 300 then ok = ok + 1 end
  elseif status == 200 and body == "+OK" then
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local total, lag = 0, nil
  for _, thread in ipairs(threads) do
    total = total + thread:get("ok")
    if thread:get("lag") then lag = math.max(lag or 0, thread:get("lag")) end
  end
  io.write(string.format("accepted answers: %d\n", total))
  if lag then io.write(string.format("schedule lag max: %.1f ms\n", lag)) end
end
"""


@dataclass
class Result:
    """One server's measured run, as parsed from ``wrk --latency`` (latencies in milliseconds)."""

    server: str
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    ok_answers: int
    cpu_percent: float

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str, server: str, cpu_percent: float) -> Result:
    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            if default is None:
                raise RuntimeError(f"wrk output has no {pattern!r}:\n{output}")
            return default
        return match.group(1)

    def latency(percent: int) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m) *$", output, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"wrk output has no {percent}% latency (was --latency given?):\n{output}")
        return float(match.group(1)) * _UNITS_MS[match.group(2)]

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        server=server,
        requests=int(number(r"^\s+(\d+) requests in")),
        requests_per_s=float(number(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=latency(50),
        p99_ms=latency(99),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
        ok_answers=int(number(r"^accepted answers: (\d+)")),
        cpu_percent=cpu_percent,
    )


class Server:
    """A server child process on a free port of ``host``; stderr goes to a file for the post-mortem.

    It gets SIGTERM when the benchmark dies, however it dies. ``wrk_prefix`` and ``wrk_args`` are how
    wrk reaches it (a network namespace's ``ip netns exec``) and the script arguments it needs after
    the run's name (see ``LUA``).
    """

    wrk_prefix: list[str] = []
    wrk_args: list[str] = []

    def __init__(self, name: str, command: list[str], port: int, workdir: Path, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.url = f"http://{host}:{port}"
        self.port = port
        self.stderr_path = workdir / f"{name}.stderr"
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, preexec_fn=die_with_parent
            )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not listening after {STARTUP_TIMEOUT:.0f} s:\n{self.stderr()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its running child processes, all threads (Linux /proc)."""
        return sum(cpu_seconds(pid) for pid in (self.process.pid, *children(self.process.pid)))

    def pids(self) -> dict[str, int]:
        """The process and its running child processes, by name, for CPU time per process."""
        kids = children(self.process.pid)
        return {self.name: self.process.pid} | {f"{self.name} child {n}": pid for n, pid in enumerate(kids, 1)}

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """SIGSTOP the processes for the block's duration."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the benchmark exits, even by SIGKILL, so no server
    outlives it (the signal survives ``exec``, ``ip netns exec`` included)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all threads; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agile_event(body: bytes, key: str, received: float | None = None) -> RawEvent:
    """An Agile Telecom form post as the ingress logs it, received now unless ``received`` (epoch s)."""
    at = time.time() if received is None else received
    return RawEvent(
        "agiletelecom",
        "agiletelecom",
        "inbound",
        int(at * 1e6),
        "127.0.0.1",
        "POST",
        "/inbound/agiletelecom",
        "",
        "application/x-www-form-urlencoded",
        {},
        body,
        key,
    )


def serve_command(
    port: int, data_dir: Path, routes: Path = ROOT / "routing_rules", config: Path | None = None
) -> list[str]:
    """``smsroute serve``, the embedded engine, on 127.0.0.1:``port`` as every benchmark runs it."""
    settings = ["--config", str(config)] if config is not None else []
    return [
        *(sys.executable, "-m", "smsroute", "serve", *settings, "--host", "127.0.0.1", "--port", str(port)),
        *("--data-dir", str(data_dir), "--routes", str(routes)),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk(server: Server, script: Path, run: str, duration: str, args: argparse.Namespace) -> str:
    """wrk with ``script`` against the server for ``duration``: its output (a failure raises)."""
    command = [
        *server.wrk_prefix,
        "wrk",
        "--latency",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        duration,
        "-s",
        str(script),
        server.url + PATH,
        "--",
        run,
        *server.wrk_args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def measure(server: Server, script: Path, args: argparse.Namespace) -> Result:
    """The measured run (texts ``[STOP ]measure-<thread>-<n>-<sent ms>``), with the server's CPU use over it."""
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    output = wrk(server, script, "measure", args.duration, args)
    cpu = 100 * (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
    if args.verbose:
        print(f"--- wrk against {server.name}\n{output}", file=sys.stderr)
    return parse_wrk(output, server.name, round(cpu, 1))


def commit_totals(server: Server) -> dict[str, float]:
    """The engine's group-commit histograms (``_sum`` and ``_count``), scraped from /metrics."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ("smsroute_log_commit_requests", "smsroute_log_commit_duration_seconds")
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count"))
    }


def commit_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean requests per group commit and mean commit duration between two scrapes."""
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    commits = delta["smsroute_log_commit_requests_count"]

    def mean(name: str) -> float:
        return delta[f"{name}_sum"] / commits if commits else 0.0

    return {
        "commits": commits,
        "requests_per_commit": mean("smsroute_log_commit_requests"),
        "commit_ms": 1000 * mean("smsroute_log_commit_duration_seconds"),
    }


def logged_texts(path: Path, prefix: str) -> int:
    """How many distinct texts starting with ``prefix`` (after a STOP keyword) the log holds (every record decoded)."""
    texts: set[str] = set()
    after = 0
    while rows := SQLiteLog(path).read(after, limit=20_000):
        for offset, _, record in rows:
            text = parse_qs(RawEvent.decode(record).body.decode())["text"][0]
            if text.removeprefix("STOP ").startswith(prefix):
                texts.add(text)
            after = offset
    return len(texts)


def render(results: list[Result], fraction: float, stats: dict[str, float], logged: int) -> str:
    lines = [f"{'server':<10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'cpu %':>6}"]
    lines += [
        f"{r.server:<10} {r.requests_per_s:>11,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7} "
        f"{r.cpu_percent:>6.0f}"
        for r in results
    ]
    engine = results[-1]
    verdict = "meets" if fraction >= TARGET else "BELOW"
    lines += [
        "",
        f"engine / ceiling: {fraction:.0%} ({verdict} the {TARGET:.0%} target)",
        f"group commit: {stats['requests_per_commit']:.1f} requests per commit on average "
        f"({stats['commits']:.0f} commits, {stats['commit_ms']:.2f} ms each)",
        f"durability: {logged} measured events in the log for {engine.ok_answers} '+OK' answers "
        f"({'ok' if logged >= engine.ok_answers else 'LOST ACKNOWLEDGED MESSAGES'})",
    ]
    return "\n".join(lines)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The load and output options every wrk-driven benchmark takes."""
    parser.add_argument("--warmup", default="2s", help="wrk warm-up before each measured run (default 2s)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--verbose", action="store_true", help="echo wrk's own output to stderr")


def wrk_missing() -> bool:
    """True, after saying how to install it, when wrk is not on the PATH."""
    if shutil.which("wrk") is not None:
        return False
    print("bench: wrk not found; install it with `apt-get install wrk`", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Engine ingress throughput against a bare aiohttp ceiling.")
    parser.add_argument("--duration", default="10s", help="measured wrk run per server (default 10s)")
    add_load_options(parser)
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2

    with tempfile.TemporaryDirectory(prefix="smsroute-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "agiletelecom.lua"
        script.write_text(LUA)
        ceiling_port, engine_port = free_port(), free_port()
        servers = [
            Server(
                "ceiling", [sys.executable, "-m", "bench.ceiling", "--port", str(ceiling_port)], ceiling_port, workdir
            ),
            Server(
                "engine",
                serve_command(engine_port, workdir / "data"),
                engine_port,
                workdir,
            ),
        ]
        try:
            for server in servers:
                server.wait_listening()
            ceiling, engine = servers
            wrk(ceiling, script, "warmup", args.warmup, args)
            results = [measure(ceiling, script, args)]
            with paused(children(engine.process.pid)):
                wrk(engine, script, "warmup", args.warmup, args)
                before = commit_totals(engine)
                results.append(measure(engine, script, args))
                stats = commit_stats(before, commit_totals(engine))
        finally:
            for server in servers:
                server.stop()
        logged = logged_texts(workdir / "data" / "log.db", "measure-")

    fraction = results[-1].requests_per_s / results[0].requests_per_s
    if args.json:
        print(
            json.dumps(
                {
                    "results": [asdict(r) | {"errors": r.errors} for r in results],
                    "engine_fraction_of_ceiling": round(fraction, 4),
                    "target": TARGET,
                    "log_commit": stats,
                    "logged_events": logged,
                    "durable": logged >= results[-1].ok_answers,
                    "settings": {
                        "duration": args.duration,
                        "warmup": args.warmup,
                        "connections": args.connections,
                        "threads": args.threads,
                    },
                },
                indent=2,
            )
        )
    else:
        print(render(results, fraction, stats, logged))
    return 0 if logged >= results[-1].ok_answers else 1


if __name__ == "__main__":
    sys.exit(main())
