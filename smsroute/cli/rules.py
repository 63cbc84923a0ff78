"""``smsroute rules check`` and ``rules test``: what rule authors ask before they deploy."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..models.message import InboundMessage
from ..rules import RuleError, RuleSet, load_rules

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
