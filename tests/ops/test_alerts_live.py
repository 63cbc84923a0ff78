"""The live check: a real Prometheus scrapes a running engine whose webhook receiver always answers
500, evaluates the shipped rules, and fires the delivery error-rate alert.

Only intervals differ from production: a 1 s scrape and evaluation, and every alert's ``for``
shortened to 1 s. The expressions are the shipped ones, untouched."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from engine_process import EngineProcess, form, free_port
from helpers import eventually
from local_server import serving
from metrics_contract import RULE_FILES
from tools import tool

ALERT = "SmsrouteDeliveryErrorRateHigh"
TIMEOUT = 120.0


@pytest.fixture
async def failing_receiver() -> AsyncIterator[str]:
    async def fail(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text="receiver broken")

    async with serving(fail) as url:
        yield url


def rules_yaml(url: str) -> str:
    return f"""
routes:
  - name: crm
    actions:
      - webhook: {{url: "{url}/sms", retry: {{initial: 0.5, factor: 1, max: 0.5, max_attempts: 100}}}}
"""


def shortened(rule_file: Path, into: Path) -> Path:
    """The rule file with every ``for`` (and group ``interval``) at 1 s; expressions as shipped."""
    document: dict[str, Any] = yaml.safe_load(rule_file.read_text())
    for group in document["groups"]:
        if "interval" in group:
            group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target = into / rule_file.name
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


class Prometheus:
    """The ``prometheus`` binary on 127.0.0.1 with a config written by the test."""

    def __init__(self, directory: Path) -> None:
        self.binary = tool("prometheus")
        self.directory = directory
        self.config = directory / "prometheus.yml"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, config: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(config))
        with (self.directory / "prometheus.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.directory / 'tsdb'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = Prometheus(directory)
    yield server
    server.stop()


async def firing(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    try:
        async with http.get(url + "/api/v1/alerts") as response:
            body = await response.json()
    except aiohttp.ClientError:
        return []  # not listening yet
    return [
        alert
        for alert in body["data"]["alerts"]
        if alert["labels"]["alertname"] == ALERT and alert["state"] == "firing"
    ]


async def test_failing_webhook_fires_the_error_rate_alert(
    tmp_path: Path, failing_receiver: str, prometheus: Prometheus
) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(rules_yaml(failing_receiver))
    rules = tmp_path / "rules"
    rules.mkdir()
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.log", routes)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
            started = time.monotonic()
            prometheus.start(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(shortened(path, rules)) for path in RULE_FILES],
                    "scrape_configs": [
                        {"job_name": "smsroute", "static_configs": [{"targets": [f"127.0.0.1:{engine.port}"]}]}
                    ],
                }
            )
            alerts: list[dict[str, Any]] = []

            async def fires() -> bool:  # one failing message a second (a scrape's worth) until the alert fires
                async with http.post(
                    engine.url + "/inbound/agiletelecom", data=form(f"hello {time.time()}")
                ) as response:
                    assert response.status == 200
                alerts[:] = await firing(http, prometheus.url)
                return bool(alerts)

            await eventually(fires, TIMEOUT, f"{ALERT} not firing after {TIMEOUT:.0f} s", interval=1.0)
            print(f"\n{ALERT} firing {time.monotonic() - started:.1f} s after Prometheus started")
    finally:
        engine.kill()
    [alert] = alerts
    assert alert["labels"] == {"alertname": ALERT, "severity": "warning", "sink": "webhook"}
    assert alert["annotations"]["summary"] == "100% of webhook delivery attempts fail"
    assert float(alert["value"]) == 1.0
