"""Access rules shared by every provider: who the client is, IP allow-lists and the shared token."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from aiohttp import web
from pydantic.networks import IPvAnyNetwork

from ..config import IngressConfig
from ..providers.base import Incoming, IngressError, bad_request, unauthorized


def client_address(request: web.Request, trusted_proxies: Iterable[IPvAnyNetwork]) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    untrusted hop of X-Forwarded-For (read right to left, as each proxy appends)."""
    peer = request.remote or ""
    proxies = tuple(trusted_proxies)
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed(hops):
        if hop and not _within(hop, proxies):
            if not hop.isascii():
                raise bad_request("X-Forwarded-For holds an address that is not ASCII")
            return hop
    return peer


def check_access(request: Incoming, config: IngressConfig) -> None:
    """403 for a client outside the allow-list, 401 for a missing or wrong shared token.

    The token is removed from the request's query so it never reaches the log."""
    if config.allow_ips and not _within(request.remote, config.allow_ips):
        raise IngressError(403, "forbidden", f"client address {request.remote} is not allowed")
    if config.token is None:
        return
    expected = config.token.get_secret_value().encode()
    given = request.headers.get(config.token_header) or request.query.get(config.token_param)
    request.query.popall(config.token_param, None)
    if given is None:
        raise unauthorized(f"missing token ({config.token_header} header or {config.token_param} parameter)")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        raise unauthorized("wrong token")


def _within(address: str, networks: Iterable[IPvAnyNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
