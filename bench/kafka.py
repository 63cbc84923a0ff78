"""The Kafka engine for the benchmarks: a local broker (``scripts/kafka-local``), ``smsroute
ingress`` and ``smsroute worker`` processes sharing one configuration, all children of the bench."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench.ingress import ROOT, Server, free_port

READY_TIMEOUT = 120.0
PARTITIONS = 4


class Broker(Server):
    """Apache Kafka, KRaft, one node on 127.0.0.1 (jars from Maven Central, cached)."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        super().__init__(
            "kafka",
            [str(ROOT / "scripts" / "kafka-local"), "start", str(workdir / "kafka"), str(port), str(free_port())],
            port,
            workdir,
        )
        self.bootstrap = f"127.0.0.1:{port}"


class KafkaEngine:
    """One ingress and ``workers`` workers on fresh topics of ``broker``."""

    wrk_prefix: list[str] = []
    wrk_args: list[str] = []

    def __init__(self, name: str, broker: Broker, routes: Path, workdir: Path, workers: int) -> None:
        self.name = name
        config = workdir / f"{name}.toml"
        config.write_text(
            f'data_dir = "{workdir / name}"\nroutes = "{routes}"\nlog_level = "warning"\n'
            f'[kafka]\nbootstrap_servers = "{broker.bootstrap}"\ntopic_prefix = "bench-{uuid.uuid4().hex[:8]}"\n'
            f'partitions = {PARTITIONS}\n[worker]\nstore = "memory"\n'
        )
        port = free_port()
        self.ingress = Server(
            f"{name}-ingress",
            [*_smsroute("ingress", config), "--host", "127.0.0.1", "--port", str(port)],
            port,
            workdir,
        )
        self.url = self.ingress.url
        self.workers = []
        for number in range(workers):
            metrics = free_port()
            self.workers.append(
                Server(
                    f"{name}-worker{number}",
                    [
                        *_smsroute("worker", config),
                        "--data-dir",
                        str(workdir / f"{name}-worker{number}"),
                        "--metrics-port",
                        str(metrics),
                    ],
                    metrics,
                    workdir,
                )
            )

    @property
    def processes(self) -> list[Server]:
        return [self.ingress, *self.workers]

    def wait_ready(self) -> None:
        """The ingress can publish and the workers together serve every partition."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(self.ingress) or sum(_ready(worker) for worker in self.workers) != PARTITIONS:
            for process in self.processes:
                if process.process.poll() is not None:
                    raise RuntimeError(f"{process.name} exited:\n{process.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        return sum(process.cpu_seconds() for process in self.processes)

    def pids(self) -> dict[str, int]:
        """The ingress and each worker, by name, for CPU time per process (the broker is not the engine's)."""
        return {process.name.removeprefix(f"{self.name}-"): process.process.pid for process in self.processes}

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _smsroute(command: str, config: Path) -> list[str]:
    return [sys.executable, "-m", "smsroute", command, "--config", str(config)]


def _ready(server: Server) -> int:
    """1 for a ready ingress; for a worker, the partitions it serves; 0 when not ready."""
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return 0
    numbers = [int(word) for word in text.split() if word.isdigit()]
    return numbers[0] if numbers else 1
