"""The operators' JSON API (``/api/...``) and console (``/console``), on the ingress's port.

Both need the operator token: ``Authorization: Bearer TOKEN`` for the API; the console takes it once
as ``/console?token=TOKEN`` and keeps it in a strict same-site cookie. With no token configured they
are open only when the engine listens on a loopback address, and refused (403) otherwise. Every
read and write of ``state.db`` runs in one thread of its own, so a slow search never holds up the
ingress's event loop. Plain server-side HTML: nothing fetched from anywhere else, no build step."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import jinja2
from aiohttp import web

from ....config import Settings
from ....models.message import InboundMessage
from ....rules import RuleError, RuleSet, load_rules
from ..state import State
from ..state.messages import OUTCOMES, Query
from ..tracing import trace

T = TypeVar("T")
COOKIE = "smsroute_operator"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
"""The pages load nothing: no script, no image, no font; their one stylesheet is inline."""
HOUR = 3600

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("smsroute.engines.embedded.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates.filters["when"] = lambda epoch: (
    datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else "-"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """The handlers over one data directory, and the thread that reads it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token = settings.operator_token.get_secret_value() if settings.operator_token else None
        self.open = self.token is None and _loopback(settings.host)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console")
        self._state: State | None = None

    def mount(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/api/messages", self.api_search),
            ("GET", "/api/messages/{id}", self.api_trace),
            ("GET", "/api/traffic", self.api_traffic),
            ("GET", "/api/dead-letters", self.api_dead_letters),
            ("POST", "/api/dead-letters/replay", self.api_replay),
            ("POST", "/api/rules/test", self.api_rules_test),
            ("GET", "/console", self.page_overview),
            ("GET", "/console/messages", self.page_messages),
            ("GET", "/console/messages/{id}", self.page_trace),
            ("GET", "/console/dead-letters", self.page_dead_letters),
            ("POST", "/console/dead-letters/replay", self.page_replay),
            ("GET", "/console/playground", self.page_playground),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler, api=path.startswith("/api/")))
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self._state is not None:
            await self._run(lambda state: state.close())
        self._executor.shutdown()

    def _guarded(self, handler: Handler, api: bool) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.token is None and not self.open:
                raise web.HTTPForbidden(text="set operator_token to use the API and console on a non-loopback host\n")
            if self.token is not None:
                given = request.headers.get("Authorization", "").removeprefix("Bearer ")
                given = given or request.cookies.get(COOKIE, "")
                fresh = "" if api else request.query.get("token", "")
                if fresh and hmac.compare_digest(fresh.encode(), self.token.encode()):
                    response = web.Response(status=302, headers={"Location": request.path})
                    response.set_cookie(COOKIE, fresh, httponly=True, samesite="Strict", path="/")
                    return response
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    raise web.HTTPUnauthorized(text="operator token required\n", headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return guarded

    async def _run(self, work: Callable[[State], T]) -> T:
        """``work`` on the console's thread, with its own connection to ``state.db``."""

        def run() -> T:
            if self._state is None:
                self._state = State(self.settings.data_dir / "state.db")
            return work(self._state)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    # --- the JSON API ---

    async def api_search(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(lambda state: state.messages.search(_query(request))))

    async def api_trace(self, request: web.Request) -> web.Response:
        found = await self._trace(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound(text="no such message (never received, erased, or past retention)\n")
        return web.json_response(found)

    async def api_traffic(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(partial_traffic(_int(request, "hours", 24))))

    async def api_dead_letters(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(_dead_letters))

    async def api_replay(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        ids = body.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
            raise web.HTTPBadRequest(text="ids must be a list of dead letter ids (numbers)\n")
        return web.json_response({"replayed": await self._run(lambda state: _replay(state, ids))})

    async def api_rules_test(self, request: web.Request) -> web.Response:
        return web.json_response(await self._explain(await _json_body(request)))

    # --- the console's pages ---

    async def page_overview(self, request: web.Request) -> web.Response:
        hours = _int(request, "hours", 24)
        traffic = await self._run(partial_traffic(hours))
        peak = max((bucket["messages"] for bucket in traffic["buckets"]), default=0) or 1
        return _page("overview.html", traffic=traffic, peak=peak, hours=hours)

    async def page_messages(self, request: web.Request) -> web.Response:
        query = _query(request)
        found = await self._run(lambda state: state.messages.search(query)) if request.query else []
        return _page(
            "messages.html", found=found, form=dict(request.query), outcomes=OUTCOMES, searched=bool(request.query)
        )

    async def page_trace(self, request: web.Request) -> web.Response:
        found = await self._trace(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound(text="no such message (never received, erased, or past retention)\n")
        return _page("trace.html", trace=found)

    async def page_dead_letters(self, request: web.Request) -> web.Response:
        return _page(
            "dead_letters.html", letters=await self._run(_dead_letters), replayed=request.query.get("replayed")
        )

    async def page_replay(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            ids = [int(str(value)) for value in form.getall("id", [])] or None
        except ValueError:
            raise web.HTTPBadRequest(text="dead letter ids are numbers\n") from None
        replayed = await self._run(lambda state: _replay(state, ids))
        raise web.HTTPSeeOther(f"/console/dead-letters?replayed={replayed}")

    async def page_playground(self, request: web.Request) -> web.Response:
        form = dict(request.query)
        result = await self._explain(form) if form.get("text") else None
        return _page("playground.html", form=form, result=result)

    # --- shared ---

    async def _trace(self, message_id: str) -> dict[str, Any] | None:
        log_path = self.settings.data_dir / "log.db"
        return await self._run(lambda state: trace(state, log_path, self._rules(), message_id))

    def _rules(self) -> RuleSet | None:
        """The rules in force, read on the console's thread (a large rule set takes a while to load)."""
        try:
            return load_rules(self.settings.routes)
        except RuleError:
            return None

    async def _explain(self, form: dict[str, Any]) -> dict[str, Any]:
        """``rules test`` for a message given as a form or JSON (text, from, to, provider, source)."""
        fields = {name: form.get(name, "") for name in ("text", "from", "to", "provider", "source")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise web.HTTPBadRequest(text="text, from, to, provider and source are strings\n")
        rules = await self._run(lambda state: self._rules())
        if rules is None:
            raise web.HTTPConflict(text="the routing rules do not load: see `smsroute rules check`\n")
        message = InboundMessage(
            id="playground",
            provider=fields["provider"],
            source=fields["source"],
            sender=fields["from"],
            recipient=fields["to"],
            text=fields["text"],
            received_at=datetime.now(UTC),
        )
        explained: dict[str, Any] = rules.explain(message).to_json()
        return explained


def mount(settings: Settings) -> Callable[[web.Application], None]:
    """What the embedded engine gives the ingress app to add the API and console to it."""
    return Console(settings).mount


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _page(template: str, **values: Any) -> web.Response:
    html = _templates.get_template(template).render(**values)
    return web.Response(text=html, content_type="text/html", headers={"Content-Security-Policy": CSP})


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number\n") from None
    if not 1 <= value <= 10_000:
        raise web.HTTPBadRequest(text=f"{name} must be between 1 and 10000\n")
    return value


def _query(request: web.Request) -> Query:
    """The search's query parameters: number, text, route, provider, since/until (epoch seconds or ISO
    8601 with an offset), outcome, limit."""
    q = request.query
    outcome = q.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise web.HTTPBadRequest(text=f"outcome must be one of {', '.join(OUTCOMES)}\n")
    return Query(
        number=q.get("number") or None,
        text=q.get("text") or None,
        route=q.get("route") or None,
        provider=q.get("provider") or None,
        since=_moment(q.get("since")),
        until=_moment(q.get("until")),
        outcome=outcome,
        limit=_int(request, "limit", 100),
    )


def _moment(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{value!r} is neither epoch seconds nor ISO 8601\n") from None
    if moment.tzinfo is None:
        raise web.HTTPBadRequest(text=f"{value!r} has no UTC offset\n")
    return moment.timestamp()


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object\n")
    return body


def partial_traffic(hours: int) -> Callable[[State], dict[str, Any]]:
    def traffic(state: State) -> dict[str, Any]:
        """Messages per hour over the last ``hours``: routed, unrouted, and their deliveries' states."""
        now = time.time()
        start = (int(now) // HOUR - hours + 1) * HOUR
        rows = state.conn.execute(
            "SELECT CAST(received_at / ? AS INTEGER) * ?, count(*), sum(routes = '') FROM messages"
            " WHERE received_at >= ? GROUP BY 1",
            (HOUR, HOUR, start),
        ).fetchall()
        by_hour = {row[0]: (row[1], row[2]) for row in rows}
        outcomes = dict(
            state.conn.execute(
                "SELECT state, count(*) FROM deliveries WHERE received_at >= ? GROUP BY state", (start,)
            ).fetchall()
        )
        buckets = [
            {"hour": hour, "messages": by_hour.get(hour, (0, 0))[0], "unrouted": by_hour.get(hour, (0, 0))[1]}
            for hour in range(start, start + hours * HOUR, HOUR)
        ]
        return {
            "hours": hours,
            "buckets": buckets,
            "deliveries": outcomes,
            "dead_letters": state.dead_letters.waiting(),
        }

    return traffic


def _dead_letters(state: State) -> list[dict[str, Any]]:
    letters = state.dead_letters.all()
    for letter in letters:
        letter.pop("payload")
    return letters


def _replay(state: State, ids: list[int] | None) -> int:
    with state.transaction():
        return state.dead_letters.replay_deliveries(ids)
