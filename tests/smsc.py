"""A real SMSC for tests and benchmarks: smpp34's server mode (Rust, MIT; ``pip install smpp34``).

This module is a thin harness around ``smpp34.Server``: the library accepts the binds, frames,
windows and sends the ``deliver_sm`` PDUs and reads their ``deliver_sm_resp``; the harness is the
store-and-forward an SMSC has around it. It keeps the mobile-originated messages a test queued,
pushes them to whichever ESME is bound (up to ``window`` unanswered at a time), records each
``deliver_sm_resp`` status, and keeps every message that was not answered OK (an error status, or
the session ended before the answer) to deliver again, on this bind after ``retry_delay`` or on
the next one.

``drop()`` cuts every connection (reset, as a network failure or an SMSC crash would) and refuses
new ones for a while: ESMEs reach the server through a small TCP relay in front of it, since
smpp34's ``Server.stop()`` stops listening but leaves bound sessions running. ``unbind()`` is the
SMSC's own ``unbind`` to every bound ESME (smpp34's ``Esme.unbind``). What was in flight is
redelivered after the ESME binds again.

smpp34 (1.5.0) answers ``generic_nack`` to a ``deliver_sm_resp`` that arrives on a *receiver*
bind, so the ESME under test binds as a transceiver here; its receiver bind is checked for the
bind itself.

Run as a script (``python tests/smsc.py --port P --count N``) it serves N generated messages to
the first ESME and prints one JSON line of figures when all were answered OK (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import smpp34

OK = 0


@dataclass
class Mo:
    """One message the SMSC has to deliver: the ``Esme.deliver_sm`` arguments, and what became of it."""

    id: int
    args: dict[str, Any]
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)
    """Every answer: a command_status, or ``"dropped"`` when the session ended before one."""


def deliver(destination: str, message: bytes = b"", **args: Any) -> dict[str, Any]:
    """``deliver_sm`` arguments, as smpp34 takes them."""
    return {"destination_addr": destination, "short_message": message, **args}


class Smsc:
    """smpp34's server on 127.0.0.1:``port`` with a store-and-forward queue of MO messages."""

    def __init__(
        self,
        port: int,
        *,
        window: int = 32,
        retry_delay: float = 0.2,
        system_id: str = "test-smsc",
        relay: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        """Where ESMEs connect: the relay, or the server itself with ``relay=False``."""
        self.relay = relay
        self.tls = tls
        """The relay's TLS (server side): ESMEs then connect over TLS, the relay talks to smpp34 in clear."""
        self._server_port = _free_port() if relay else port
        self._relay: asyncio.Server | None = None
        self._connections: set[asyncio.Transport] = set()
        self._esmes: dict[str, smpp34.Esme] = {}
        self.window = window
        self.retry_delay = retry_delay
        self.system_id = system_id
        self.messages: dict[int, Mo] = {}
        self.acked: dict[int, float] = {}
        """Message id -> when the SMSC read its deliver_sm_resp OK."""
        self.binds: list[str] = []
        """system_id of every bind, in order."""
        self.unbinds = 0
        self._ids = itertools.count(1)
        self._queue: collections.deque[Mo] = collections.deque()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._server: smpp34.Server | None = None
        self._events: asyncio.Task[None] | None = None
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = smpp34.Server("127.0.0.1", self._server_port, system_id=self.system_id)
        await self._server.start()
        self._events = asyncio.create_task(self._serve(self._server))
        if self.relay:
            await self._listen()

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        for transport in list(self._connections):
            transport.abort()
        await self._close()

    async def drop(self, down_for: float = 0.0) -> None:
        """Reset every connection and refuse new ones for ``down_for`` seconds."""
        assert self.relay, "drop() needs the relay"
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        for transport in list(self._connections):
            transport.abort()
        await asyncio.sleep(down_for)
        await self._listen()

    async def unbind(self) -> None:
        """The SMSC unbinds every bound ESME."""
        for esme in list(self._esmes.values()):
            await esme.unbind()

    async def _listen(self) -> None:
        self._relay = await asyncio.start_server(
            self._relay_one, "127.0.0.1", self.port, reuse_address=True, ssl=self.tls
        )

    async def _relay_one(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._server_port)
        except OSError:
            client_writer.transport.abort()
            return
        transports = {client_writer.transport, server_writer.transport}
        self._connections |= transports

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for transport in transports:
                    transport.abort()

        try:
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        finally:
            self._connections -= transports

    async def __aenter__(self) -> Smsc:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def submit(self, *messages: dict[str, Any]) -> list[int]:
        """Queue messages (``deliver(...)`` arguments) for delivery; their ids, in order."""
        ids = []
        for args in messages:
            mo = Mo(next(self._ids), args)
            self.messages[mo.id] = mo
            self._queue.append(mo)
            ids.append(mo.id)
        self._wake.set()
        return ids

    @property
    def unacked(self) -> list[int]:
        return [mo_id for mo_id in self.messages if mo_id not in self.acked]

    async def wait_acked(self, ids: Iterable[int], timeout: float = 20.0) -> None:
        """Until every one of ``ids`` was answered OK."""
        wanted = set(ids)
        async with asyncio.timeout(timeout):
            while not wanted <= self.acked.keys():
                self._changed.clear()
                await self._changed.wait()

    async def wait_bound(self, count: int = 1, timeout: float = 20.0) -> None:
        """Until ``count`` binds were accepted in all."""
        async with asyncio.timeout(timeout):
            while len(self.binds) < count:
                self._changed.clear()
                await self._changed.wait()

    async def _close(self) -> None:
        server, self._server = self._server, None
        if self._events is not None:
            self._events.cancel()
            await asyncio.gather(self._events, return_exceptions=True)
            self._events = None
        for pump in self._pumps.values():
            pump.cancel()
        await asyncio.gather(*self._pumps.values(), return_exceptions=True)
        self._pumps.clear()
        if server is not None:
            await server.stop()
        # Sessions are gone: answers still outstanding fail, and their messages go back on the queue.
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _serve(self, server: smpp34.Server) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self.binds.append(event.system_id)
                self._esmes[event.session_id] = event
                self._pumps[event.session_id] = asyncio.create_task(self._pump(event))
            elif isinstance(event, smpp34.Unbound):
                self.unbinds += 1
                self._esmes.pop(event.session_id, None)
                pump = self._pumps.pop(event.session_id, None)
                if pump is not None:
                    pump.cancel()
            self._changed.set()

    async def _pump(self, esme: smpp34.Esme) -> None:
        slots = asyncio.Semaphore(self.window)
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await slots.acquire()
            if not self._queue:
                slots.release()
                continue
            mo = self._queue.popleft()
            task = asyncio.create_task(self._deliver(esme, mo, slots))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, esme: smpp34.Esme, mo: Mo, slots: asyncio.Semaphore) -> None:
        mo.attempts += 1
        try:
            answer = await esme.deliver_sm(**mo.args)
            status: int | str = answer.command_status
        except (smpp34.SmppError, asyncio.CancelledError):
            status = "dropped"
        finally:
            slots.release()
        mo.statuses.append(status)
        if status == OK:
            self.acked.setdefault(mo.id, time.monotonic())
            self._changed.set()
            return
        if status != "dropped":
            await asyncio.sleep(self.retry_delay)  # a temporary error: the SMSC tries again a little later
        self._queue.appendleft(mo)
        self._wake.set()
        self._changed.set()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _serve_load(port: int, count: int, window: int) -> None:
    async with Smsc(port, window=window, relay=False) as smsc:
        ids = smsc.submit(
            *(
                deliver(
                    "393201234567",
                    f"load test message {n:07d}".encode(),
                    source_addr=f"39333{n % 10_000_000:07d}",
                    source_addr_ton=1,
                    source_addr_npi=1,
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                )
                for n in range(count)
            )
        )
        await smsc.wait_bound(timeout=60)
        started = time.monotonic()
        await smsc.wait_acked(ids, timeout=600)
        elapsed = time.monotonic() - started
        retried = sum(mo.attempts - 1 for mo in smsc.messages.values())
        print(
            json.dumps(
                {
                    "count": count,
                    "seconds": elapsed,
                    "per_second": count / elapsed,
                    "redelivered": retried,
                    "window": window,
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(_serve_load(args.port, args.count, args.window))


if __name__ == "__main__":
    main()


# --- what the SMPP tests send, and the fixture ---------------------------------------------------

SENDER = "393331234567"
SHORT_CODE = "393201234567"
INTL = {"source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 1, "dest_addr_npi": 1}


def mo(text: bytes, **args: Any) -> dict[str, Any]:
    return deliver(SHORT_CODE, text, source_addr=SENDER, **{**INTL, **args})


def bind_settings(port: int, **more: Any) -> dict[str, Any]:
    # smpp34's server refuses deliver_sm_resp on a receiver bind (see tests/smsc.py): transceiver here.
    return {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "smsroute",
        "password": "secret",
        "bind": "transceiver",
        "reconnect_initial": 0.2,
        "reconnect_max": 1.0,
        **more,
    }


def smpp_overrides(kind: str, port: int, **more: Any) -> dict[str, Any]:
    """The bind ``operator`` as settings overrides: a nested dict in-process, a [smpp.operator] table on Kafka."""
    if kind == "kafka":
        return {"smpp.operator": bind_settings(port, **more)}
    return {"smpp": {"operator": bind_settings(port, **more)}}


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """A real SMSC on a free 127.0.0.1 port, for the test."""
    async with Smsc(_free_port()) as server:
        yield server


def udh8(ref: int, total: int, index: int) -> bytes:
    return bytes([5, 0x00, 3, ref, total, index])


def udh16(ref: int, total: int, index: int) -> bytes:
    return bytes([6, 0x08, 4, ref >> 8, ref & 0xFF, total, index])


def sar(ref: int, total: int, index: int) -> list[smpp34.Tlv]:
    return [
        smpp34.Tlv(smpp34.TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")),
        smpp34.Tlv(smpp34.TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
        smpp34.Tlv(smpp34.TLV_SAR_SEGMENT_SEQNUM, bytes([index])),
    ]
