"""The processing core: raw event -> part -> (dedupe) -> (stitch) -> message -> (route) -> deliveries;
status event -> delivery report.

Plain Python, engine-agnostic: state lives in the stores given to :class:`Dedupe`,
:class:`Stitcher` and :class:`OptOuts`, and the caller persists what :meth:`Pipeline.process`
returns together with its progress through the log, so a crash re-does work but never skips or
doubles it."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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
from ..rules.model import Sink
from .dedupe import Dedupe
from .optouts import OptOuts
from .stitch import Stitcher

log = logging.getLogger("smsroute.streams")

_events = functools.cache(metrics.PIPELINE_EVENTS.labels)
_stitched = functools.cache(metrics.PARTS_STITCHED.labels)
_stitch_timeouts = functools.cache(metrics.STITCH_TIMEOUTS.labels)
_dead_letters = functools.cache(metrics.DEAD_LETTERS.labels)
_routed = functools.cache(metrics.MESSAGES_ROUTED.labels)


@dataclass(slots=True)
class Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reports: list[DeliveryReport] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.deliveries += other.deliveries
        self.dead_letters += other.dead_letters
        self.reports += other.reports


class Pipeline:
    def __init__(
        self,
        normalizers: Mapping[str, Normalizer],
        dedupe: Dedupe,
        stitcher: Stitcher,
        rules: Callable[[], RuleSet],
        region: str | None = None,
        *,
        opt_outs: OptOuts,
    ) -> None:
        self.normalizers = normalizers
        self.dedupe = dedupe
        self.stitcher = stitcher
        self.rules = rules
        self.region = region
        self.opt_outs = opt_outs
        self._settings_version = ""
        self._settings_cache: dict[int, dict[str, Any]] = {}
        """Settings by ``id`` of the action's sink; the rule set of ``_settings_version`` keeps those alive."""

    def process(self, record: bytes, now: float) -> Outcome:
        """Everything one logged raw event leads to."""
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
        if self.dedupe.is_retry(part.dedupe_key, now):
            _events(event.provider, "duplicate").inc()
            return Outcome()
        _events(event.provider, "normalized").inc()
        message = self.stitcher.add(part, now)
        if message is None:
            return Outcome()
        if message.parts > 1:
            _stitched(message.provider).inc()
        return self.route(message)

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
            extra={"event": "stitch_timeout", "message_id": message.id, "provider": message.provider,
                   "parts": message.parts, "parts_received": message.extra.get("parts_received")},
        )
        return self.route(message)

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

    def route(self, message: InboundMessage) -> Outcome:
        """One delivery per action of every matching route; no match is a dead letter, never a drop."""
        rules = self.rules()
        match = rules.match(message)
        if not match.routes:
            metrics.MESSAGES_UNROUTED.inc()
            unrouted = replace(message, keyword=match.keyword, rules_version=rules.version)
            payload = json.dumps(unrouted.to_json(), ensure_ascii=False).encode("utf-8", "backslashreplace")
            return self._dead("route", "unrouted", "no route matched", payload, message.provider, message.id)
        fields = message.to_json() | {"keyword": match.keyword, "rules_version": rules.version}
        bodies: dict[str, str] = {}
        for route in match.routes:
            _routed(route.name).inc()
            bodies[route.name] = body_of(fields | {"route": route.name})
            if route.compliance is not None and message.sender:
                self.opt_outs.apply(route.compliance, message.sender, message.id, message.received_at.timestamp())
        return Outcome(
            deliveries=[
                Delivery.of(
                    message,
                    delivery.route.name,
                    delivery.number,
                    delivery.action.kind,
                    self._settings(rules, delivery.action.sink, delivery.route.compliance),
                    bodies[delivery.route.name],
                )
                for delivery in match.deliveries
            ]
        )

    def _settings(self, rules: RuleSet, sink: Sink, compliance: str | None) -> dict[str, Any]:
        """:func:`settings` of an action, worked out once per rule set rather than per message (an
        action belongs to one route, so its route's ``compliance`` is the same every time)."""
        if self._settings_version != rules.version:
            self._settings_version, self._settings_cache = rules.version, {}
        found = self._settings_cache.get(id(sink))
        if found is None:
            found = self._settings_cache[id(sink)] = settings(sink, compliance)
        return found

    @staticmethod
    def _dead(stage: str, code: str, reason: str, payload: bytes, provider: str, message_id: str | None = None) -> Outcome:
        reason = printable(reason)
        _dead_letters(stage, code).inc()
        log.warning(
            f"dead letter: {code}: {reason}",
            extra={"event": "dead_letter", "stage": stage, "reason": code, "provider": provider, "message_id": message_id},
        )
        if stage == "normalize":
            _events(provider, "dead_letter").inc()
        return Outcome(dead_letters=[DeadLetter(stage, f"{code}: {reason}", payload)])


def settings(sink: Sink, compliance: str | None = None) -> dict[str, Any]:
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
