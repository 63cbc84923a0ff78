"""The metrics contract: each engine (embedded; Kafka ingress and worker), driven through every
path that moves a metric, exports exactly the metrics, types and labels that docs/operations.md
documents, with bounded label values."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.parser import text_string_to_metric_families

from engine_process import EngineProcess, form
from fake_providers import FakeOpenVoip
from helpers import eventually
from kafka_engine import KafkaEngine
from local_server import Receiver
from metrics_contract import contract
from samples import VONAGE
from smsc import Smsc, bind_settings, mo

UNBOUNDED = re.compile(r"://|\+?\d{6,}|[0-9a-f]{24,}|msg_")
"""What a label value must never look like: a URL, a phone number, a message or delivery id."""
CONFIGURED = {"version", "topic"}
"""Labels whose values come from the configuration (a rules hash, the deployment's topic names)."""


def rules_yaml(url: str) -> str:
    return f"""
routes:
  - name: ok
    match: {{keyword: OK}}
    actions:
      - webhook: {{url: "{url}/ok"}}
  - name: failing
    match: {{keyword: FAIL}}
    actions:
      - webhook: {{url: "{url}/fail", retry: {{schedule: [0.1, 0.1]}}}}
  - name: stop
    match: {{keyword: STOP}}
    compliance: stop
    actions:
      - sms_reply: {{text: "Bye"}}
  - name: info
    match: {{keyword: INFO}}
    actions:
      - sms_reply: {{text: "Thanks"}}
"""


def vonage_part(message_id: str, ref: str, part: int, text: str) -> dict[str, str]:
    return {
        **VONAGE,
        "messageId": message_id,
        "text": text,
        "concat": "true",
        "concat-ref": ref,
        "concat-total": "2",
        "concat-part": str(part),
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, Family]:
    """Metric families by name; the text format's ``X_created`` gauges are part of ``X``, not families."""
    async with http.get(url) as response:
        response.raise_for_status()
        families = {family.name: family for family in text_string_to_metric_families(await response.text())}
    return {
        name: family
        for name, family in families.items()
        if not (name.endswith("_created") and name.removesuffix("_created") in families)
    }


def documented_name(family: Family) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def sampled(families: dict[str, Family]) -> set[str]:
    return {documented_name(family) for family in families.values() if family.samples}


async def drive(http: aiohttp.ClientSession, url: str) -> None:
    """Traffic through every path: delivered, retried to a dead letter, unrouted, refused, a
    provider retry, a stitched message with a repeated part, and one whose second part never comes;
    an SMS reply sent (the STOP confirmation), one suppressed (INFO after STOP), a delivery report."""
    posts = [
        ("/inbound/agiletelecom", {"data": form("OK thanks")}),
        ("/inbound/agiletelecom", {"data": form("OK thanks")}),  # the provider's retry
        ("/inbound/agiletelecom", {"data": form("FAIL please")}),
        ("/inbound/agiletelecom", {"data": form("HELLO nobody")}),
        ("/inbound/nosuchsource", {"data": form("OK")}),
        ("/inbound/vonage", {"json": vonage_part("A1", "7", 1, "OK first ")}),
        ("/inbound/vonage", {"json": vonage_part("A2", "7", 1, "OK first ")}),  # same part, new id
        ("/inbound/vonage", {"json": vonage_part("A3", "7", 2, "second")}),
        ("/inbound/vonage", {"json": vonage_part("B1", "8", 1, "OK lonely ")}),
        ("/inbound/agiletelecom", {"data": form("STOP")}),
        ("/inbound/agiletelecom", {"data": form("INFO please")}),
        ("/status/smsgateway24", {"json": {"sms_id": 1, "status_id": 7, "sendto": "+393331234567"}}),
    ]
    for path, body in posts:
        async with http.post(url + path, **body) as response:
            await response.read()


async def test_embedded_engine_exports_exactly_the_documented_metrics(
    tmp_path: Path,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
    smsc: Smsc,
) -> None:
    receiver.fail["/fail"] = -1
    routes = write_routes(tmp_path, receiver)
    replies = {f"SMSROUTE_SMS_REPLY__OPENVOIP__{name.upper()}": value for name, value in openvoip.settings().items()}
    binds = {f"SMSROUTE_SMPP__OPERATOR__{name.upper()}": str(value) for name, value in bind_settings(smsc.port).items()}
    env = {"SMSROUTE_STITCH_TIMEOUT": "2", "SMSROUTE_SMS_REPLY__PROVIDER": "openvoip", **replies, **binds}
    engine = EngineProcess(tmp_path / "data", tmp_path / "engine.log", routes, env=env)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
            await drive(http, engine.url)
            smsc.submit(mo(b"OK over SMPP"))
            families = await exported(http, [engine.url + "/metrics"], {"all", "embedded"})
    finally:
        engine.kill()
    check(families)


async def test_kafka_engine_exports_exactly_the_documented_metrics(
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
    openvoip: FakeOpenVoip,
    smsc: Smsc,
) -> None:
    """The ingress and a worker together: what both export, as Prometheus would scrape them."""
    receiver.fail["/fail"] = -1
    engine = KafkaEngine(
        tmp_path / "kafka",
        kafka_bootstrap,
        write_routes(tmp_path, receiver),
        stitch_timeout=2.0,
        sms_reply={"provider": "openvoip"},
        **{"smpp.operator": bind_settings(smsc.port), "sms_reply.openvoip": openvoip.settings()},
    )
    try:
        ingress, worker = engine.start_ingress(), engine.start_worker()
        async with aiohttp.ClientSession() as http:
            await engine.wait_ready(http)
            await drive(http, ingress.url)
            smsc.submit(mo(b"OK over SMPP"))
            families = await exported(http, [ingress.url + "/metrics", worker.metrics_url], {"all", "kafka"})
    finally:
        engine.stop()
    check(families)


def write_routes(tmp_path: Path, receiver: Receiver) -> Path:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(rules_yaml(receiver.url))
    return routes


async def exported(http: aiohttp.ClientSession, urls: list[str], engines: set[str]) -> dict[str, Family]:
    """The families of every scraped process together, once each metric documented for ``engines``
    has samples (some move only after retries or the stitch timeout)."""
    expected = {name for name, metric in contract().items() if metric.engine in engines}
    families: dict[str, Family] = {}

    async def all_sampled() -> bool:
        families.clear()
        for url in urls:
            for name, family in (await scrape(http, url)).items():
                if name in families:
                    families[name].samples += family.samples
                else:
                    families[name] = family
        return expected <= sampled(families)

    await eventually(all_sampled, 60, lambda: f"never exported: {sorted(expected - sampled(families))}", interval=0.2)
    return families


def check(families: dict[str, Family]) -> None:
    """Only documented metrics, with their documented type and labels, and bounded label values."""
    documented = contract()
    ours = {documented_name(family): family for family in families.values() if family.name.startswith("smsroute_")}
    assert sorted(ours.keys() - documented.keys()) == [], (
        "exported but not in the metrics contract (docs/operations.md)"
    )
    for name, family in ours.items():
        metric = documented[name]
        assert family.type == metric.type, name
        if family.samples:
            labels = {label for sample in family.samples for label in sample.labels} - {"le"}
            assert labels == metric.labels, name
        values = {value for sample in family.samples for key, value in sample.labels.items() if key not in CONFIGURED}
        assert not [value for value in values if UNBOUNDED.search(value)], name
    retries = {(s.labels["sink"], s.labels["reason"]) for s in families["smsroute_delivery_retries"].samples}
    assert retries == {("webhook", "http_5xx")}  # the receiver's 503s, by reason
