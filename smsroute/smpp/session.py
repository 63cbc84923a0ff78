"""One SMPP 3.4 ESME session over asyncio: connect (TLS optional), bind, then take deliver_sm and
data_sm PDUs and answer each only once its handler has decided, keeping the line alive.

The rule the whole module serves: a ``deliver_sm_resp`` is written only after the handler returns,
with the status it returns, so the handler can make the PDU durable first (or answer a temporary
error). Up to ``window`` PDUs are handled at once, each answered as soon as its own handler is done
(SMPP allows answers in any order): a burst shares the log's group commits instead of paying one
fsync per message. Past the window the session stops reading, and the SMSC's own window then stops
it sending. ``pause()`` stops reading for a while (the receiver's throttle when the log fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

from . import pdu as P

log = logging.getLogger("smsroute.smpp")


class Handler(Protocol):
    async def message(self, command_id: int, data: bytes) -> int:
        """Handle one deliver_sm or data_sm (the whole PDU); the command_status to answer."""


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {P.status_name(status)}")
        self.status = status


class ProtocolError(Exception):
    """The SMSC sent what is not SMPP: the connection is dropped."""


class Session:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        handler: Handler,
        bind: str = "receiver",
        system_type: str = "",
        addr_ton: int = 0,
        addr_npi: int = 0,
        address_range: str = "",
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
        window: int = 64,
        counted: Callable[[str, int], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.system_id = system_id
        self._password = password
        self.handler = handler
        self.bind_command = {"receiver": P.BIND_RECEIVER, "transceiver": P.BIND_TRANSCEIVER}[bind]
        self.system_type = system_type
        self.addr_ton = addr_ton
        self.addr_npi = addr_npi
        self.address_range = address_range
        self.tls = tls
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout
        self.window = window
        self.counted = counted or (lambda command, status: None)
        """Called with (command name, status) for every PDU received: the status it carried (a
        response) or the one it was answered with (a request)."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sequence = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[int, int]]] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._last_read = 0.0
        self._closing = False

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    def _next_sequence(self) -> int:
        sequence = next(self._sequence)
        if sequence > 0x7FFFFFFF:
            self._sequence = itertools.count(2)
            sequence = 1
        return sequence

    async def bind(self) -> None:
        """Connect and bind; :class:`BindRefused`, ``OSError`` or ``TimeoutError`` when it cannot."""
        async with asyncio.timeout(self.connect_timeout):
            self._reader, self._writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.server_hostname if self.tls else None,
                limit=P.MAX_PDU + 16,
            )
            try:
                sequence = self._next_sequence()
                self._writer.write(
                    P.bind(
                        self.bind_command,
                        sequence,
                        system_id=self.system_id,
                        password=self._password,
                        system_type=self.system_type,
                        addr_ton=self.addr_ton,
                        addr_npi=self.addr_npi,
                        address_range=self.address_range,
                    )
                )
                await self._writer.drain()
                while True:  # an SMSC may send enquire_link before it answers the bind
                    data = await self._read()
                    _, command_id, status, seq = P.header(data)
                    if command_id == P.ENQUIRE_LINK:
                        self._writer.write(P.response(command_id, seq))
                        continue
                    if command_id in (self.bind_command | P.RESPONSE, P.GENERIC_NACK) and seq == sequence:
                        self.counted(P.command_name(command_id), status)
                        break
                    raise ProtocolError(
                        f"expected {P.command_name(self.bind_command | P.RESPONSE)}, got {P.command_name(command_id)}"
                    )
                if status != P.ESME_ROK or command_id == P.GENERIC_NACK:
                    raise BindRefused(status)
            except BaseException:
                self._abort()
                raise
        self._last_read = asyncio.get_running_loop().time()

    async def serve(self) -> str:
        """Handle what the SMSC sends until the session ends; why it ended."""
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        keeper = asyncio.create_task(self._keep_alive())
        try:
            while True:
                wait = self._paused_until - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                if len(self._inflight) >= self.window:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                data = await self._read()
                self._last_read = loop.time()
                _, command_id, status, sequence = P.header(data)
                if command_id in (P.DELIVER_SM, P.DATA_SM):
                    task = asyncio.create_task(self._answer(command_id, sequence, data))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                elif command_id == P.ENQUIRE_LINK:
                    self._send(P.response(command_id, sequence))
                    self.counted("enquire_link", P.ESME_ROK)
                elif command_id == P.UNBIND:
                    self.counted("unbind", P.ESME_ROK)
                    await self._finish_inflight()
                    self._send(P.response(command_id, sequence))
                    await self._writer.drain()
                    return "unbound by the SMSC"
                elif command_id & P.RESPONSE:
                    self.counted(P.command_name(command_id), status)
                    future = self._pending.pop(sequence, None)
                    if future is not None and not future.done():
                        future.set_result((command_id, status))
                else:
                    self.counted(P.command_name(command_id), P.ESME_RINVCMDID)
                    self._send(P.encode(P.GENERIC_NACK, sequence, status=P.ESME_RINVCMDID))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            return f"connection lost: {type(exc).__name__}: {exc}" if str(exc) else "connection closed by the SMSC"
        except ProtocolError as exc:
            return f"protocol error: {exc}"
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            self._abort()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the session ended"))
            self._pending.clear()

    def pause(self, seconds: float) -> None:
        """Read nothing more for ``seconds`` (PDUs already read are still answered)."""
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + seconds)

    async def close(self) -> None:
        """Answer what is in flight, unbind (waiting up to response_timeout for unbind_resp), disconnect."""
        self._closing = True
        if self._writer is None or self._writer.is_closing():
            return
        await self._finish_inflight()
        with contextlib.suppress(Exception):
            await self._request(P.UNBIND)
        self._abort()

    async def _finish_inflight(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _answer(self, command_id: int, sequence: int, data: bytes) -> None:
        try:
            status = await self.handler.message(command_id, data)
        except Exception:  # a bug must not become an OK: the SMSC delivers it again
            log.exception("deliver_sm handler failed", extra={"event": "smpp_handler_error"})
            status = P.ESME_RX_T_APPN
        self.counted(P.command_name(command_id), status)
        writer = self._writer
        if writer is None or writer.is_closing():
            return  # the connection is gone: unanswered, so the SMSC delivers it again
        writer.write(P.response(command_id, sequence, status))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self._last_read
            if idle < self.enquire_link_interval:
                await asyncio.sleep(self.enquire_link_interval - idle)
                continue
            try:
                await self._request(P.ENQUIRE_LINK)
            except TimeoutError:
                log.warning("enquire_link unanswered", extra={"event": "smpp_enquire_link_timeout", "peer": self.peer})
                self._abort()
                return
            self._last_read = loop.time()

    async def _request(self, command_id: int) -> tuple[int, int]:
        sequence = self._next_sequence()
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        self._send(P.encode(command_id, sequence))
        async with asyncio.timeout(self.response_timeout):
            return await future

    def _send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _read(self) -> bytes:
        assert self._reader is not None
        head = await self._reader.readexactly(16)
        length = int.from_bytes(head[:4], "big")
        if not 16 <= length <= P.MAX_PDU:
            raise ProtocolError(f"command_length {length} is outside 16..{P.MAX_PDU}")
        return head + await self._reader.readexactly(length - 16) if length > 16 else head

    def _abort(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
