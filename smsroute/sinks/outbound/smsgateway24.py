"""SMSGateway24's ``addsms``: the reply is queued on their server, and the configured Android
phone fetches it and sends it from its SIM.

A form POST (the token stays out of URLs and access logs) with ``token``, ``sendto``, ``body``,
``device_id`` and ``sim``. The answer is JSON: ``{"error": 0, "sms_id": 22074938, "message": ...}``
when queued, ``{"error": 1, "message": ...}`` when refused: a bad token or device id, settings
rather than the reply, so it is retried within the route's schedule and goes once they are fixed.
``sms_id`` comes back in SMSGateway24's status webhooks, which is how their delivery reports are
linked to our reply.
"""

from __future__ import annotations

from typing import Literal

import aiohttp
from pydantic import AnyHttpUrl, Field
from yarl import URL

from ...config import OutboundConfig, Secret
from . import Reply, SendResult, Unanswered, json_answer


class SMSGateway24SendConfig(OutboundConfig):
    """SMSGateway24's ``addsms``: the reply is queued for an Android phone, which sends it from its SIM."""

    url: AnyHttpUrl = Field(
        AnyHttpUrl("https://smsgateway24.com/getdata/addsms"), description="The addsms API endpoint."
    )
    token: Secret = Field(
        description="API token (profile page, or getdata/gettoken); sent in the POST body, never in a URL."
    )
    device_id: str = Field(min_length=1, description="Id of the phone that sends the replies, from the device list.")
    sim: Literal[0, 1] = Field(0, description="SIM slot of a dual-SIM phone.")


class SMSGateway24:
    name = "smsgateway24"
    config_class = SMSGateway24SendConfig
    senders: frozenset[str] = frozenset()
    """The phone's own number is not known here: list it in ``sms_reply.never_reply_to``."""

    def __init__(self, config: SMSGateway24SendConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session

    async def send(self, reply: Reply) -> SendResult:
        config = self.config
        form = {
            "token": config.token.get_secret_value(),
            "sendto": reply.destination,
            "body": reply.text,
            "device_id": config.device_id,
            "sim": str(config.sim),
        }
        try:
            answer = await json_answer(self.session, "POST", URL(str(config.url)), config.timeout, data=form)
        except Unanswered as exc:
            return exc.result
        if not isinstance(answer, dict) or "error" not in answer:
            return SendResult.retry("bad_answer", f"answer has no error field: {str(answer)[:200]!r}")
        words = str(answer.get("message", "")).strip()
        if str(answer["error"]) != "0":
            return SendResult.retry(f"error_{answer['error']}", f"smsgateway24 refused the SMS: {words}")
        sms_id = answer.get("sms_id")
        return SendResult("sent", None if sms_id in (None, "") else str(sms_id), "0", f"smsgateway24: {words}")


PROVIDER = SMSGateway24
