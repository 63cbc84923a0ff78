"""One SMPP bind against a real SMSC (smpp34's server mode, ``tests/smsc.py``) on 127.0.0.1: a log
that cannot be written is answered with a temporary error and the SMSC redelivers; a receiver bind
binds and unbinds; TLS verifies the SMSC's certificate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import trustme
from prometheus_client import REGISTRY

from engine_process import free_port
from helpers import eventually
from smsc import SENDER, SHORT_CODE, Smsc, bind_settings, mo
from smsroute.ingress.log import LogUnavailable
from smsroute.ingress.smpp import Bind
from smsroute.models.raw import RawEvent
from smsroute.providers import smpp
from smsroute.smpp import pdu as P
from smsroute.smpp.config import SmppConfig


class FlakyLog:
    """A log that cannot write the first ``failures`` appends, then keeps every record."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.records: list[tuple[str, bytes]] = []

    @property
    def ready(self) -> bool:
        return self.failures <= 0

    async def append(self, records: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LogUnavailable("disk full")
        self.records += records


async def test_a_log_that_cannot_write_gets_a_temporary_error_and_the_smsc_redelivers(smsc: Smsc) -> None:
    flaky = FlakyLog(failures=3)
    config = SmppConfig(**bind_settings(smsc.port, throttle=0.2, throttle_max=0.5))
    receiver = Bind("operator", config, flaky, log_timeout=1.0)
    await receiver.start()
    try:
        [mo_id] = smsc.submit(mo(b"durable or nothing"))
        await smsc.wait_acked([mo_id], timeout=30)
    finally:
        await receiver.stop()
    statuses = smsc.messages[mo_id].statuses
    assert statuses == [P.ESME_RX_T_APPN] * 3 + [P.ESME_ROK], statuses
    [(key, record)] = flaky.records
    event = RawEvent.decode(record)
    assert key == event.key == f"smpp:{SENDER}:{SHORT_CODE}"
    part = smpp.Normalizing().normalize(event, None)
    assert (part.sender, part.recipient, part.text, part.source) == (
        "+393331234567",
        "+393201234567",
        "durable or nothing",
        "operator",
    )


async def test_receiver_bind_and_unbind_on_stop(smsc: Smsc) -> None:
    """smpp34 takes a bind_receiver (it cannot take deliver_sm_resp on one: see tests/smsc.py)."""
    receiver = Bind("operator", SmppConfig(**bind_settings(smsc.port, bind="receiver")), FlakyLog(0), 1.0)
    await receiver.start()
    try:
        await smsc.wait_bound()
        await asyncio.wait_for(receiver.bound.wait(), 10)
    finally:
        await receiver.stop()
    await eventually(lambda: smsc.unbinds >= 1, 10, "no unbind")
    assert not receiver.bound.is_set()


async def test_tls_bind_verifies_the_smsc_certificate(tmp_path: Path) -> None:
    """TLS from the first byte: the relay in front of smpp34 terminates TLS with a trustme certificate."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with Smsc(free_port(), tls=server_context) as tls_smsc:
        flaky = FlakyLog(0)
        config = SmppConfig(**bind_settings(tls_smsc.port, tls=True, ca_file=str(ca_file)))
        receiver = Bind("operator", config, flaky, 1.0)
        await receiver.start()
        try:
            [mo_id] = tls_smsc.submit(mo(b"over TLS"))
            await tls_smsc.wait_acked([mo_id])
        finally:
            await receiver.stop()
        assert len(flaky.records) == 1
        # an ESME that does not trust the certificate never binds
        untrusted = Bind("refuser", SmppConfig(**bind_settings(tls_smsc.port, tls=True)), FlakyLog(0), 1.0)
        failed = {"bind": "refuser", "outcome": "error"}
        before = REGISTRY.get_sample_value("smsroute_smpp_binds_total", failed) or 0
        await untrusted.start()
        await eventually(lambda: (REGISTRY.get_sample_value("smsroute_smpp_binds_total", failed) or 0) > before)
        await untrusted.stop()
        assert tls_smsc.binds == ["smsroute"]
