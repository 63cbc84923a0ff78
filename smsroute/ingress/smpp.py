"""The SMPP ingress: one :class:`Bind` per ``[smpp.NAME]``, writing every deliver_sm and data_sm to
the durable log as a raw event and answering the SMSC only once it is there.

Each PDU becomes a raw event of provider ``smpp``: its body the whole PDU as received (SMPP 3.4
wire format, content type ``application/vnd.smpp.pdu``), ``method`` the command (``deliver_sm``,
``data_sm``), ``remote_addr`` the SMSC's host:port, ``ingress`` the bind's name, kind ``status``
for delivery receipts (an esm_class message type) and ``inbound`` for the rest. The one setting
the normalizer needs, what data_coding 0 means at this SMSC, travels in the event's headers
(``smpp-default-alphabet``), so processing never needs the live session or the configuration.

Partition keys: ``smpp:<source_addr>:<destination_addr>`` as the SMSC sent them (every part of a
message and every redelivery of it share one), and ``smpp:<message id>`` for receipts.

When the log cannot make an event durable within ``log_timeout``, the PDU is answered with
``busy_status`` (ESME_RX_T_APPN by default: a temporary error, so the SMSC delivers it again) and
the bind stops reading for ``throttle`` seconds, doubling while writes keep failing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import time
from collections.abc import Mapping

from .. import metrics
from ..models.raw import EventKind, RawEvent
from ..providers.smpp import receipt_id
from ..smpp import pdu as P
from ..smpp.config import SmppConfig
from ..smpp.pdu import ALPHABET_HEADER, CONTENT_TYPE
from ..smpp.session import BindRefused, Session
from .log import EventLog, LogUnavailable

log = logging.getLogger("smsroute.smpp")


_binds = functools.cache(metrics.SMPP_BINDS.labels)
_pdus = functools.cache(metrics.SMPP_PDUS.labels)
_events = functools.cache(metrics.INGRESS_EVENTS.labels)
_requests = functools.cache(metrics.INGRESS_REQUESTS.labels)
_latency = functools.cache(metrics.INGRESS_LATENCY.labels)


def event_key(data: bytes) -> tuple[EventKind, str]:
    """The event's kind and partition key, from the PDU's addresses (and a receipt's message id)."""
    try:
        source, destination, esm_class = P.addresses(data)
    except P.PduError:
        return "inbound", "smpp:unreadable"  # logged all the same: the normalizer dead-letters it, with the reason
    if not esm_class & P.ESM_TYPE:
        return "inbound", f"smpp:{source}:{destination}"
    try:
        return "status", f"smpp:{receipt_id(P.parse(data)) or f'{destination}:{source}'}"
    except P.PduError:
        return "status", f"smpp:{destination}:{source}"


class Bind:
    """One bind: connect, bind, receive, reconnect with backoff, until stopped."""

    def __init__(self, name: str, config: SmppConfig, event_log: EventLog, log_timeout: float) -> None:
        self.name = name
        self.config = config
        self.event_log = event_log
        self.log_timeout = log_timeout
        self.session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failures = 0
        self._headers: dict[str, str] = {ALPHABET_HEADER: config.default_alphabet}
        self._busy = P.TEMPORARY[config.busy_status]
        self._tls = _tls_context(config) if config.tls else None
        self.bound = asyncio.Event()
        metrics.SMPP_BIND_UP.labels(name).set(0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"smpp-{self.name}")

    async def stop(self) -> None:
        """Answer what is in flight, unbind, disconnect."""
        self._stopping.set()
        if self.session is not None:
            await self.session.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.bound.clear()
        metrics.SMPP_BIND_UP.labels(self.name).set(0)

    async def _run(self) -> None:
        config = self.config
        delay = config.reconnect_initial
        where = {"bind": self.name, "peer": f"{config.host}:{config.port}", "system_id": config.system_id}
        while not self._stopping.is_set():
            session = self.session = Session(
                config.host,
                config.port,
                system_id=config.system_id,
                password=config.password.get_secret_value(),
                handler=self,
                bind=config.bind,
                system_type=config.system_type,
                addr_ton=config.addr_ton,
                addr_npi=config.addr_npi,
                address_range=config.address_range,
                tls=self._tls,
                server_hostname=config.tls_server_name or config.host,
                connect_timeout=config.connect_timeout,
                enquire_link_interval=config.enquire_link_interval,
                response_timeout=config.response_timeout,
                window=config.window,
                counted=self._counted,
            )
            try:
                await session.bind()
            except BindRefused as exc:
                _binds(self.name, "refused").inc()
                log.error(
                    f"SMPP bind {self.name} refused by the SMSC: {P.status_name(exc.status)}",
                    extra={"event": "smpp_bind_refused", **where, "status": P.status_name(exc.status)},
                )
            except Exception as exc:  # OSError, TimeoutError, ProtocolError, ssl.SSLError...: never the end of the bind
                _binds(self.name, "error").inc()
                log.error(
                    f"SMPP bind {self.name} failed: {type(exc).__name__}: {exc}",
                    extra={"event": "smpp_bind_failed", **where, "error": f"{type(exc).__name__}: {exc}"},
                )
            else:
                _binds(self.name, "bound").inc()
                metrics.SMPP_BIND_UP.labels(self.name).set(1)
                self.bound.set()
                log.info(
                    f"SMPP bind {self.name} bound as {config.bind}",
                    extra={"event": "smpp_bound", **where, "mode": config.bind},
                )
                started = time.monotonic()
                reason = await session.serve()
                metrics.SMPP_BIND_UP.labels(self.name).set(0)
                self.bound.clear()
                if self._stopping.is_set():
                    return
                log.warning(
                    f"SMPP bind {self.name} lost: {reason}", extra={"event": "smpp_unbound", **where, "reason": reason}
                )
                if time.monotonic() - started > config.reconnect_max:
                    delay = config.reconnect_initial  # it was up for a good while: start the backoff over
            if self._stopping.is_set():
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, config.reconnect_max)

    async def message(self, command_id: int, data: bytes) -> int:
        """Make the PDU durable, then say OK; a temporary error (and a pause) when the log fails."""
        started = time.perf_counter()
        status = await self._store(command_id, data)
        # Counted as the HTTP ingress counts a request, so its alerts (log unavailable, silent
        # provider, slow answers) cover SMPP sources too.
        _requests(self.name, "accepted" if status == P.ESME_ROK else "log_unavailable").inc()
        _latency(self.name).observe(time.perf_counter() - started)
        return status

    async def _store(self, command_id: int, data: bytes) -> int:
        received_at_us = time.time_ns() // 1000
        kind, key = event_key(data)
        event = RawEvent(
            ingress=self.name,
            provider="smpp",
            kind=kind,
            received_at_us=received_at_us,
            remote_addr=f"{self.config.host}:{self.config.port}",
            method=P.command_name(command_id),
            path="",
            query="",
            content_type=CONTENT_TYPE,
            headers=self._headers,
            body=data,
            key=key,
        )
        try:
            async with asyncio.timeout(self.log_timeout):
                await self.event_log.append([(key, event.encode())])
        except (LogUnavailable, TimeoutError) as exc:
            pause = min(self.config.throttle * 2**self._failures, self.config.throttle_max)
            self._failures += 1
            if self.session is not None:
                self.session.pause(pause)
            log.error(
                f"log unavailable: SMPP bind {self.name} answers {self.config.busy_status} and pauses {pause:g} s",
                extra={"event": "log_unavailable", "source": self.name, "error": str(exc), "pause": pause},
            )
            return self._busy
        self._failures = 0
        _events(self.name, kind).inc()
        return P.ESME_ROK

    def _counted(self, command: str, status: int) -> None:
        _pdus(self.name, command, P.status_name(status)).inc()


class Binds:
    """Every configured bind, started and stopped together beside the HTTP ingress."""

    def __init__(self, binds: Mapping[str, SmppConfig], event_log: EventLog, log_timeout: float) -> None:
        self.binds = [Bind(name, config, event_log, log_timeout) for name, config in binds.items()]

    async def start(self) -> None:
        for receiver in self.binds:
            await receiver.start()

    async def stop(self) -> None:
        await asyncio.gather(*(receiver.stop() for receiver in self.binds))


def _tls_context(config: SmppConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
