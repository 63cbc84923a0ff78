"""SMPP end to end against a real SMSC (smpp34's server mode, ``tests/smsc.py``) on 127.0.0.1: the
engine binds, the SMSC delivers MO messages and receipts, and the webhook receiver gets them;
SIGKILL mid-stream loses nothing the SMSC saw acknowledged; a dropped connection is bound again;
a log that cannot be written is answered with a temporary error and redelivered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import smpp34

from engine_process import EngineProcess
from engines import StartEngine, rules_yaml, start_embedded
from helpers import eventually
from local_server import Receiver
from smsc import INTL, SENDER, SHORT_CODE, Smsc, bind_settings, deliver, mo, sar, smpp_overrides, udh8, udh16
from smsroute.engines.embedded.log import SQLiteLog
from smsroute.ingress.log import LogUnavailable
from smsroute.models.raw import RawEvent
from smsroute.smpp import pdu as P

LATE_REPEAT = 1.0
"""Seconds given a repeat to show up once every message arrived: nothing announces that one will not."""
DEAD_SESSION = 0.5
"""Seconds for the SMSC to read what the killed session had already sent it (answers in its socket)."""


def inbox(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request["body"]) for request in receiver.at("/inbox")]


async def test_messages_and_receipts_from_a_real_smsc_reach_the_webhook(
    engine: tuple[str, str],
    start_engine: StartEngine,
    receiver: Receiver,
    smsc: Smsc,
) -> None:
    run = await start_engine(**smpp_overrides(engine[0], smsc.port))
    await smsc.wait_bound()
    assert smsc.binds == ["smsroute"]
    gsm_parts = [b"Part one of three, ", b"part two of three, ", b"part three."]
    ids = smsc.submit(
        mo(b"Ciao dal SMSC"),  # GSM 03.38, data_coding 0
        mo("Привет, мир ✓".encode("utf-16-be"), data_coding=8),  # UCS-2
        mo(bytes.fromhex("c0ffee00"), data_coding=4),  # binary
        # UDH 8-bit reference, 3 parts in the order 3, 1, 2
        *(mo(udh8(0x42, 3, index) + gsm_parts[index - 1], esm_class=0x40) for index in (3, 1, 2)),
        # UDH 16-bit reference, UCS-2, 2 parts in the order 2, 1
        *(
            mo(udh16(0x1234, 2, index) + text.encode("utf-16-be"), esm_class=0x40, data_coding=8)
            for index, text in ((2, "второй"), (1, "первый "))
        ),
        # SAR TLVs, 2 parts in the order 2, 1
        *(mo(text, tlvs=sar(7, 2, index)) for index, text in ((2, b"SAR second"), (1, b"SAR first, "))),
        # the text in message_payload, short_message empty
        mo(b"", tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, b"From the payload TLV")]),
        # a delivery receipt: esm_class 0x04, receipted_message_id and the text form
        deliver(
            SHORT_CODE,
            b"id:MSG0001 sub:001 dlvrd:001 submit date:2611211000 done date:2611211001 stat:DELIVRD err:000 text:Hi",
            source_addr=SENDER,
            esm_class=0x04,
            **{k: v for k, v in INTL.items()},
            tlvs=[
                smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"MSG0001\0"),
                smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x02"),
            ],
        ),
    )
    await smsc.wait_acked(ids)
    await eventually(lambda: len(inbox(receiver)) == 7)
    texts = {message["text"]: message for message in inbox(receiver)}
    assert set(texts) == {
        "Ciao dal SMSC",
        "Привет, мир ✓",
        "c0ffee00",
        "Part one of three, part two of three, part three.",
        "первый второй",
        "SAR first, SAR second",
        "From the payload TLV",
    }
    for message in texts.values():
        assert (message["provider"], message["source"]) == ("smpp", "operator")
        assert (message["from"], message["to"]) == ("+393331234567", "+393201234567")
        assert message["complete"] is True
    assert texts["Привет, мир ✓"]["encoding"] == "unicode" and texts["c0ffee00"]["encoding"] == "binary"
    assert texts["Part one of three, part two of three, part three."]["parts"] == 3
    assert texts["первый второй"]["parts"] == 2 and texts["SAR first, SAR second"]["parts"] == 2
    reports = await _until_reports(run)
    assert [(r.provider, r.provider_message_id, r.status, r.code) for r in reports] == [
        ("smpp", "MSG0001", "delivered", "DELIVRD")
    ]
    assert all(mo.statuses == [0] for mo in smsc.messages.values()), "every PDU answered OK once"


async def _until_reports(run: Any, timeout: float = 30.0) -> list[Any]:
    async def some() -> bool:
        return bool(await run.reports())

    await eventually(some, timeout, "no delivery report")
    reports: list[Any] = await run.reports()
    return reports


async def test_a_dropped_connection_is_bound_again_and_nothing_is_lost(
    engine: tuple[str, str],
    start_engine: StartEngine,
    receiver: Receiver,
    smsc: Smsc,
) -> None:
    await start_engine(**smpp_overrides(engine[0], smsc.port))
    await smsc.wait_bound()
    first = smsc.submit(*(mo(f"before {n}".encode()) for n in range(20)))
    await smsc.wait_acked(first)
    during = smsc.submit(*(mo(f"during {n}".encode()) for n in range(300)))
    await eventually(lambda: len(smsc.acked) >= 40, interval=0.001)
    await smsc.drop(down_for=0.5)  # the connection is reset mid-stream and the SMSC is away for a while
    await smsc.wait_bound(2)
    await smsc.wait_acked(during)
    await smsc.unbind()  # the SMSC's own unbind: answered, and bound again
    await smsc.wait_bound(3)
    after = smsc.submit(*(mo(f"after {n}".encode()) for n in range(20)))
    await smsc.wait_acked(after)
    expected = sorted(
        [f"before {n}" for n in range(20)] + [f"during {n}" for n in range(300)] + [f"after {n}" for n in range(20)]
    )
    await eventually(lambda: len(inbox(receiver)) >= len(expected))
    await asyncio.sleep(LATE_REPEAT)
    assert sorted(message["text"] for message in inbox(receiver)) == expected, "once each"
    assert any("dropped" in mo.statuses for mo in smsc.messages.values()), "the reset was not mid-stream"


async def test_sigkill_mid_stream_keeps_every_acknowledged_message_and_the_rest_are_redelivered(
    tmp_path: Path,
    smsc: Smsc,
    receiver: Receiver,
) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(
        f'routes:\n  - name: inbox\n    actions:\n      - webhook: {{url: "{receiver.url}/inbox"}}\n'
    )
    config = tmp_path / "smsroute.toml"
    settings = bind_settings(smsc.port)
    config.write_text(
        "[smpp.operator]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    )
    data_dir = tmp_path / "data"
    total = 3000
    texts = [f"mo-{n:05d}" for n in range(total)]
    ids = dict(zip(smsc.submit(*(mo(text.encode()) for text in texts)), texts, strict=True))
    engine = EngineProcess(data_dir, tmp_path / "engine.stderr", routes, config=config)
    try:
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
        await eventually(lambda: len(smsc.acked) >= 800, 60, interval=0.005)
        os.kill(engine.process.pid, signal.SIGKILL)
        assert engine.process.wait(timeout=10) == -signal.SIGKILL
        acked_at_kill = {ids[mo_id] for mo_id in list(smsc.acked)}
        await asyncio.sleep(DEAD_SESSION)
        acked = {ids[mo_id] for mo_id in smsc.acked}
        assert len(acked) < total, "the kill came after the last message: not mid-stream"
        logged = logged_texts(data_dir / "log.db")
        assert acked - logged == set(), f"{len(acked - logged)} acknowledged but not in the log"
        assert acked_at_kill <= acked

        written_unanswered = logged - acked  # durable, but the answer never reached the SMSC: it redelivers them
        engine = EngineProcess(data_dir, tmp_path / "engine2.stderr", routes, config=config)
        async with aiohttp.ClientSession() as http:
            await engine.wait_healthy(http)
        await smsc.wait_acked(ids, timeout=60)
        redelivered = [mo for mo in smsc.messages.values() if mo.attempts > 1]
        assert redelivered, "nothing was in flight at the kill"
        assert all(mo.statuses[-1] == 0 and "dropped" in mo.statuses for mo in redelivered)
        assert set(texts) == logged_texts(data_dir / "log.db"), "every message in the log after the redelivery"
        # each message reaches the webhook once: redeliveries of what was already logged are dropped by dedupe
        print(f"{len(acked)} acknowledged before the kill, {len(written_unanswered)} logged but unanswered")
        await eventually(lambda: len(receiver.at("/inbox")) >= total, timeout=60)
        await asyncio.sleep(LATE_REPEAT)
        delivered = [json.loads(request["body"])["text"] for request in receiver.at("/inbox")]
        assert sorted(delivered) == sorted(texts), (
            f"{len(delivered)} deliveries for {total} messages ({len(written_unanswered)} logged but unanswered at the kill)"
        )
        assert engine.stop() == 0, engine.stderr()
    finally:
        engine.kill()


def logged_texts(path: Path) -> set[str]:
    texts = set()
    for _, _, record in SQLiteLog(path).read(limit=1_000_000):
        event = RawEvent.decode(record)
        assert (event.provider, event.ingress, event.content_type) == ("smpp", "operator", "application/vnd.smpp.pdu")
        assert event.key == f"smpp:{SENDER}:{SHORT_CODE}"
        texts.add(P.parse(event.body).short_message.decode())
    return texts


async def test_a_redelivery_of_a_logged_message_reaches_the_webhook_once(
    tmp_path: Path,
    receiver: Receiver,
    smsc: Smsc,
) -> None:
    """The SMSC delivers again what it saw no OK for, though it may be in the log already (an
    answer lost to a crash or a cut): here the first write succeeds and its answer is lost."""
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "rules.yaml").write_text(rules_yaml(receiver.url))
    run = await start_embedded(tmp_path, routes, **smpp_overrides("embedded", smsc.port, throttle=0.1))
    try:
        await _answer_lost_once(run, receiver, smsc)
    finally:
        await run.stop()


async def _answer_lost_once(run: Any, receiver: Receiver, smsc: Smsc) -> None:
    bind = run.engine.smpp.binds[0]
    real = bind.event_log
    lost = {"left": 1}

    class AnswerLost:
        ready = True

        async def append(self, records: Any) -> None:
            await real.append(records)
            if lost["left"]:
                lost["left"] -= 1
                raise LogUnavailable("written, but the answer is lost")

    bind.event_log = AnswerLost()
    await smsc.wait_bound()
    [mo_id] = smsc.submit(mo(b"only once please"))
    await smsc.wait_acked([mo_id])
    assert smsc.messages[mo_id].statuses == [P.ESME_RX_T_APPN, P.ESME_ROK]
    assert len([r for _, _, r in real.read(limit=100)]) == 2, "the message is in the log twice"
    await eventually(lambda: len(inbox(receiver)) == 1)
    await asyncio.sleep(LATE_REPEAT)
    assert [message["text"] for message in inbox(receiver)] == ["only once please"]
