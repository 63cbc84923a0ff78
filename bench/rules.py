"""Routing rule matching: does the cost of a match stay flat as keyword routes grow from 10 to 10,000?

Each rule set is N keyword routes (``KW0``, ``KW1``...; every tenth has aliases) plus the same four
routes without a keyword: a ``from`` prefix route with ``continue: true``, an office-hours window
with ``continue: true``, a text regex and a catch-all. The sets are written as YAML and loaded through
:func:`smsroute.rules.load_rules`, as the engine would. The same number of messages is matched
against each set: half start with one of its keywords or aliases (drawn uniformly, so the large sets
hit routes all over the index), half with a word no route names (the scan path). The 10-route set
is the baseline. The sets are timed in ``--repeat`` rounds (after a warm-up round) and each set's
fastest run is kept: on a shared machine the slower runs measure the neighbours.

Run from the repository root: ``.venv/bin/python -m bench.rules [--messages 100000] [--repeat 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smsroute.models.message import InboundMessage
from smsroute.rules import RuleSet, load_rules

SIZES = (10, 1_000, 10_000)
OTHER_ROUTES = """\
  - name: italians
    match: {from: "+39"}
    continue: true
    actions: [{webhook: {url: "http://127.0.0.1:9000/it"}}]
  - name: office-hours
    match: {time: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00", tz: Europe/Rome}}
    continue: true
    actions: [{webhook: {url: "http://127.0.0.1:9000/desk"}}]
  - name: complaints
    match: {text: '\\b(complain|refund|rimborso)'}
    actions: [{email: {to: [quality@example.com]}}]
  - name: everything-else
    actions: [{webhook: {url: "http://127.0.0.1:9000/inbox"}}]
"""


@dataclass
class Result:
    keyword_routes: int
    routes: int
    load_s: float
    matches: int
    seconds: float
    matched_routes: int

    @property
    def per_s(self) -> float:
        return self.matches / self.seconds

    @property
    def us_per_match(self) -> float:
        return self.seconds / self.matches * 1e6


def rules_yaml(size: int) -> str:
    lines = ["aliases:"]
    lines += [f"  KW{n}: [ALIAS{n}A, ALIAS{n}B]" for n in range(0, size, 10)]
    lines.append("routes:")
    for n in range(size):
        lines += [
            f"  - name: kw-{n}",
            f"    match: {{keyword: KW{n}}}",
            f'    actions: [{{webhook: {{url: "http://127.0.0.1:9000/kw/{n}"}}}}]',
        ]
    return "\n".join(lines) + "\n" + OTHER_ROUTES


def messages(size: int, count: int, seed: int) -> list[InboundMessage]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 16, tzinfo=UTC)
    out = []
    for n in range(count):
        route = rng.randrange(size)
        first = (f"kw{route}", f"Alias{route - route % 10}a", f"nomatch{n}")[rng.choice((0, 0, 1, 2, 2, 2))]
        text = f"{first} " + rng.choice(("please", "I want a refund", "info about the offer", "grazie"))
        sender = rng.choice(("+393331234567", "+447700900123", "+4915112345678"))
        out.append(
            InboundMessage(
                id=str(n),
                provider="vonage",
                source="vonage",
                sender=sender,
                recipient="+393201234567",
                text=text,
                received_at=start + timedelta(seconds=rng.randrange(7 * 86400)),
            )
        )
    return out


@dataclass
class Prepared:
    size: int
    ruleset: RuleSet
    load_s: float
    batch: list[InboundMessage]


def prepare(size: int, count: int, workdir: Path) -> Prepared:
    path = workdir / f"rules-{size}.yaml"
    path.write_text(rules_yaml(size), encoding="utf-8")
    began = time.perf_counter()
    ruleset = load_rules(path)
    return Prepared(size, ruleset, time.perf_counter() - began, messages(size, count, seed=size))


def timed(prepared: Prepared) -> tuple[float, int]:
    match = prepared.ruleset.match
    began = time.perf_counter()
    matched = sum(len(match(message).routes) for message in prepared.batch)
    return time.perf_counter() - began, matched


def measure(sets: list[Prepared], repeat: int) -> list[Result]:
    """Rounds over all sets, so that a noisy moment slows one round of each rather than one set."""
    best = {prepared.size: (float("inf"), 0) for prepared in sets}
    for _ in range(repeat + 1):  # the first round warms up
        for prepared in sets:
            best[prepared.size] = min(best[prepared.size], timed(prepared))
    return [Result(p.size, len(p.ruleset.routes), p.load_s, len(p.batch), *best[p.size]) for p in sets]


def render(results: list[Result]) -> str:
    base = results[0]
    lines = [f"{'keyword routes':>14} {'routes':>7} {'load s':>7} {'matches/s':>11} {'µs/match':>9} {'vs 10':>6}"]
    for result in results:
        lines.append(
            f"{result.keyword_routes:>14,} {result.routes:>7,} {result.load_s:>7.2f} {result.per_s:>11,.0f} "
            f"{result.us_per_match:>9.2f} {result.us_per_match / base.us_per_match:>5.2f}x"
        )
    lines.append(
        f"\n{base.matches:,} messages per set (half start with a keyword or alias, half with none); "
        "fastest of the timed runs"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Routing rule matching speed against the number of keyword routes.")
    parser.add_argument("--messages", type=int, default=100_000, help="messages matched per rule set (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per set, the fastest kept (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smsroute-bench-rules-") as tmp:
        results = measure([prepare(size, args.messages, Path(tmp)) for size in SIZES], args.repeat)
    if args.json:
        print(
            json.dumps(
                [asdict(r) | {"per_s": round(r.per_s), "us_per_match": round(r.us_per_match, 3)} for r in results],
                indent=2,
            )
        )
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
