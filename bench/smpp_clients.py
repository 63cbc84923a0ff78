"""Which ESME client library: MO throughput over one bind, each answering after a durable write.

Every candidate binds (transceiver) to the test SMSC (smpp34's server, ``tests/smsc.py``, in a
child process), which pushes ``--count`` deliver_sm with a window of ``--window`` unanswered; each
deliver_sm is appended to a real group-committed SQLite log (the embedded engine's ``SQLiteLog``)
before its deliver_sm_resp is sent, where the library lets that be done at all. The SMSC measures
from the bind to the last OK answer.

- ``aiosmpplib``: the ``received`` hook runs before the library answers, so the hook writes first;
  the library answers ESME_ROK whatever happens (no temporary error status), one PDU at a time.
- ``smpplib-thread``: smpplib's blocking client in a thread; its handler returns the resp status
  (so a temporary error is possible) and waits for the log on the event loop; one PDU at a time.
- ``smpp34-client``: smpp34's asyncio client acknowledges every deliver_sm itself, before the
  application sees it: it cannot keep the durability rule. Measured with the write after the ack,
  for reference only.
- ``session``: smsroute's own asyncio session (``smsroute.smpp.session``) on smpplib's PDU codec:
  every deliver_sm of the window is written concurrently (one group commit for many) and each is
  answered as soon as its own write is durable.

Run from the repository root: ``.venv/bin/python -m bench.smpp_clients [--count 5000] [--window 32]``
(needs ``pip install aiosmpplib smpp34 smpplib`` in the venv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from smsroute.engines.embedded.log import SQLiteLog

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def run_aiosmpplib(port: int, log: SQLiteLog, count: int) -> None:
    import logging

    from aiosmpplib import ESME, BindMode
    from aiosmpplib.hook import AbstractHook

    done = asyncio.Event()
    seen = 0

    class Durable(AbstractHook):
        async def sending(self, smpp_message, pdu, client_id):
            pass

        async def received(self, smpp_message, pdu, client_id):
            nonlocal seen
            if int.from_bytes(pdu[4:8], "big") == 0x00000005:
                await log.append([("k", pdu)])
                seen += 1
                if seen >= count:
                    done.set()

        async def send_error(self, smpp_message, error, client_id):
            pass

    esme = ESME(
        "127.0.0.1", port, "bench", "bench", bind_mode=BindMode.TRANSCEIVER, hook=Durable(), log_level=logging.WARNING
    )
    task = asyncio.create_task(esme.start())
    await done.wait()
    await asyncio.sleep(0.2)  # the last answers out
    await esme.stop()
    task.cancel()


async def run_smpplib_thread(port: int, log: SQLiteLog, count: int) -> None:
    import smpplib.client

    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def blocking() -> None:
        client = smpplib.client.Client("127.0.0.1", port, timeout=30)
        seen = 0

        def handler(pdu, **kwargs):
            nonlocal seen
            asyncio.run_coroutine_threadsafe(log.append([("k", pdu.short_message)]), loop).result()
            seen += 1
            return 0

        client.set_message_received_handler(handler)
        client.connect()
        client.bind_transceiver(system_id="bench", password="bench")
        while seen < count:
            client.read_once()
        client.disconnect()
        loop.call_soon_threadsafe(finished.set)

    threading.Thread(target=blocking, daemon=True).start()
    await finished.wait()


async def run_smpp34(port: int, log: SQLiteLog, count: int) -> None:
    import smpp34

    client = smpp34.Client("127.0.0.1", port, "bench", "bench", bind_type="TRX")
    smsc = await client.connect()
    seen = 0
    while seen < count:
        event = await smsc.next()
        if isinstance(event, smpp34.Disconnected):
            break
        await log.append([("k", event.short_message)])  # after the library's own ack
        seen += 1
    await client.stop()


async def run_session(port: int, log: SQLiteLog, count: int) -> None:
    from smsroute.smpp.session import Handler, Session

    done = asyncio.Event()
    seen = 0

    class Durable(Handler):
        async def message(self, command_id: int, data: bytes) -> int:
            nonlocal seen
            await log.append([("k", data)])
            seen += 1
            if seen >= count:
                done.set()
            return 0

    session = Session("127.0.0.1", port, system_id="bench", password="bench", bind="transceiver", handler=Durable())
    await session.bind()
    task = asyncio.create_task(session.serve())
    await done.wait()
    await asyncio.sleep(0.2)
    await session.close()
    task.cancel()


CANDIDATES = {
    "session": run_session,
    "aiosmpplib": run_aiosmpplib,
    "smpplib-thread": run_smpplib_thread,
    "smpp34-client": run_smpp34,
}


async def measure(name: str, count: int, window: int) -> dict[str, object]:
    port = free_port()
    smsc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "smsc.py"),
        "--port",
        str(port),
        "--count",
        str(count),
        "--window",
        str(window),
        stdout=subprocess.PIPE,
    )
    await asyncio.sleep(0.5)
    with tempfile.TemporaryDirectory() as tmp:
        log = SQLiteLog(Path(tmp) / "log.db")
        log.start()
        try:
            client = asyncio.create_task(CANDIDATES[name](port, log, count))
            assert smsc.stdout is not None
            try:
                line = await asyncio.wait_for(smsc.stdout.readline(), 60 if name == "smpp34-client" else 600)
            except TimeoutError:
                client.cancel()
                return {"client": name, "finished": False}
            await asyncio.wait_for(client, 30)
        finally:
            log.stop()
            if smsc.returncode is None:
                smsc.kill()
            await smsc.wait()
    return {"client": name, **json.loads(line)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=list(CANDIDATES))
    args = parser.parse_args()
    if len(args.only) > 1:  # each candidate in a process of its own: a library's threads cannot upset the next
        for name in args.only:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.smpp_clients",
                    "--count",
                    str(args.count),
                    "--window",
                    str(args.window),
                    "--only",
                    name,
                ],
                cwd=ROOT,
                check=False,
                stderr=subprocess.DEVNULL,
            )
        return
    for name in args.only:
        result = asyncio.run(measure(name, args.count, args.window))
        if result.get("finished") is False:
            print(f"{name:16} did not finish within 60 s", flush=True)
            continue
        print(
            f"{name:16} {result['per_second']:8.0f} MO/s  ({result['count']} in {result['seconds']:.2f} s, "
            f"window {result['window']}, {result['redelivered']} redelivered)",
            flush=True,
        )


if __name__ == "__main__":
    main()
