"""Outbound SMS providers: the channel SMS replies go out through, one module per provider.

Every module exports ``PROVIDER``, a class with a ``name`` (its settings table under
``[sms_reply]``), built from those settings and an HTTP session, with one coroutine:
``send(reply) -> SendResult``, and its settings class (``config_class``, the ``[sms_reply.<name>]``
table). A provider never raises for what the network or the provider does:
it says whether the reply was taken (``sent``, with the provider's message id when it gives one, so
that delivery reports can be linked to the reply), may work later (``retry``) or never will
(``failed``: no retry). Adding a provider is adding a module.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import aiohttp
from pydantic import ValidationError
from yarl import URL

from ...config import ConfigError, OutboundConfig, SmsReplyConfig, describe

MAX_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    """The delivery id: the same on every retry of this reply."""
    destination: str
    """The number answered: the inbound message's ``from``."""
    text: str


@dataclass(frozen=True, slots=True)
class SendResult:
    status: Literal["sent", "retry", "failed"]
    provider_message_id: str | None
    code: str
    """The provider's answer code (``000``, ``020``...), or what went wrong before one (``timeout``, ``http_503``)."""
    reason: str

    @classmethod
    def retry(cls, code: str, reason: str) -> SendResult:
        return cls("retry", None, code, reason)

    @classmethod
    def failed(cls, code: str, reason: str) -> SendResult:
        return cls("failed", None, code, reason)


class Provider(Protocol):
    name: str
    config_class: type[OutboundConfig]
    senders: frozenset[str]
    """Where our replies come from (numbers or names): never replied to, or replies would loop."""

    def __init__(self, config: Any, session: aiohttp.ClientSession) -> None: ...

    async def send(self, reply: Reply) -> SendResult: ...


class Unanswered(Exception):
    """No usable answer from the provider (network, timeout, HTTP error, not JSON): worth a retry."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.result = SendResult.retry(code, reason)


async def json_answer(session: aiohttp.ClientSession, method: str, url: URL, timeout: float, **kwargs: Any) -> Any:
    """The provider's JSON answer to one request; :class:`Unanswered` when there is none to act on."""
    try:
        async with session.request(
            method, url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
        ) as response:
            body = await response.read()
            excerpt = body[:MAX_EXCERPT].decode("utf-8", "replace").strip()
            if not 200 <= response.status < 300:
                raise Unanswered(f"http_{response.status}", f"HTTP {response.status}: {excerpt}".strip())
            try:
                return json.loads(body.decode(response.charset or "utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise Unanswered("not_json", f"answer is not JSON: {excerpt!r}") from None
    except TimeoutError:
        raise Unanswered("timeout", f"no answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise Unanswered("network", f"{type(exc).__name__}: {exc}") from None


@cache
def available() -> dict[str, type[Provider]]:
    """Provider name -> class, for every module in this package."""
    found: dict[str, type[Provider]] = {}
    for info in pkgutil.iter_modules(__path__):
        provider: type[Provider] = importlib.import_module(f"{__name__}.{info.name}").PROVIDER
        found[provider.name] = provider
    return dict(sorted(found.items()))


def provider_settings(config: SmsReplyConfig) -> OutboundConfig | None:
    """The settings of the configured provider, each ``[sms_reply.<provider>]`` table checked by its
    provider's settings class; :class:`ConfigError` naming the setting and the reason. None when
    replies have no provider."""
    providers = available()
    settings: dict[str, OutboundConfig] = {}
    for name, table in config.tables.items():
        if name not in providers:
            raise ConfigError(f"sms_reply.{name}: no outbound provider {name!r} (built in: {', '.join(providers)})")
        try:
            settings[name] = providers[name].config_class.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(describe(exc, source="configuration", prefix=f"sms_reply.{name}")) from exc
    if config.provider is None:
        return None
    if config.provider not in providers:
        raise ConfigError(
            f"sms_reply.provider: unknown provider {config.provider!r} (built in: {', '.join(providers)})"
        )
    if config.provider not in settings:
        raise ConfigError(
            f"sms_reply: provider is {config.provider!r} but its settings [sms_reply.{config.provider}] are missing"
        )
    return settings[config.provider]


def build_provider(config: SmsReplyConfig, session: aiohttp.ClientSession) -> Provider | None:
    """The configured reply provider, or None when replies have no provider configured."""
    settings = provider_settings(config)
    if settings is None or config.provider is None:
        return None
    return available()[config.provider](settings, session)
