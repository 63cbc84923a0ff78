"""``smsroute`` commands as child processes, for tests that need a real process (SIGKILL, the CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

from helpers import eventually

ROUTES = Path(__file__).resolve().parent.parent / "routing_rules"
STARTUP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def form(text: str) -> dict[str, str]:
    """An Agile Telecom message with the given text."""
    return {
        "originator": "+393331234567",
        "destination": "+393201234567",
        "date_time": "2026-11-21 10:00:00",
        "text": text,
    }


class SmsrouteProcess:
    """``python -m smsroute ARGS --host 127.0.0.1 --port <free>``, its stderr kept in a file."""

    def __init__(self, args: Sequence[str], stderr: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = stderr
        with stderr.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smsroute", *args, *self.listen_args()],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=None if env is None else {**os.environ, **env},
            )

    def listen_args(self) -> list[str]:
        """Where the command serves HTTP (its port, free, on 127.0.0.1)."""
        return ["--host", "127.0.0.1", "--port", str(self.port)]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def wait_healthy(self, http: aiohttp.ClientSession, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until ``/healthz`` answers 200; an AssertionError with its stderr if it exits or never does."""
        await eventually(
            lambda: self.healthy(http),
            timeout,
            lambda: f"engine did not answer /healthz:\n{self.stderr()}",
            interval=0.05,
        )

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        """Whether ``/healthz`` answers 200 (an AssertionError when the process has exited)."""
        if self.process.poll() is not None:
            raise AssertionError(f"engine exited with {self.process.returncode} at startup:\n{self.stderr()}")
        return await answers_200(http, self.url + "/healthz")

    def kill(self) -> None:
        """SIGKILL and reap, if still running (the safety net in ``finally``)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status once it has stopped by itself."""
        self.process.terminate()
        return self.process.wait(timeout)


async def answers_200(http: aiohttp.ClientSession, url: str) -> bool:
    """Whether a GET of ``url`` answers 200 (False when nothing listens there yet)."""
    try:
        async with http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


class EngineProcess(SmsrouteProcess):
    """``smsroute serve``: the embedded engine on a free port; ``env`` adds SMSROUTE_* settings."""

    def __init__(
        self,
        data_dir: Path,
        stderr: Path,
        routes: Path = ROUTES,
        env: Mapping[str, str] | None = None,
        config: Path | None = None,
    ) -> None:
        args = [
            "serve",
            "--data-dir",
            str(data_dir),
            "--routes",
            str(routes),
            *(["--config", str(config)] if config else []),
        ]
        super().__init__(args, stderr, env)
