"""``smsroute rules check`` and ``rules test``: what rule authors ask before they deploy."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..models.message import InboundMessage
from ..rules import RuleError, RuleSet, load_rules
from .messages import moment

EXIT_UNROUTED = 3


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser("rules", help="check routing rules, or see which routes a message would hit")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser(
        "check", help="validate rules; exit 0 with a summary, or 1 listing every problem as file:line:column: reason"
    )
    check.add_argument("path", type=Path, nargs="?", default=Path("routing_rules"), help="rules file or directory")
    check.set_defaults(run=_rules_check)
    test = rules_commands.add_parser(
        "test",
        help="explain which routes a message hits and why",
        description="Explain which routes a message hits and why, and the deliveries it would produce. "
        "Exit status: 0 when a route matched, 3 when the message is unrouted, 1 when the rules are invalid.",
    )
    test.add_argument("path", type=Path, nargs="?", default=Path("routing_rules"), help="rules file or directory")
    test.add_argument("--text", required=True, help="the message text")
    test.add_argument("--from", dest="sender", default="", help="sender number, e.g. +393331234567")
    test.add_argument("--to", dest="recipient", default="", help="recipient number or short code")
    test.add_argument("--provider", default="", help="provider type, e.g. vonage")
    test.add_argument("--source", default="", help="ingress name the message came in on")
    test.add_argument("--at", type=_moment, help="receive time, ISO 8601 with an offset (default: now)")
    test.add_argument("--json", action="store_true", help="print the explanation as JSON")
    test.set_defaults(run=_rules_test)
    replay = rules_commands.add_parser(
        "replay",
        help="run a window of stored traffic through new rules and show what would change (nothing delivered)",
        description="Run the messages the embedded engine kept in a window through a new rule set, delivering "
        "nothing, and print what would change. With --deliver, route the unrouted messages (dead letters of "
        "stage route) again through the rules in force (--config/--routes), which delivers them.",
    )
    replay.add_argument("--rules", type=Path, help="the new rules file or directory to compare")
    replay.add_argument("--since", type=moment, default="24h", help="window start: 24h, 7d ago, or ISO 8601")
    replay.add_argument("--until", type=moment, help="window end (default now)")
    replay.add_argument(
        "--deliver", action="store_true", help="re-route the unrouted messages through the rules in force"
    )
    replay.add_argument("--config", type=Path, help="TOML configuration file (data_dir, routes)")
    replay.add_argument("--data-dir", type=Path, help="the embedded engine's data directory (default ./data)")
    replay.add_argument("--routes", type=Path, help="the rules in force, for --deliver (default routing_rules/)")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(run=_rules_replay)


def load(path: Path) -> RuleSet | None:
    """The rule set, or None after printing every problem to stderr."""
    try:
        return load_rules(path)
    except RuleError as exc:
        print_problems(path, exc)
        return None


def counted(count: int, noun: str, plural: str = "") -> str:
    """``1 route``, ``2 routes``: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def print_problems(path: Path, error: RuleError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    print(f"{path}: {counted(len(error.problems), 'problem')}: rules not valid", file=sys.stderr)


def _rules_check(args: argparse.Namespace) -> int:
    rules = load(args.path)
    if rules is None:
        return 1
    aliased = f" (+{counted(len(rules.aliases), 'alias', 'aliases')})" if rules.aliases else ""
    counts = f"{counted(len(rules.routes), 'route')}, {counted(len(rules.keywords), 'keyword')}{aliased}"
    print(f"{args.path}: ok: {counts}, version {rules.version}")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    rules = load(args.path)
    if rules is None:
        return 1
    message = InboundMessage(
        id="rules-test",
        provider=args.provider,
        source=args.source,
        sender=args.sender,
        recipient=args.recipient,
        text=args.text,
        received_at=args.at or datetime.now(UTC),
    )
    explanation = rules.explain(message)
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False, indent=2))
    else:
        print(
            f"message: {args.text!r} from {args.sender or '-'} to {args.recipient or '-'} "
            f"provider {args.provider or '-'} source {args.source or '-'} at {message.received_at.isoformat()}"
        )
        print("\n".join(explanation.lines()))
    return 0 if explanation.routing.routes else EXIT_UNROUTED


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset (e.g. 2026-11-21T10:00:00+01:00)")
    return moment


def _rules_replay(args: argparse.Namespace) -> int:
    from ..engines.embedded import replay
    from ..engines.embedded.consumer import StateBackend
    from ..engines.embedded.state import State
    from ..rules.watch import RulesWatcher
    from ..streams.build import build_pipeline

    if args.rules is None and not args.deliver:
        print("smsroute: rules replay needs --rules NEW_DIR (compare) or --deliver (re-route)", file=sys.stderr)
        return 2
    settings = load_settings(args.config, data_dir=args.data_dir, routes=args.routes)
    if not (settings.data_dir / "state.db").exists():
        print(f"smsroute: {settings.data_dir}: no state.db (is it the engine's --data-dir?)", file=sys.stderr)
        return 2
    state = State(settings.data_dir / "state.db")
    try:
        if args.rules is not None:
            rules = load(args.rules)
            if rules is None:
                return 1
            report = replay.compare(state, rules, args.since, args.until or time.time())
            print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else "\n".join(_replay_lines(report)))
        if args.deliver:
            if load(settings.routes) is None:
                return 1
            backend = StateBackend(state)
            pipeline = build_pipeline(settings, RulesWatcher(settings.routes), backend)
            rerouted, still = replay.reroute(state, pipeline, backend, time.time())
            print(f"{rerouted} unrouted message{'s' if rerouted != 1 else ''} routed again; {still} still unrouted")
    finally:
        state.close()
    return 0


def _replay_lines(report: dict[str, Any]) -> list[str]:
    out = [
        f"{report['messages']} messages replayed through rules {report['rules_version']}: "
        f"{report['changed']} would go elsewhere, {report['newly_unrouted']} newly unrouted"
    ]
    for move in report["moves"]:
        out.append(f"  {move['count']:>6}  {move['from']} -> {move['to']}")
        out.extend(
            f"          e.g. {example['id']} from {example['from']}: {example['text']!r}"
            for example in move["examples"]
        )
    out.append("by route (before -> after):")
    out.extend(f"  {route}: {counts['before']} -> {counts['after']}" for route, counts in report["routes"].items())
    return out
