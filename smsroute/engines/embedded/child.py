"""The processing half of the embedded engine in a child process, so it gets a CPU core of its own.

The ingress process keeps the child's stdin open for its whole life: first the settings, then one
byte whenever the log grew. End of file means the ingress is gone (stopped, or killed outright), and
the child finishes its in-flight deliveries and exits. The child answers ``/metrics`` on a loopback
port it prints on stdout; the ingress adds those metrics to its own ``/metrics``.

Two children never work on one ``state.db``: a child first takes ``processing.lock`` in the data
directory, so a restarted engine's child waits for the previous one to finish."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pickle
import signal
import struct
import sys
from pathlib import Path
from typing import IO

import aiohttp
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY

from ... import gc_tuning, health
from ...config import Settings
from ...logs import setup_logging
from ...rules.loader import RuleError
from ...rules.watch import RulesWatcher
from .processing import InProcess

log = logging.getLogger("smsroute")

STOP_TIMEOUT = 30.0
"""Seconds the child gets to finish its in-flight deliveries once told to stop."""


class ChildProcess:
    """The processing half in a child process: the ingress process's handle on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._metrics_url: str | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "smsroute.engines.embedded.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        payload = pickle.dumps(self.settings)
        assert self.process.stdin is not None
        self.process.stdin.write(struct.pack("!I", len(payload)) + payload)
        await self.process.stdin.drain()
        self._session = aiohttp.ClientSession()
        self._listen = asyncio.create_task(self._read_port())

    async def _read_port(self) -> None:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if line:
            self._metrics_url = f"http://127.0.0.1:{int(line)}/metrics"

    def appended(self) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing() and stdin.transport.get_write_buffer_size() == 0:
            stdin.write(b"\0")  # one unread byte is wake-up enough

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set (then the child is told and waited for), or until the child dies (an error)."""
        stopping = asyncio.ensure_future(stop.wait())
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait([stopping, exited], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not stop.is_set():
            raise RuntimeError(f"the processing process exited with status {self.process.returncode}")
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(exited, STOP_TIMEOUT)
        except TimeoutError:
            log.error("the processing process did not stop in time: killed", extra={"event": "processing_killed"})
            self.process.kill()
            await self.process.wait()

    async def metrics(self) -> list[str]:
        """The child's metrics in the text format; none while it is starting or when it does not answer
        within a second (a scrape must not hang on it)."""
        if self._metrics_url is None:
            return []
        try:
            async with self._session.get(self._metrics_url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                return [await response.text()]
        except (aiohttp.ClientError, TimeoutError):
            return []

    async def close(self) -> None:
        self._listen.cancel()
        await self._session.close()


def main() -> None:
    settings: Settings = pickle.loads(_read_exactly(0, struct.unpack("!I", _read_exactly(0, 4))[0]))
    setup_logging(settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the ingress, which tells us
    import uvloop

    raise SystemExit(uvloop.run(_child(settings)))


async def _child(settings: Settings) -> int:
    lock = await _lock(settings.data_dir / "processing.lock")
    try:
        rules = RulesWatcher(settings.routes)
    except RuleError as exc:
        log.error(f"routing rules invalid: {exc}", extra={"event": "rules_invalid"})
        return 1
    processing = InProcess(settings, rules)
    await processing.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(0, _on_stdin, processing, stop)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        REGISTRY.unregister(collector)  # the process-wide collectors are the ingress's to report
    runner = await health.serve("127.0.0.1", 0)
    print(runner.addresses[0][1], flush=True)
    gc_tuning.settle()
    try:
        await processing.run(stop)
    finally:
        await runner.cleanup()
        await processing.close()
        lock.close()
    return 0


def _on_stdin(processing: InProcess, stop: asyncio.Event) -> None:
    if os.read(0, 65536):
        processing.appended()
    else:
        asyncio.get_running_loop().remove_reader(0)
        stop.set()


async def _lock(path: Path) -> IO[str]:
    """Hold ``path`` locked for this process's life, waiting while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            await asyncio.sleep(0.1)


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("smsroute.engines.embedded.child: the ingress closed before sending the settings")
        data += chunk
    return data


if __name__ == "__main__":
    main()
