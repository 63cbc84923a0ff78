"""``smsroute rules replay``: a window of real traffic through a new rule set, delivering nothing, and
what would change; with ``--deliver``, the unrouted messages (dead letters of stage ``route``)
routed again through the rules in force."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from ...models.message import InboundMessage
from ...rules import RuleSet
from ...streams.pipeline import Pipeline
from .consumer import StateBackend
from .state import State

UNROUTED = "(unrouted)"
EXAMPLES = 3


def compare(state: State, rules: RuleSet, since: float, until: float) -> dict[str, Any]:
    """The stored messages received in ``[since, until)`` matched against ``rules``: how many, how
    many would go elsewhere, the moves between routes (with a few example messages each), the
    newly unrouted, and each route's count before and after."""
    moves: Counter[tuple[str, str]] = Counter()
    examples: defaultdict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    total = 0
    for stored in state.messages.window(since, until):
        total += 1
        message = InboundMessage.from_json(stored["message"])
        was = "+".join(stored["routes"]) or UNROUTED
        now = "+".join(route.name for route in rules.match(message).routes) or UNROUTED
        before[was] += 1
        after[now] += 1
        if was != now:
            moves[was, now] += 1
            if len(examples[was, now]) < EXAMPLES:
                examples[was, now].append({"id": message.id, "from": message.sender, "text": message.text})
    return {
        "rules_version": rules.version,
        "messages": total,
        "changed": sum(moves.values()),
        "newly_unrouted": sum(count for (_, to), count in moves.items() if to == UNROUTED),
        "moves": [
            {"from": was, "to": now, "count": count, "examples": examples[was, now]}
            for (was, now), count in moves.most_common()
        ],
        "routes": {route: {"before": before[route], "after": after[route]} for route in sorted(before | after)},
    }


def reroute(state: State, pipeline: Pipeline, backend: StateBackend, now: float) -> tuple[int, int]:
    """Route the messages that were unrouted again through ``pipeline``'s rules, in one transaction:
    those that match now get their deliveries (due at once) and their dead letter is marked replayed;
    the others stay as they are. Returns (rerouted, still unrouted)."""
    rules = pipeline.rules()
    rerouted = still = 0
    with state.transaction():
        letters = state.conn.execute(
            "SELECT id, payload FROM dead_letters WHERE stage = 'route' AND replayed_at IS NULL ORDER BY id"
        ).fetchall()
        for letter_id, payload in letters:
            message = InboundMessage.from_json(json.loads(payload))
            if not rules.match(message).routes:
                still += 1
                continue
            found = state.messages.get(message.id)
            backend.record(pipeline.route(message, found["group"] if found else ""), now)
            state.conn.execute("UPDATE dead_letters SET replayed_at = ? WHERE id = ?", (now, letter_id))
            rerouted += 1
    return rerouted, still
