"""Matching a message against a rule set, and explaining the outcome to a rule author.

Routes are indexed by canonical keyword: a message is checked only against the routes naming its
keyword and the routes with no keyword criterion, merged back into file order when the set is
loaded. Matching costs the same with ten keyword routes or ten thousand.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..models.message import InboundMessage
from .model import Action, Route, TimeWindow, first_word


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion of one route against one message: did it hold, on what value, wanting what."""

    criterion: str
    held: bool
    actual: str
    wanted: str

    def __str__(self) -> str:
        return f"{self.criterion}: {self.actual}, wanted {self.wanted}"


class Criterion:
    name = ""
    wanted = ""

    def holds(self, message: InboundMessage, keyword: str) -> bool:
        raise NotImplementedError

    def actual(self, message: InboundMessage, keyword: str) -> str:
        raise NotImplementedError

    def check(self, message: InboundMessage, keyword: str) -> Check:
        return Check(self.name, self.holds(message, keyword), self.actual(message, keyword), self.wanted)


class OneOf(Criterion):
    """Exact equality with any of the values: keyword, ``to``, provider, source."""

    def __init__(self, name: str, field: str, values: tuple[str, ...]) -> None:
        self.name, self.field, self.values = name, field, frozenset(values)
        self.wanted = ("one of " if len(values) > 1 else "") + ", ".join(values)

    def value(self, message: InboundMessage, keyword: str) -> str:
        return keyword if self.field == "keyword" else getattr(message, self.field)

    def holds(self, message: InboundMessage, keyword: str) -> bool:
        return self.value(message, keyword) in self.values

    def actual(self, message: InboundMessage, keyword: str) -> str:
        return repr(self.value(message, keyword))


class Prefix(Criterion):
    name = "from"

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes
        self.wanted = "a number starting with " + " or ".join(prefixes)

    def holds(self, message: InboundMessage, keyword: str) -> bool:
        return message.sender.startswith(self.prefixes)

    def actual(self, message: InboundMessage, keyword: str) -> str:
        return repr(message.sender)


class Search(Criterion):
    name = "text"

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.wanted = f"a match for /{pattern.pattern}/ (case-insensitive)"

    def holds(self, message: InboundMessage, keyword: str) -> bool:
        return self.pattern.search(message.text) is not None

    def actual(self, message: InboundMessage, keyword: str) -> str:
        found = self.pattern.search(message.text)
        return repr(message.text) + (f" (found {found[0]!r})" if found else "")


class During(Criterion):
    name = "time"

    def __init__(self, windows: tuple[TimeWindow, ...]) -> None:
        self.windows = windows
        self.wanted = " or ".join(map(str, windows))

    def holds(self, message: InboundMessage, keyword: str) -> bool:
        return any(window.contains(message.received_at) for window in self.windows)

    def actual(self, message: InboundMessage, keyword: str) -> str:
        zones = dict.fromkeys(window.tz for window in self.windows)
        return ", ".join(f"{message.received_at.astimezone(zone):%a %Y-%m-%d %H:%M} {zone.key}" for zone in zones)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A route ready to match: its keyword set (indexed) apart from the criteria checked one by one."""

    index: int
    route: Route
    origin: str
    keyword: OneOf | None
    rest: tuple[Criterion, ...]

    @classmethod
    def build(cls, index: int, route: Route, origin: str) -> Compiled:
        match = route.match
        if match is None:
            return cls(index, route, origin, None, ())
        rest: list[Criterion] = []
        if match.text is not None:
            rest.append(Search(match.text))
        for name, field, values in (
            ("to", "recipient", match.to),
            ("provider", "provider", match.provider),
            ("source", "source", match.source),
        ):
            if values is not None:
                rest.append(OneOf(name, field, values))
        if match.sender is not None:
            rest.append(Prefix(match.sender))
        if match.time is not None:
            rest.append(During(match.time))
        keyword = OneOf("keyword", "keyword", match.keyword) if match.keyword else None
        return cls(index, route, origin, keyword, tuple(rest))

    def accepts(self, message: InboundMessage, keyword: str) -> bool:
        """The criteria other than the keyword, which the index has already settled."""
        for criterion in self.rest:
            if not criterion.holds(message, keyword):
                return False
        return True

    def checks(self, message: InboundMessage, keyword: str) -> tuple[Check, ...]:
        criteria = (self.keyword, *self.rest) if self.keyword else self.rest
        return tuple(criterion.check(message, keyword) for criterion in criteria)


@dataclass(frozen=True, slots=True)
class RoutedAction:
    """One action of one matching route: what a sink will deliver. ``number`` counts from 1."""

    route: Route
    number: int
    action: Action


@dataclass(frozen=True, slots=True)
class Routing:
    """The outcome for one message: its canonical keyword and the matching routes in order (none: unrouted)."""

    keyword: str
    routes: tuple[Route, ...]

    @property
    def actions(self) -> tuple[RoutedAction, ...]:
        return tuple(
            RoutedAction(route, number, action)
            for route in self.routes
            for number, action in enumerate(route.actions, start=1)
        )


Status = Literal["match", "no", "shadowed"]
COMPLIANCE = {
    "stop": "opts the sender out of auto-replies",
    "start": "opts the sender back in",
    "help": "answers opted-out senders too",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One route for one message. ``shadowed``: its criteria hold, but an earlier route already won."""

    route: Route
    origin: str
    status: Status
    checks: tuple[Check, ...]
    shadowed_by: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    message: InboundMessage
    word: str
    """The first word as written, folded; ``keyword`` is what aliases made of it."""
    routing: Routing
    verdicts: tuple[Verdict, ...]
    rules_version: str

    def delivered(self, delivery: RoutedAction) -> InboundMessage:
        """The message as this delivery's sink sees it (templates render against it)."""
        routed = dataclasses.replace(self.message, keyword=self.routing.keyword)
        return routed.routed(delivery.route.name, self.rules_version)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules_version": self.rules_version,
            "word": self.word,
            "keyword": self.routing.keyword,
            "matched": [route.name for route in self.routing.routes],
            "routes": [
                {
                    "name": verdict.route.name,
                    "origin": verdict.origin,
                    "status": verdict.status,
                    "shadowed_by": verdict.shadowed_by or None,
                    "continue": verdict.route.proceed,
                    "compliance": verdict.route.compliance,
                    "checks": [dataclasses.asdict(check) for check in verdict.checks],
                }
                for verdict in self.verdicts
            ],
            "deliveries": [
                {
                    "route": delivery.route.name,
                    "action": delivery.number,
                    "kind": delivery.action.kind,
                    "summary": delivery.action.settings.summary(self.delivered(delivery)),
                }
                for delivery in self.routing.actions
            ],
        }

    def lines(self) -> list[str]:
        word = f" (first word {self.word!r})" if self.word != self.routing.keyword else ""
        out = [f"keyword: {self.routing.keyword or '(none)'}{word}", f"rules version: {self.rules_version}", ""]
        width = max(len(verdict.route.name) for verdict in self.verdicts)
        for verdict in self.verdicts:
            label = {"match": "MATCH", "no": "no", "shadowed": "shadowed"}[verdict.status]
            extra = f" by {verdict.shadowed_by!r}" if verdict.shadowed_by else ""
            then = " (continue)" if verdict.route.proceed and verdict.status == "match" else ""
            if verdict.route.compliance is not None and verdict.status == "match":
                then += f" ({COMPLIANCE[verdict.route.compliance]})"
            out.append(f"{verdict.route.name:<{width}}  {label}{extra}{then}  [{verdict.origin}]")
            out.extend(f"    {'yes' if check.held else 'NO '}  {check}" for check in verdict.checks)
            if not verdict.checks:
                out.append("    yes  catches every message (no match criteria)")
        out.append("")
        deliveries = self.routing.actions
        if not deliveries:
            out.append("deliveries: none: the message is unrouted")
        else:
            out.append("deliveries:")
            for delivery in deliveries:
                summary = delivery.action.settings.summary(self.delivered(delivery))
                out.append(f"  {delivery.route.name} #{delivery.number} {delivery.action.kind}: {summary}")
        return out


class RuleSet:
    """Routes in order, aliases (word -> canonical keyword) and the ``version`` of the files they came from."""

    def __init__(
        self, routes: tuple[Route, ...], aliases: Mapping[str, str], version: str, origins: tuple[str, ...]
    ) -> None:
        self.routes, self.aliases, self.version = routes, dict(aliases), version
        self._compiled = tuple(map(Compiled.build, range(len(routes)), routes, origins))
        self._scan = tuple(route for route in self._compiled if route.keyword is None)
        by_keyword: dict[str, list[Compiled]] = {}
        for route in self._compiled:
            for word in route.keyword.values if route.keyword else ():
                by_keyword.setdefault(word, []).append(route)
        self._plans = {
            word: tuple(sorted((*routes, *self._scan), key=lambda route: route.index))
            for word, routes in by_keyword.items()
        }

    @property
    def keywords(self) -> frozenset[str]:
        return frozenset(self._plans)

    def keyword(self, text: str) -> str:
        """The canonical keyword of a text: its first word, folded, through the aliases."""
        word = first_word(text)
        return self.aliases.get(word, word)

    def match(self, message: InboundMessage) -> Routing:
        keyword = self.keyword(message.text)
        matched: list[Route] = []
        for route in self._plans.get(keyword, self._scan):
            if not route.rest or route.accepts(message, keyword):
                matched.append(route.route)
                if not route.route.proceed:
                    break
        return Routing(keyword, tuple(matched))

    def explain(self, message: InboundMessage) -> Explanation:
        """Every route's verdict with the reasons, consistent with :meth:`match` by construction."""
        routing = self.match(message)
        matched = {route.name for route in routing.routes}
        winner = routing.routes[-1].name if routing.routes and not routing.routes[-1].proceed else ""
        verdicts = []
        for route in self._compiled:
            checks = route.checks(message, routing.keyword)
            if route.route.name in matched:
                verdicts.append(Verdict(route.route, route.origin, "match", checks))
            elif all(check.held for check in checks):
                verdicts.append(Verdict(route.route, route.origin, "shadowed", checks, winner))
            else:
                verdicts.append(Verdict(route.route, route.origin, "no", checks))
        return Explanation(message, first_word(message.text), routing, tuple(verdicts), self.version)
