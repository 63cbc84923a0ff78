"""The benchmark's webhook receiver: a bare aiohttp app that answers 204 at once and notes, for each
delivery, when it arrived, which webhook it came to, and how long after the message was sent.

It takes both engines' deliveries: smsroute's JSON (``POST /webhook/<route>``, the message's
``text`` in the body) and Kannel's sms-service POSTs (``POST /kannel/<route>?from=..&to=..``, the
text as the body, Kannel's POST convention). The route is the path's last word: ``stop`` or ``inbox``.

Texts are ``[STOP ]<run>-<thread>-<n>-<sent ms>`` (``bench/ingress.py``'s wrk script): deliveries are
grouped by run (the warm-up and each measured mode are counted apart), counted by message (the text
without its keyword: a message delivered twice is a duplicate), and timed from the send time wrk
wrote into the text (Unix ms, taken just before the request went out) to their arrival here. The same
clock and the same two ends for every engine, whatever an engine records of its own. A message
whose text starts with STOP must reach ``stop``, every other one ``inbox``: the others are counted as
misrouted. ``GET /stats?run=NAME`` gives a run's figures as JSON. Same event loop (uvloop) and server
settings as the engine and the ceiling.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from aiohttp import web

from bench.serving import run

KEYWORD = "STOP "


@dataclass
class Run:
    messages: set[str] = field(default_factory=set)
    """Distinct messages (texts without their keyword): a repeated one is a duplicate."""
    arrivals: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    """Seconds from the send time in the text (ms precision) to arrival here."""
    routes: Counter[str] = field(default_factory=Counter)
    misrouted: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "delivered": len(self.messages),
            "requests": len(self.arrivals),
            "arrivals": self.arrivals,
            "latencies": self.latencies,
            "routes": dict(self.routes),
            "misrouted": self.misrouted,
        }


class Receiver:
    def __init__(self) -> None:
        self.runs: defaultdict[str, Run] = defaultdict(Run)

    def note(self, text: str, route: str) -> None:
        """One delivery of ``text`` to ``route``, arrived now."""
        now = time.time()
        stop = text[: len(KEYWORD)].upper() == KEYWORD
        message = text[len(KEYWORD) :] if stop else text
        fields = message.split("-")
        run = self.runs[fields[0]]
        run.messages.add(message)
        run.arrivals.append(now)
        run.routes[route] += 1
        run.misrouted += stop != (route == "stop")
        if len(fields) >= 4 and fields[-1].isdigit():
            run.latencies.append(now - int(fields[-1]) / 1000)

    async def webhook(self, request: web.Request) -> web.Response:
        """smsroute (and the Kafka engine): the canonical message as JSON."""
        self.note(json.loads(await request.read())["text"], request.path.rsplit("/", 1)[-1])
        return web.Response(status=204)

    async def kannel(self, request: web.Request) -> web.Response:
        """Kannel's sms-service ``post-url``: the whole text (%a) as a text/plain body. smsbox takes only
        200 and 202 for success (a 204 is a failed fetch to it) and would send a non-empty answer back
        to the phone: 200, empty."""
        self.note((await request.read()).decode(), request.match_info["route"])
        return web.Response(status=200, content_type="text/plain")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.runs.get(request.query["run"], Run()).to_json())

    async def count(self, request: web.Request) -> web.Response:
        """Only the delivered count: cheap enough to poll while measuring."""
        return web.Response(text=str(len(self.runs.get(request.query["run"], Run()).messages)))


def main() -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_get("/stats", receiver.stats)
    app.router.add_get("/count", receiver.count)
    app.router.add_post("/kannel/{route}", receiver.kannel)
    app.router.add_post("/{tail:.*}", receiver.webhook)
    run(app, __doc__.splitlines()[0], 8082)


if __name__ == "__main__":
    main()
