"""The Kafka engine for tests: ingress and worker processes (``smsroute ingress``, ``smsroute
worker``) on the session's broker, with topics and consumer group of their own."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.structs import ConsumerRecord

from engine_process import SmsrouteProcess, answers_200
from helpers import eventually
from smsroute.config import Settings, load_settings
from smsroute.engines.kafka.deadletters import read_all
from smsroute.engines.kafka.worker import topic_names

STARTUP_TIMEOUT = 60.0
"""A worker joins its group, is assigned partitions and recovers their tables: seconds, on a busy machine more."""
PARTITIONS = 4


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def write_config(path: Path, bootstrap: str, prefix: str, data_dir: Path, routes: Path, **overrides: Any) -> Path:
    """A TOML configuration for both halves: ``overrides`` at the top level, dicts as tables
    (``kafka`` and ``worker`` merge with the defaults here)."""
    sections = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "partitions": PARTITIONS,
            **overrides.pop("kafka", {}),
        },
        "worker": {
            "store": "memory",
            "tick_interval": 0.1,
            "batch_interval": 0.1,
            "commit_interval": 0.2,
            "session_timeout": 6.0,
            **overrides.pop("worker", {}),
        },
    }
    sections |= {
        key: overrides.pop(key) for key in [key for key, value in overrides.items() if isinstance(value, dict)]
    }
    top = {"data_dir": str(data_dir), "routes": str(routes), "default_region": "IT", **overrides}
    lines = [f"{key} = {_toml(value)}" for key, value in top.items()]
    for section, values in sections.items():
        lines += [f"[{section}]", *(f"{key} = {_toml(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):  # an inline table: [ingress] acme = {provider = "generic", fields = {...}}
        return "{" + ", ".join(f'"{key}" = {_toml(item)}' for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class WorkerProcess(SmsrouteProcess):
    """``python -m smsroute worker`` with its own metrics port, its stderr kept in a file."""

    def __init__(self, config: Path, stderr: Path, data_dir: Path) -> None:
        super().__init__(["worker", "--config", str(config), "--data-dir", str(data_dir)], stderr)
        self.metrics_url = f"{self.url}/metrics"

    def listen_args(self) -> list[str]:
        return ["--metrics-port", str(self.port)]

    async def ready(self, http: aiohttp.ClientSession) -> int | None:
        """Partitions served once ready (rebalance and recovery done), else None."""
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.stderr()[-5000:]}")
        try:
            async with http.get(self.url + "/readyz") as response:
                text = await response.text()
                return int(re.findall(r"\d+", text)[0]) if response.status == 200 else None
        except aiohttp.ClientError:
            return None


class KafkaEngine:
    """Ingress and worker processes sharing one configuration (one set of topics)."""

    def __init__(self, directory: Path, bootstrap: str, routes: Path, **overrides: Any) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.bootstrap = bootstrap
        self.prefix = unique_prefix()
        self.config = write_config(
            directory / "smsroute.toml", bootstrap, self.prefix, directory / "data", routes, **overrides
        )
        self.settings: Settings = load_settings(self.config)
        self.ingresses: list[SmsrouteProcess] = []
        self.workers: list[WorkerProcess] = []

    def start_ingress(self) -> SmsrouteProcess:
        process = SmsrouteProcess(
            ["ingress", "--config", str(self.config)], self.directory / f"ingress{len(self.ingresses)}.stderr"
        )
        self.ingresses.append(process)
        return process

    def start_worker(self) -> WorkerProcess:
        number = len(self.workers)
        worker = WorkerProcess(
            self.config, self.directory / f"worker{number}.stderr", self.directory / f"worker{number}"
        )
        self.workers.append(worker)
        return worker

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        """Every ingress ready to publish, and the live workers together serving every partition,
        within STARTUP_TIMEOUT in all."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for ingress in self.ingresses:
            await ingress.wait_healthy(http, deadline - time.monotonic())
            await eventually(
                lambda: answers_200(http, ingress.url + "/readyz"),  # noqa: B023 (awaited in this iteration)
                deadline - time.monotonic(),
                lambda: f"ingress not ready:\n{ingress.stderr()[-3000:]}",  # noqa: B023
                interval=0.1,
            )
        live = [worker for worker in self.workers if worker.process.poll() is None]

        async def all_served() -> bool:
            served = [await worker.ready(http) for worker in live]
            return None not in served and sum(served) == PARTITIONS  # type: ignore[arg-type]

        await eventually(
            all_served,
            deadline - time.monotonic(),
            lambda: "workers not ready:\n" + "\n".join(w.stderr()[-3000:] for w in live),
            interval=0.1,
        )

    def stop(self) -> None:
        for process in [*self.ingresses, *self.workers]:
            if process.process.poll() is None:
                try:
                    process.stop(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    async def records(self, role: str) -> list[ConsumerRecord[bytes, bytes]]:
        """Every committed record of one of the engine's topics (``raw``, ``deliveries``, ...)."""
        assert self.settings.kafka is not None
        return await read_all(self.settings.kafka, topic_names(self.settings)[role])
