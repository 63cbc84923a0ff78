"""AWS through SNS: recorded requests (signature versions, certificate URL rules, topics, the
subscription confirmed against a stand-in SNS host) are cases in tests/fixtures/providers/aws/;
here, what a case cannot say: SNS retries a 5xx and drops a 4xx, so what fails for now is a 503; an
SMS event's log key, time and description."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from ingress_server import StartIngress
from provider_fixtures import ROOT, load, settings, sns_host
from smsroute.providers import aws


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_sns_host_out_of_reach_is_a_503_so_sns_retries(start_ingress: StartIngress) -> None:
    case = load(ROOT / "aws" / "subscription_confirmation.json")
    aws.CERTIFICATES.keys.pop(case.settings["test_certificate_url"], None)
    host = "sns.us-east-1.amazonaws.com"
    unreachable = {**settings(case), "resolve": {host: f"127.0.0.1:{closed_port()}"}}
    ingress = await start_ingress(clock=lambda: case.now, ingress={"aws": unreachable})
    status, answer, _ = await ingress.request("POST", case.target, data=case.body, headers=case.headers)
    assert (status, answer) == (503, f"cannot reach {host} now (ClientConnectorError); retry\n")
    assert ingress.events() == []


async def test_without_topics_nothing_is_verified_and_no_subscription_confirmed(start_ingress: StartIngress) -> None:
    case = load(ROOT / "aws" / "subscription_confirmation.json")
    ingress = await start_ingress(ingress={"aws": {}})
    status, answer, _ = await ingress.request("POST", case.target, data=case.body, headers=case.headers)
    assert (status, answer) == (403, "subscriptions are confirmed only with topic_arns configured\n")


def test_the_certificate_cache_keeps_the_most_recent() -> None:
    key = aws.public_key(load(ROOT / "aws" / "inbound_doc_sample_sv1.json").settings["test_certificate"].encode())
    cache = aws.Certificates(size=2)
    for url in ("a", "b", "a", "c"):
        cache.put(url, key)
    assert list(cache.keys) == ["a", "c"]


async def test_an_sms_event_is_keyed_by_message_and_keeps_its_time_and_description(start_ingress: StartIngress) -> None:
    case = load(ROOT / "aws" / "status_delivered.json")
    async with sns_host(case) as sns:
        ingress = await start_ingress(clock=lambda: case.now, ingress={"aws": sns.settings})
        status, _, _ = await ingress.request("POST", case.target, data=case.body, headers=case.headers)
    assert status == 200
    [event] = ingress.events()
    assert (event.kind, event.key) == ("status", "aws:status:9c00e1f0-3b2a-4c5d-8e7f-6a5b4c3d2e1f")
    report = aws.Normalizing().report(event, None)
    assert report.provider_time == datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=UTC)  # eventTimestamp, Unix ms
    assert (report.status, report.description) == ("delivered", "Message has been delivered")
