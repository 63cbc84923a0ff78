"""The webhook sink: POST the canonical message as JSON, signed per Standard Webhooks.

Success is any 2xx. Redirects are not followed (a moved endpoint is a configuration problem to
see in the metrics, not something to chase). ``webhook-id`` is the delivery id, the same on every
retry, so receivers can drop duplicates; timestamp and signature are fresh on each attempt."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks import Webhook

from ..models.attempt import Attempt
from ..models.delivery import Delivery
from .retry import parse_retry_after

USER_AGENT = "smsroute-webhook/1"
MAX_ERROR_BODY = 200


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str | None = None
    timeout: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, action: dict[str, Any]) -> WebhookTarget:
        """The target a routed webhook action names (see :class:`smsroute.rules.model.Webhook`)."""
        return cls(
            action["url"], action.get("secret"), action.get("timeout", 10.0), tuple(action.get("headers", {}).items())
        )


def sender(session: aiohttp.ClientSession) -> Callable[[Delivery], Awaitable[Attempt]]:
    """The webhook sink as the dispatcher calls it."""

    async def send(delivery: Delivery) -> Attempt:
        return await post(session, WebhookTarget.of(delivery.action), delivery.id, delivery.body)

    return send


def sign(secret: str, delivery_id: str, moment: datetime, body: str) -> dict[str, str]:
    """Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, moment, body),
    }


async def post(session: aiohttp.ClientSession, target: WebhookTarget, delivery_id: str, body: str) -> Attempt:
    """One attempt; never raises for what the network or the receiver does."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **dict(target.headers)}
    headers["webhook-id"] = delivery_id
    if target.secret:
        headers.update(sign(target.secret, delivery_id, datetime.now(UTC), body))
    started = time.perf_counter()
    try:
        async with session.post(
            target.url,
            data=body.encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=target.timeout),
        ) as response:
            if 200 <= response.status < 300:
                await response.read()
                return Attempt("delivered", response.status, "", time.perf_counter() - started)
            excerpt = (await response.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
            return Attempt(
                "failed",
                response.status,
                f"HTTP {response.status}: {excerpt}".strip(),
                time.perf_counter() - started,
                parse_retry_after(response.headers.get("Retry-After"), time.time()),
                f"http_{response.status // 100}xx",
            )
    except TimeoutError:
        return Attempt(
            "failed", None, f"timed out after {target.timeout:g} s", time.perf_counter() - started, code="timeout"
        )
    except aiohttp.ClientError as exc:
        return Attempt("failed", None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started, code="network")
