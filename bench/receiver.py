"""The benchmark's webhook receiver: a bare aiohttp app that answers 204 at once and notes, for each
delivery, when it arrived and how long after the engine received the message (``received_at``).

Deliveries are grouped by run: the first dash-separated word of the text (``full-1-42`` is in run
``full``), so the warm-up and each measured mode are counted apart. ``GET /stats?run=NAME`` gives a
run's figures as JSON. Same event loop (uvloop) and server settings as the engine and the ceiling.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from bench.serving import run


@dataclass
class Run:
    ids: set[str] = field(default_factory=set)
    """Distinct ``webhook-id`` headers: a repeated one is a duplicate a receiver would drop."""
    arrivals: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    """Seconds from the engine's ``received_at`` (millisecond precision) to arrival here."""

    def to_json(self) -> dict[str, object]:
        return {
            "delivered": len(self.ids),
            "requests": len(self.arrivals),
            "arrivals": self.arrivals,
            "latencies": self.latencies,
        }


class Receiver:
    def __init__(self) -> None:
        self.runs: defaultdict[str, Run] = defaultdict(Run)

    async def deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        message = json.loads(body)
        run = self.runs[message["text"].split("-", 1)[0]]
        run.ids.add(request.headers["webhook-id"])
        run.arrivals.append(now)
        run.latencies.append(now - datetime.fromisoformat(message["received_at"]).timestamp())
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.runs.get(request.query["run"], Run()).to_json())

    async def count(self, request: web.Request) -> web.Response:
        """Only the delivered count: cheap enough to poll while measuring."""
        return web.Response(text=str(len(self.runs.get(request.query["run"], Run()).ids)))


def main() -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_get("/stats", receiver.stats)
    app.router.add_get("/count", receiver.count)
    app.router.add_post("/{tail:.*}", receiver.deliver)
    run(app, __doc__.splitlines()[0], 8082)


if __name__ == "__main__":
    main()
