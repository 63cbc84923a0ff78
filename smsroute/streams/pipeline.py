"""The processing core: raw event -> part -> (dedupe) -> (stitch) -> message -> (route) -> deliveries;
status event -> delivery report.

Plain Python, engine-agnostic. An engine drives it through :class:`Backend`, the one small
interface each engine implements: the stores the core keeps its state in, a savepoint, and where
what an event led to is recorded (SQLite rows in the embedded engine, records to produce in the
Kafka engine). The engine commits that together with its progress through the log, so a crash
re-does work but never skips or doubles it. Each event and each stitch timeout is isolated: when
anything in its path raises, its state writes are undone and it becomes a dead letter."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from .. import metrics
from ..models.avro import DecodeError
from ..models.dead_letter import DeadLetter
from ..models.delivery import Delivery, body_of
from ..models.message import InboundMessage
from ..models.raw import RawEvent
from ..models.report import DeliveryReport
from ..models.text import printable
from ..providers.base import Normalizer
from ..providers.kit import Unprocessable
from ..rules import RuleSet
from ..rules.model import ActionSettings
from .dedupe import DEFAULT_WINDOW, Dedupe
from .optouts import OptOut, OptOuts
from .state import Store, TimedStore
from .stitch import DEFAULT_TIMEOUT, Pending, Stitcher

log = logging.getLogger("smsroute.streams")

_events = functools.cache(metrics.PIPELINE_EVENTS.labels)
_stitched = functools.cache(metrics.PARTS_STITCHED.labels)
_stitch_timeouts = functools.cache(metrics.STITCH_TIMEOUTS.labels)
_dead_letters = functools.cache(metrics.DEAD_LETTERS.labels)
_routed = functools.cache(metrics.MESSAGES_ROUTED.labels)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the core made of one raw event, kept by engines that answer "where did it go"."""

    group: str
    """The message the event is (a part of): a digest of its stitch key, or of its dedupe key. The
    events of one message share it, so a trace finds its parts and the provider's retries of them."""
    decision: str
    """``message`` (it made a message), ``part`` (held until the others come), ``duplicate`` (a
    retry, dropped by dedupe) or ``duplicate_part`` (a part already held)."""


@dataclass(frozen=True, slots=True)
class Routed:
    """A message as it was routed, with the routes it hit (none: unrouted): what search, trace and
    replay read back."""

    message: InboundMessage
    routes: tuple[str, ...]
    group: str
    body: str
    """Its JSON as routed (keyword, rules version, its first route): the text its deliveries or
    its dead letter already hold, not made again."""


@dataclass(slots=True)
class Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reports: list[DeliveryReport] = field(default_factory=list)
    messages: list[Routed] = field(default_factory=list)
    seen: Seen | None = None
    """What the event at hand came to, when it was a message or part of one."""

    def extend(self, other: Outcome) -> None:
        """Add ``other``'s outputs (an engine gathering several events' outcomes; ``seen`` is each
        event's own, so it is not gathered)."""
        self.deliveries += other.deliveries
        self.dead_letters += other.dead_letters
        self.reports += other.reports
        self.messages += other.messages


class Backend(Protocol):
    """What an engine gives the core."""

    @property
    def dedupe(self) -> TimedStore[float]: ...

    @property
    def pending(self) -> TimedStore[Pending]: ...

    @property
    def opt_outs(self) -> Store[OptOut]: ...

    @property
    def fatal(self) -> tuple[type[BaseException], ...]:
        """Errors of the engine's own machinery (a full disk): they stop the work, which is done
        again, instead of making the event at hand a dead letter."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """The stores' writes in the block are undone when it raises."""
        ...

    def record(self, outcome: Outcome, now: float) -> None:
        """Keep what an event led to, within the savepoint (so that failing to keep it undoes it)."""
        ...


class Pipeline:
    def __init__(
        self,
        normalizers: Mapping[str, Normalizer],
        backend: Backend,
        rules: Callable[[], RuleSet],
        *,
        region: str | None = None,
        dedupe_window: float = DEFAULT_WINDOW,
        stitch_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.normalizers = normalizers
        self.backend = backend
        self.dedupe = Dedupe(backend.dedupe, dedupe_window)
        self.stitcher = Stitcher(backend.pending, stitch_timeout)
        self.opt_outs = OptOuts(backend.opt_outs)
        self.rules = rules
        self.region = region
        self._settings_version = ""
        self._settings_cache: dict[int, dict[str, Any]] = {}
        """Settings by ``id`` of the action's sink; the rule set of ``_settings_version`` keeps those alive."""

    def handle(self, record: bytes, now: float) -> None:
        """Process one logged raw event and record what it leads to, or its dead letter."""
        self._isolated(partial(self.process, record, now), partial(self.failed, record), now)

    def housekeeping(self, now: float) -> None:
        """Release the messages whose missing parts never came, each on its own; forget the dedupe
        keys past the window."""
        for key in self.stitcher.due(now):
            self._isolated(partial(self.release, key), partial(self.abandon, key), now)
        self.dedupe.expire(now)

    def _isolated(self, work: Callable[[], Outcome], failed: Callable[[Exception], Outcome], now: float) -> None:
        """Record what ``work`` leads to; when it raises, undo its writes and record ``failed``'s instead."""
        backend = self.backend
        try:
            with backend.savepoint():
                backend.record(work(), now)
        except backend.fatal:
            raise
        except Exception as exc:
            backend.record(failed(exc), now)

    def process(self, record: bytes, now: float) -> Outcome:
        """Everything one logged raw event leads to (its state writes made, its outputs returned)."""
        try:
            event = RawEvent.decode(record)
        except DecodeError as exc:
            return self._dead("normalize", "undecodable", str(exc), record, "unknown")
        normalizer = self.normalizers.get(event.provider)
        if normalizer is None:
            return self._dead("normalize", "unknown_provider", f"no adapter for {event.provider!r}", record, "unknown")
        try:
            if event.kind == "status":
                report = normalizer.report(event, self.region)
                _events(event.provider, "report").inc()
                return Outcome(reports=[report])
            part = normalizer.normalize(event, self.region)
        except Unprocessable as exc:
            return self._dead("normalize", "unprocessable", str(exc), record, event.provider)
        except Exception as exc:  # a bug on some odd input must cost one dead letter, not the stream
            log.exception("normalize failed", extra={"event": "normalize_error", "provider": event.provider})
            return self._dead("normalize", "error", f"{type(exc).__name__}: {exc}", record, event.provider)
        concat = part.concat if part.concat is not None and part.concat.total > 1 else None
        group = _group(part.stitch_key if concat is not None else part.dedupe_key)
        if self.dedupe.is_retry(part.dedupe_key, now):
            _events(event.provider, "duplicate").inc()
            return Outcome(seen=Seen(group, "duplicate"))
        _events(event.provider, "normalized").inc()
        held = self.stitcher.pending.get(part.stitch_key) if concat is not None else None
        message = self.stitcher.add(part, now)
        if message is None:
            duplicate = held is not None and concat is not None and concat.index in held.parts
            return Outcome(seen=Seen(group, "duplicate_part" if duplicate else "part"))
        if message.parts > 1:
            _stitched(message.provider).inc()
        outcome = self.route(message, group)
        outcome.seen = Seen(group, "message")
        return outcome

    def failed(self, record: bytes, exc: Exception) -> Outcome:
        """A raw event whose processing raised past normalization (a bug, or data that nothing
        downstream can store): a dead letter with the raw record. The engine has undone the event's
        state writes, so its retry or replay starts afresh."""
        log.error("processing failed", exc_info=exc, extra={"event": "process_error"})
        return self._dead("process", "error", f"{type(exc).__name__}: {exc}", record, "unknown")

    def release(self, key: str) -> Outcome:
        """A message whose missing parts never came (a key of ``stitcher.due``): delivered
        incomplete, and counted."""
        message = self.stitcher.release(key)
        if message is None:
            return Outcome()
        _stitch_timeouts(message.provider).inc()
        log.warning(
            "message released incomplete: parts missing after the stitch timeout",
            extra={
                "event": "stitch_timeout",
                "message_id": message.id,
                "provider": message.provider,
                "parts": message.parts,
                "parts_received": message.extra.get("parts_received"),
            },
        )
        return self.route(message, _group(key))

    def abandon(self, key: str, exc: Exception) -> Outcome:
        """A timed-out message whose release raised: its parts go to dead letters (as JSON), so they
        neither wait for ever nor fail every later expiry."""
        log.error("releasing a timed-out message failed", exc_info=exc, extra={"event": "release_error"})
        try:
            group = self.stitcher.pending.get(key)
            parts = [part.to_json() for _, part in sorted(group.parts.items())] if group else []
            payload = json.dumps(parts, default=str).encode()
        except Exception:  # unreadable: the key at least says whose parts they were
            payload = key.encode("utf-8", "backslashreplace")
        del self.stitcher.pending[key]
        return self._dead("process", "error", f"{type(exc).__name__}: {exc}", payload, "unknown")

    def route(self, message: InboundMessage, group: str) -> Outcome:
        """One delivery per action of every matching route; no match is a dead letter, never a drop.
        ``group``: the :attr:`Seen.group` of the message's events."""
        rules = self.rules()
        match = rules.match(message)
        fields = message.to_json() | {"keyword": match.keyword, "rules_version": rules.version}
        names = tuple(route.name for route in match.routes)
        if not match.routes:
            metrics.MESSAGES_UNROUTED.inc()
            body = json.dumps(fields, ensure_ascii=False)
            payload = body.encode("utf-8", "backslashreplace")
            outcome = self._dead("route", "unrouted", "no route matched", payload, message.provider, message.id)
            outcome.messages.append(Routed(message, names, group, body))
            return outcome
        bodies: dict[str, str] = {}
        for route in match.routes:
            _routed(route.name).inc()
            bodies[route.name] = body_of(fields | {"route": route.name})
            if route.compliance is not None and message.sender:
                self.opt_outs.apply(route.compliance, message.sender, message.id, message.received_at.timestamp())
        return Outcome(
            messages=[Routed(message, names, group, bodies[names[0]])],
            deliveries=[
                Delivery.of(
                    message,
                    routed.route.name,
                    routed.number,
                    routed.action.kind,
                    self._settings(rules, routed.action.settings, routed.route.compliance),
                    bodies[routed.route.name],
                )
                for routed in match.actions
            ],
        )

    def _settings(self, rules: RuleSet, sink: ActionSettings, compliance: str | None) -> dict[str, Any]:
        """:func:`settings` of an action, worked out once per rule set rather than per message (an
        action belongs to one route, so its route's ``compliance`` is the same every time)."""
        if self._settings_version != rules.version:
            self._settings_version, self._settings_cache = rules.version, {}
        found = self._settings_cache.get(id(sink))
        if found is None:
            found = self._settings_cache[id(sink)] = settings(sink, compliance)
        return found

    @staticmethod
    def _dead(
        stage: str, code: str, reason: str, payload: bytes, provider: str, message_id: str | None = None
    ) -> Outcome:
        reason = printable(reason)
        _dead_letters(stage, code).inc()
        log.warning(
            f"dead letter: {code}: {reason}",
            extra={
                "event": "dead_letter",
                "stage": stage,
                "reason": code,
                "provider": provider,
                "message_id": message_id,
            },
        )
        if stage == "normalize":
            _events(provider, "dead_letter").inc()
        return Outcome(dead_letters=[DeadLetter(stage, f"{code}: {reason}", payload)])


def _group(key: str) -> str:
    """A :attr:`Seen.group`: short, and with no number in clear (a stitch key holds two)."""
    return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:32]


def settings(sink: ActionSettings, compliance: str | None = None) -> dict[str, Any]:
    """A routed action's settings as the sinks need them later, whatever the rules become meanwhile:
    secrets in clear (they stay in the engine's state, never in logs), retries as plain delays, and
    the route's ``compliance`` (its replies reach opted-out numbers)."""
    settings = sink.model_dump(mode="json", by_alias=True, exclude={"secret", "retry"})
    secret = getattr(sink, "secret", None)
    if secret is not None:
        settings["secret"] = secret.get_secret_value()
    settings["retry"] = {"delays": list(sink.retry.delays)}
    if compliance is not None:
        settings["compliance"] = compliance
    return settings
