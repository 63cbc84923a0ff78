"""What every ingress does whatever the provider: routing, limits, shared token, 503 when the log
is unavailable, health, metrics, group commit and the log line of a refusal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import eventually, write_locked
from ingress_server import Ingress, StartIngress

AGILE = "/inbound/agiletelecom"
SAMPLE = {
    "originator": "+393331234567",
    "destination": "+393201234567",
    "date_time": "2026-11-21 10:00:00",
    "text": "Ciao",
}
RETRY_LATER = "temporarily unable to store the message; retry later"


def texts(ingress: Ingress) -> list[str]:
    """The ``text`` field of every Agile Telecom event in the log, in log order."""
    return [parse_qs(event.body.decode())["text"][0] for event in ingress.events()]


# --- routing -------------------------------------------------------------------------------------


async def test_unknown_source_is_404(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/inbound/nope", data=SAMPLE)
    assert (status, body.strip()) == (404, "no ingress named 'nope'")
    assert ingress.events() == []


async def test_status_from_a_provider_that_sends_none_is_404(ingress: Ingress) -> None:
    status, body, _ = await ingress.post("/status/agiletelecom", data=SAMPLE)
    assert (status, body.strip()) == (404, "agiletelecom sends no status events here")
    assert ingress.events() == []


async def test_wrong_method_is_405_with_allow(ingress: Ingress) -> None:
    async with ingress.http.put(ingress.url + AGILE, data=SAMPLE) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.text()).strip() == "method must be POST"
    assert ingress.events() == []


async def test_configured_name_is_mounted_instead_of_the_default(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"sms-it": {"provider": "agiletelecom"}})
    assert (await ingress.post("/inbound/sms-it", data=SAMPLE))[:2] == (200, "+OK")
    for default in ("agiletelecom", "smsgateway24"):
        status, body, _ = await ingress.post(f"/inbound/{default}", data=SAMPLE)
        assert (status, body.strip()) == (404, f"no ingress named {default!r}")
    [event] = ingress.events()
    assert (event.ingress, event.provider, event.path) == ("sms-it", "agiletelecom", "/inbound/sms-it")


# --- body size -----------------------------------------------------------------------------------


async def test_oversized_body_is_413_naming_the_limit(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(max_body_bytes=1024)
    status, body, _ = await ingress.post(AGILE, data={**SAMPLE, "text": "x" * 2048})
    assert (status, body.strip()) == (413, "body larger than the 1024-byte limit")
    assert ingress.events() == []


async def test_body_of_exactly_the_limit_is_accepted(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(max_body_bytes=1024)
    head = b"originator=1&destination=2&date_time=3&text="
    body = head + b"x" * (1024 - len(head))
    status, _, _ = await ingress.post(AGILE, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    [event] = ingress.events()
    assert event.body == body


async def test_oversized_chunked_body_is_413_not_5xx(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is hit while reading
        yield b"originator=1&destination=2&date_time=3&text="
        for _ in range(8):
            yield b"x" * 256

    status, body, response = await ingress.post(
        AGILE, data=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert (status, body.strip()) == (413, "body larger than the 1024-byte limit")
    assert ingress.events() == []


@pytest.mark.parametrize("charset", ["bogus", "base64", "utf-7", "idna", "undefined", "utf-16"])
async def test_a_charset_off_the_allow_list_is_415_not_5xx(ingress: Ingress, charset: str) -> None:
    """utf-7 decodes to lone surrogates, idna and undefined raised mid-decoding: only the charsets
    providers send are read at all."""
    headers = {"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"}
    status, body, _ = await ingress.post(AGILE, data=b"originator=1&destination=2&date_time=3&text=4", headers=headers)
    assert status == 415
    assert body.startswith(f"charset {charset!r} is not accepted (utf-8, us-ascii, iso-8859-1")
    assert ingress.events() == []


async def test_declared_charset_is_honoured(ingress: Ingress) -> None:
    body = "originator=1&destination=2&date_time=3&text=Caffè".encode("latin-1")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"}
    assert (await ingress.post(AGILE, data=body, headers=headers))[:2] == (200, "+OK")
    [event] = ingress.events()
    assert event.body == body  # logged byte for byte, not transcoded


# --- shared token --------------------------------------------------------------------------------


@pytest.fixture
async def guarded(start_ingress: StartIngress) -> Ingress:
    return await start_ingress(ingress={"agiletelecom": {"token": "s3cret"}})


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "missing token (X-Smsroute-Token header or token parameter)"),
        ({"headers": {"X-Smsroute-Token": "wrong"}}, "wrong token"),
        ({"params": {"token": "s3cre"}}, "wrong token"),
        ({"headers": {"X-Smsroute-Token": ""}}, "missing token (X-Smsroute-Token header or token parameter)"),
    ],
)
async def test_missing_or_wrong_token_is_401(
    guarded: Ingress, kwargs: dict[str, dict[str, str]], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, body, _ = await guarded.post(AGILE, data=SAMPLE, **kwargs)
    assert (status, body.strip()) == (401, reason)
    assert guarded.events() == []
    assert "s3cret" not in caplog.text


async def test_token_in_header_is_accepted(guarded: Ingress) -> None:
    status, body, _ = await guarded.post(AGILE, data=SAMPLE, headers={"X-Smsroute-Token": "s3cret"})
    assert (status, body) == (200, "+OK")
    [event] = guarded.events()
    assert "s3cret" not in str(event.headers)


async def test_token_in_query_is_accepted_and_not_logged(guarded: Ingress, caplog: pytest.LogCaptureFixture) -> None:
    status, body, _ = await guarded.post(AGILE + "?campaign=tv&token=s3cret", data=SAMPLE)
    assert (status, body) == (200, "+OK")
    [event] = guarded.events()
    assert event.query == "campaign=tv"
    assert "s3cret" not in caplog.text


async def test_custom_token_header(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"agiletelecom": {"token": "s3cret", "token_header": "X-Agile-Key"}})
    status, body, _ = await ingress.post(AGILE, data=SAMPLE, headers={"X-Smsroute-Token": "s3cret"})
    assert (status, body.strip()) == (401, "missing token (X-Agile-Key header or token parameter)")
    assert (await ingress.post(AGILE, data=SAMPLE, headers={"X-Agile-Key": "s3cret"}))[:2] == (200, "+OK")
    assert len(ingress.events()) == 1


async def test_token_protects_only_its_own_ingress(guarded: Ingress) -> None:
    """With ``ingress`` configured only the configured ingress is mounted at all."""
    status, body, _ = await guarded.post("/inbound/smsgateway24", json={"address": 1, "body": "x", "sms_id": 1})
    assert (status, body.strip()) == (404, "no ingress named 'smsgateway24'")


# --- log unavailable -----------------------------------------------------------------------------


async def readyz(ingress: Ingress) -> int:
    return (await ingress.get("/readyz"))[0]


async def ready(ingress: Ingress) -> bool:
    return await readyz(ingress) == 200


async def test_locked_log_is_503_and_recovers(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(log_busy_timeout=0.2)
    assert (await ingress.post(AGILE, data={**SAMPLE, "text": "before"}))[:2] == (200, "+OK")
    with write_locked(ingress.log.path):
        status, body, _ = await ingress.post(AGILE, data={**SAMPLE, "text": "refused"})
        assert (status, body.strip()) == (503, RETRY_LATER)
        assert await readyz(ingress) == 503
    assert (await ingress.post(AGILE, data={**SAMPLE, "text": "after"}))[:2] == (200, "+OK")
    assert await readyz(ingress) == 200
    # The failed commit was rolled back: the log holds exactly what was acknowledged.
    assert texts(ingress) == ["before", "after"]


async def test_readiness_recovers_without_traffic(start_ingress: StartIngress) -> None:
    """A load balancer sends nothing to a not-ready instance: readiness must come back by itself."""
    ingress = await start_ingress(log_busy_timeout=0.2)
    with write_locked(ingress.log.path):
        assert (await ingress.post(AGILE, data=SAMPLE))[0] == 503
        assert await readyz(ingress) == 503
    await eventually(lambda: ready(ingress), 5, "still not ready", interval=0.1)
    assert await readyz(ingress) == 200
    assert ingress.events() == []


async def test_queued_write_answers_503_after_log_timeout(start_ingress: StartIngress) -> None:
    # The first write waits 0.25 s for the lock and fails; the second, queued behind it, would
    # wait 0.5 s in all: longer than log_timeout, so it is answered 503 without waiting further.
    ingress = await start_ingress(log_timeout=0.3, log_busy_timeout=0.25)
    before = await scrape(ingress)
    with write_locked(ingress.log.path):
        answers = await asyncio.gather(*(ingress.post(AGILE, data={**SAMPLE, "text": "timed out"}) for _ in range(2)))

        async def both_tried() -> bool:  # the writer is done with both: each in a commit, failed on the lock
            return moved(before, await scrape(ingress), "smsroute_log_commit_requests_sum") == 2

        await eventually(both_tried, 5, "the writer never tried both writes", interval=0.05)
    assert [(status, body.strip()) for status, body, _ in answers] == [(503, RETRY_LATER)] * 2
    assert (await ingress.post(AGILE, data={**SAMPLE, "text": "ok"}))[:2] == (200, "+OK")
    # Guaranteed: every acknowledged event is in the log. A timed-out write may still be queued and
    # commit once the lock is released; the provider, told 503, retries, and dedupe drops the copy.
    logged = texts(ingress)
    assert "ok" in logged
    assert set(logged) <= {"timed out", "ok"}


# --- health and metrics --------------------------------------------------------------------------


async def test_healthz(ingress: Ingress) -> None:
    assert (await ingress.get("/healthz"))[:2] == (200, "ok\n")
    assert (await ingress.get("/readyz"))[:2] == (200, "ready\n")


async def scrape(ingress: Ingress) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, by (sample name, labels)."""
    status, text, _ = await ingress.get("/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_requests_events_and_latency(ingress: Ingress) -> None:
    before = await scrape(ingress)
    assert (await ingress.post(AGILE, data=SAMPLE))[0] == 200
    assert (await ingress.post(AGILE, data={"text": "x"}))[0] == 400
    assert (await ingress.post("/status/smsgateway24", json={"sms_id": 1, "status_id": 7}))[0] == 200
    after = await scrape(ingress)
    requests = "smsroute_ingress_requests_total"
    assert moved(before, after, requests, source="agiletelecom", outcome="accepted") == 1
    assert moved(before, after, requests, source="agiletelecom", outcome="bad_request") == 1
    assert moved(before, after, requests, source="smsgateway24", outcome="accepted") == 1
    events = "smsroute_ingress_events_total"
    assert moved(before, after, events, source="agiletelecom", kind="inbound") == 1
    assert moved(before, after, events, source="smsgateway24", kind="status") == 1
    latency = "smsroute_ingress_request_duration_seconds"
    assert moved(before, after, latency + "_count", source="agiletelecom") == 2
    assert moved(before, after, latency + "_bucket", source="agiletelecom", le="+Inf") == 2
    assert moved(before, after, latency + "_sum", source="agiletelecom") > 0


async def test_unknown_sources_share_one_label(ingress: Ingress) -> None:
    before = await scrape(ingress)
    for name in ("nope", "wp-login.php", "x" * 200):
        assert (await ingress.post(f"/inbound/{name}", data=SAMPLE))[0] == 404
    after = await scrape(ingress)
    assert moved(before, after, "smsroute_ingress_requests_total", source="unknown", outcome="unknown_source") == 3
    sources = {dict(labels).get("source") for _, labels in after}
    assert not sources & {"nope", "wp-login.php", "x" * 200}


async def test_concurrent_requests_share_commits(ingress: Ingress) -> None:
    before = await scrape(ingress)
    replies = await asyncio.gather(*(ingress.post(AGILE, data={**SAMPLE, "text": f"m{n}"}) for n in range(200)))
    assert [reply[:2] for reply in replies] == [(200, "+OK")] * 200
    assert sorted(texts(ingress)) == sorted(f"m{n}" for n in range(200))
    after = await scrape(ingress)
    assert moved(before, after, "smsroute_log_commit_requests_sum") == 200
    commits = moved(before, after, "smsroute_log_commit_requests_count")
    assert 1 <= commits < 200  # group commit: many requests made durable by one transaction
    assert moved(before, after, "smsroute_log_commits_total", outcome="ok") == commits


# --- logs ----------------------------------------------------------------------------------------


async def test_refusal_is_logged_with_status_and_reason(ingress: Ingress, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smsroute")
    assert (await ingress.post(AGILE, data={"originator": "+393331234567"}))[0] == 400
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "ingress_refused"]
    assert record.levelno == logging.WARNING
    assert (record.source, record.status, record.reason, record.remote) == (
        "agiletelecom",
        400,
        "missing required fields: destination, date_time, text",
        "127.0.0.1",
    )
