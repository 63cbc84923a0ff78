"""The ingress application: provider requests in, durable raw events out, provider answered last."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from .. import health, metrics
from ..config import Settings
from ..health import MoreMetrics
from ..models.raw import EventKind, RawEvent
from ..providers.base import Incoming, IngressError, Receiver, bad_request
from ..providers.kit import Unprocessable, codec_of
from .access import check_access, client_address
from .log import EventLog, LogUnavailable

log = logging.getLogger("smsroute.ingress")

# Metric children by label values, looked up once: the labels are bounded (configured ingress
# names, "unknown", refusal codes), and .labels() costs more than the increment on the hot path.
_requests = functools.cache(metrics.INGRESS_REQUESTS.labels)
_events = functools.cache(metrics.INGRESS_EVENTS.labels)
_latency = functools.cache(metrics.INGRESS_LATENCY.labels)

RECEIVERS = web.AppKey("receivers", dict[str, Receiver])
EVENT_LOG = web.AppKey("event_log", EventLog)
SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")


def create_app(
    settings: Settings,
    receivers: Mapping[str, Receiver],
    event_log: EventLog,
    more_metrics: MoreMetrics | None = None,
    clock: Callable[[], int] = time.time_ns,
    operators: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """``more_metrics``: the text exposition of the engine's other processes, added into ``/metrics``.
    ``operators``: adds the engine's operator API and console (the embedded engine's) to the app.
    ``clock``: the time a request is received, in nanoseconds since the epoch: its events'
    ``received_at``, and the "now" that signature timestamps are checked against (tests of recorded,
    timestamp-signed requests give the moment they were signed)."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[RECEIVERS] = dict(receivers)
    app[EVENT_LOG] = event_log
    health.add_routes(app, lambda: "ready" if event_log.ready else None, "log unavailable", more_metrics)
    # Any path below /inbound/ and /status/ is an ingress request: a name with a slash, or none, is
    # answered and counted as an unknown source like any other name.
    app.router.add_route("*", "/inbound/{source:.*}", _inbound)
    app.router.add_route("*", "/status/{source:.*}", _status)
    if operators is not None:
        operators(app)
    return app


async def _inbound(request: web.Request) -> web.Response:
    return await _receive(request, "inbound")


async def _status(request: web.Request) -> web.Response:
    return await _receive(request, "status")


async def _receive(request: web.Request, kind: EventKind) -> web.Response:
    started = time.perf_counter()
    received_at_us = request.app[CLOCK]() // 1000
    source = request.match_info["source"]
    receiver = request.app[RECEIVERS].get(source)
    label = source if receiver is not None else "unknown"
    try:
        if receiver is None:
            raise IngressError(404, "unknown_source", f"no ingress named {source!r}")
        response = await _accept(request, receiver, kind, received_at_us)
        outcome = "accepted"
    except IngressError as exc:
        outcome = exc.code
        body = (exc.reason + "\n").encode("utf-8", "backslashreplace")  # reasons may quote the request
        response = web.Response(status=exc.status, body=body, content_type="text/plain", headers=exc.headers)
        if exc.close:
            response.force_close()
        log.warning(
            "request refused",
            extra={
                "event": "ingress_refused",
                "source": source,
                "status": exc.status,
                "reason": exc.reason,
                "remote": request.remote,
            },
        )
    except Exception:  # a bug on some odd request: answered, counted and logged, never a dropped connection
        outcome = "error"
        response = web.Response(status=500, text="internal error; retry later\n")
        log.exception("request failed", extra={"event": "ingress_error", "source": source, "remote": request.remote})
    _requests(label, outcome).inc()
    _latency(label).observe(time.perf_counter() - started)
    return response


async def _accept(request: web.Request, receiver: Receiver, kind: EventKind, received_at_us: int) -> web.Response:
    if kind not in receiver.kinds:
        raise IngressError(404, "unsupported_kind", f"{receiver.provider} sends no {kind} events here")
    if request.method not in receiver.methods:
        allowed = ", ".join(sorted(receiver.methods))
        raise IngressError(405, "method_not_allowed", f"method must be {allowed}", {"Allow": allowed})
    incoming = await _read(request, receiver, kind, received_at_us)
    check_access(incoming, receiver.config)
    await receiver.prepare(incoming)
    receiver.authenticate(incoming)
    messages = receiver.split(incoming, receiver.validate(incoming))
    headers = _kept_headers(receiver, incoming)
    events = [
        RawEvent(
            ingress=receiver.name,
            provider=receiver.provider,
            kind=kind,
            received_at_us=received_at_us,
            remote_addr=incoming.remote,
            method=incoming.method,
            path=incoming.path,
            query=incoming.query_string,
            content_type=message.content_type,
            headers=headers,
            body=message.body,
            key=message.key,
            batch_index=index,
            batch_size=len(messages),
        )
        for index, message in enumerate(messages)
    ]
    records = _records(events)
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.log_timeout):
            if records:  # a request may carry no message (SNS: a subscription confirmation)
                await request.app[EVENT_LOG].append(records)
    except (LogUnavailable, TimeoutError) as exc:
        log.error("log unavailable", extra={"event": "log_unavailable", "source": receiver.name, "error": str(exc)})
        raise IngressError(503, "log_unavailable", "temporarily unable to store the message; retry later") from None
    _events(receiver.name, kind).inc(len(events))
    await receiver.settle(incoming, messages)
    return receiver.answer(incoming, messages)


async def _read(request: web.Request, receiver: Receiver, kind: EventKind, received_at_us: int) -> Incoming:
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise IngressError(413, "too_large", f"body larger than the {limit}-byte limit")
    try:
        if request.content.is_eof():  # the whole body came with the headers (most requests): no timer
            body = await request.read()
        else:
            async with asyncio.timeout(settings.body_timeout):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise IngressError(413, "too_large", f"body larger than the {limit}-byte limit") from None
    except TimeoutError:
        _give_up_body(request)
        raise IngressError(
            408, "timeout", f"body not received within {settings.body_timeout:g} s", close=True
        ) from None
    except ConnectionResetError:
        raise bad_request("the client closed the connection before sending the whole body") from None
    except (RequestPayloadError, HttpProcessingError) as exc:  # a broken gzip or chunked body
        _give_up_body(request)
        raise IngressError(400, "bad_request", f"body cannot be read: {exc}", close=True) from None
    if body and request.charset is not None:
        try:
            codec_of(request.charset)
        except Unprocessable as exc:
            raise IngressError(415, "unsupported_media_type", str(exc)) from None
    return Incoming(
        http=request,
        source=receiver.name,
        kind=kind,
        method=request.method,
        path=request.path,
        headers=request.headers,
        content_type=request.content_type if body else "",
        charset=request.charset,
        body=body,
        remote=client_address(request, receiver.config.trusted_proxies),
        received_at_us=received_at_us,
        text_errors="strict" if receiver.strict_text else "replace",
    )


def _give_up_body(request: web.Request) -> None:
    """Stop reading a body that is not coming, or cannot be read: aiohttp would otherwise wait for
    the rest of it after the answer (up to 10 s, or meet the error again). The answer then closes
    the connection, whose next bytes could not be told apart from the body's."""
    request.content.feed_eof()


def _kept_headers(receiver: Receiver, incoming: Incoming) -> dict[str, str]:
    """The request headers the raw event keeps; 400 for one that is not text (it could not be stored)."""
    kept = {name: incoming.headers[name] for name in receiver.headers if name in incoming.headers}
    for name, value in kept.items():
        if not value.isascii():
            raise bad_request(f"header {name} is not ASCII")
    return kept


def _records(events: list[RawEvent]) -> list[tuple[str, bytes]]:
    """The events as log records. A field that cannot be encoded (text the checks before let
    through) is the request's fault, answered 400: it must never reach, and fail, a group commit."""
    try:
        for event in events:
            event.key.encode("utf-8")  # the log stores keys as text
        return [(event.key, event.encode()) for event in events]
    except (UnicodeEncodeError, ValueError, TypeError) as exc:
        raise bad_request(f"the request holds text that cannot be stored: {exc}") from None
