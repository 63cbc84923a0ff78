"""openvoip's SMS gateway: one GET of ``sms_send_soa.php`` per reply, Italian numbers only.

The request carries ``archivia``, ``verify``, ``id_call_gr``, ``sms_text``, ``sms_destination`` and
``sms_sender``, each encoded as PHP's ``urlencode`` does (the provider's own example is PHP).
``verify`` is md5 of the sha1 hex digest of sender + text + destination + secret + id_call_gr: the
secret itself never leaves the process. ``sms_destination`` is encoded once (``%2B39...``), as the
document's code does: its sample URL shows ``%252B39...``, the mark of a number that was already
encoded before ``urlencode`` ran again, which would make the gateway see ``%2B39...`` as the number.

The answer is JSON ``{"exit_status": ..., "exit_string": ...}``: ``000`` sent; ``020`` a bad
destination, final; ``099`` a generic error, retried. ``-1``, a security error, means wrong
id_call_gr or secret: the settings are wrong, not the reply, so it is retried within the route's
schedule (as the email sink does with a refused login) and goes once the settings are fixed; the
reason says which settings to check. Any other code is retried the same way, its words logged.
openvoip returns no message id: its replies cannot be linked to delivery reports.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote_plus

import aiohttp
import phonenumbers
from pydantic import AnyHttpUrl, Field
from yarl import URL

from ...config import OutboundConfig, Secret
from . import Reply, SendResult, Unanswered, json_answer

SENT, BAD_DESTINATION, GENERIC_ERROR, SECURITY_ERROR = "000", "020", "099", "-1"


class OpenVoipConfig(OutboundConfig):
    """openvoip's SMS gateway (``sms_send_soa.php``): Italian destinations only."""

    url: AnyHttpUrl = Field(
        AnyHttpUrl("https://www.openvoip.it/sms_send_soa.php"), description="The gateway's sms_send_soa.php."
    )
    id_call_gr: str = Field(min_length=1, description="Caller group id, from the openvoip panel (SERVIZI > CONTRATTO).")
    secret: Secret = Field(description="The account's secret; never sent: only a hash of it (verify) travels.")
    sender: str = Field(
        min_length=1,
        max_length=16,
        description="sms_sender: the name or number replies come from (never auto-replied to).",
    )
    archive: bool = Field(False, description="archivia=1: keep a copy in the openvoip account's panel.")


def verify(sender: str, text: str, destination: str, secret: str, id_call_gr: str) -> str:
    """md5(sha1(sms_sender . sms_text . sms_destination . secret . id_call_gr)), both as hex digests."""
    inner = hashlib.sha1((sender + text + destination + secret + id_call_gr).encode()).hexdigest()
    return hashlib.md5(inner.encode()).hexdigest()


def php_urlencode(value: str) -> str:
    """PHP's ``urlencode``: spaces as ``+``, everything but letters, digits and ``-_.`` as %XX (UTF-8)."""
    return quote_plus(value, safe="").replace("~", "%7E")


def italian(number: str) -> str | None:
    """``number`` in E.164 when it is a valid Italian (+39) number, else None."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 39 or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def exit_code(value: object) -> str:
    """``exit_status`` as the document writes it: ``000``, ``020``, ``-1``, whether sent as text or number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return f"{value:03d}"
    return str(value).strip()


class OpenVoip:
    name = "openvoip"
    config_class = OpenVoipConfig

    def __init__(self, config: OpenVoipConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.senders = frozenset({config.sender})

    def url(self, reply: Reply, destination: str) -> URL:
        """The request, parameters in the document's order, encoded exactly once."""
        config = self.config
        params = (
            ("archivia", "1" if config.archive else "0"),
            (
                "verify",
                verify(config.sender, reply.text, destination, config.secret.get_secret_value(), config.id_call_gr),
            ),
            ("id_call_gr", config.id_call_gr),
            ("sms_text", reply.text),
            ("sms_destination", destination),
            ("sms_sender", config.sender),
        )
        query = "&".join(f"{name}={php_urlencode(value)}" for name, value in params)
        return URL(f"{config.url}?{query}", encoded=True)

    async def send(self, reply: Reply) -> SendResult:
        destination = italian(reply.destination)
        if destination is None:
            return SendResult.failed(
                "not_italian", f"openvoip sends only to Italian numbers (+39); {reply.destination!r} is not one"
            )
        try:
            answer = await json_answer(self.session, "GET", self.url(reply, destination), self.config.timeout)
        except Unanswered as exc:
            return exc.result
        if not isinstance(answer, dict) or "exit_status" not in answer:
            return SendResult.retry("bad_answer", f"answer has no exit_status: {str(answer)[:200]!r}")
        code = exit_code(answer["exit_status"])
        words = str(answer.get("exit_string", "")).strip()
        reason = f"openvoip {code}: {words}" if words else f"openvoip {code}"
        if code == SENT:
            return SendResult("sent", None, code, reason)
        if code == BAD_DESTINATION:
            return SendResult.failed(code, f"{reason} (bad destination {destination})")
        if code == SECURITY_ERROR:
            return SendResult.retry(code, f"{reason} (check sms_reply.openvoip id_call_gr and secret)")
        return SendResult.retry(code, reason)


PROVIDER = OpenVoip
