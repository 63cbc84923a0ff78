"""``smsroute messages search`` and ``trace``, and ``smsroute erase``: the embedded engine's messages
for operators (a running engine may go on meanwhile)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..engines.embedded.state.messages import OUTCOMES, Query

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    messages = commands.add_parser("messages", help="search the messages the engine kept, or trace one")
    message_commands = messages.add_subparsers(dest="messages_command", required=True)
    search = message_commands.add_parser("search", help="messages by number, text, route, provider, time, outcome")
    _data_dir(search)
    search.add_argument("--number", help="sender or recipient, as stored (E.164: +39...)")
    search.add_argument("--text", help="text contained in the message (any case)")
    search.add_argument("--route", help="a route the message hit")
    search.add_argument("--provider", help="provider type, e.g. vonage")
    search.add_argument("--since", type=moment, help="received since: 24h, 30m, 7d ago, or ISO 8601 with an offset")
    search.add_argument("--until", type=moment, help="received before: as --since")
    search.add_argument("--outcome", choices=OUTCOMES, help="routed, unrouted, or a state one of its deliveries is in")
    search.add_argument("--limit", type=int, default=100, help="at most this many, newest first (default 100)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(run=_search)
    trace = message_commands.add_parser(
        "trace", help="one message: raw events, dedupe and stitch, route verdicts, deliveries and attempts"
    )
    trace.add_argument("id", help="the message id (messages search shows it)")
    _data_dir(trace)
    trace.add_argument("--routes", type=Path, default=Path("routing_rules"), help="the rules that explain verdicts")
    trace.add_argument("--json", action="store_true", help="print JSON")
    trace.set_defaults(run=_trace)
    erase = commands.add_parser(
        "erase", help="erase every stored trace of a number (data-protection requests); its opt-out still holds"
    )
    erase.add_argument("number", help="the number, e.g. +393331234567")
    _data_dir(erase)
    erase.set_defaults(run=_erase)


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the embedded engine's data directory")


def moment(value: str) -> float:
    """A duration ago (``24h``, ``30m``, ``7d``, ``90s``) or an ISO 8601 time with an offset, as epoch seconds."""
    if found := _DURATION.fullmatch(value):
        return time.time() - float(found[1]) * _UNITS[found[2]]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a duration (24h) nor an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset (e.g. 2026-11-21T10:00:00+01:00)")
    return parsed.timestamp()


def _state(data_dir: Path) -> Any:
    from ..engines.embedded.state import State

    if not (data_dir / "state.db").exists():
        print(f"smsroute: {data_dir}: no state.db (is it the engine's --data-dir?)", file=sys.stderr)
        return None
    return State(data_dir / "state.db")


def _search(args: argparse.Namespace) -> int:
    state = _state(args.data_dir)
    if state is None:
        return 2
    query = Query(args.number, args.text, args.route, args.provider, args.since, args.until, args.outcome, args.limit)
    try:
        found = state.messages.search(query)
    finally:
        state.close()
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return 0
    for row in found:
        when = datetime.fromtimestamp(row["received_at"], UTC).isoformat(timespec="seconds")
        routes = ",".join(row["routes"]) or "-"
        text = row["text"] if len(row["text"]) <= 40 else row["text"][:39] + "…"
        print(
            f"{row['id']}  {when}  {row['from']:<16} {row['to']:<14} {row['provider']:<13} {routes:<16} "
            f"{row['outcome']:<10} {text!r}"
        )
    print(f"{len(found)} message{'s' if len(found) != 1 else ''}")
    return 0


def _trace(args: argparse.Namespace) -> int:
    from ..engines.embedded.tracing import trace
    from ..rules import RuleError, load_rules

    state = _state(args.data_dir)
    if state is None:
        return 2
    try:
        rules = load_rules(args.routes)
    except RuleError:
        rules = None  # the trace still says where it went; only the verdicts' reasons are missing
    try:
        found = trace(state, args.data_dir / "log.db", rules, args.id)
    finally:
        state.close()
    if found is None:
        print(f"smsroute: no message {args.id} (never received, erased, or past retention)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        print("\n".join(lines(found)))
    return 0


def lines(found: dict[str, Any]) -> list[str]:
    """A trace for people: one section per stage."""
    message = found["message"]
    out = [
        f"message {message['id']}: {message['text']!r}",
        f"  from {message['from']} to {message['to']} via {message['provider']} ({message['source']})"
        f" received {message['received_at']}, {message['parts']} part(s), complete: {message['complete']}",
        "raw events:",
    ]
    for event in found["events"]:
        raw = event["raw"]
        seen = f" {raw['method']} {raw['path']} from {raw['remote_addr']}: {raw['body']!r}" if raw else " (pruned)"
        out.append(f"  offset {event['offset']}: {event['explained']};{seen}")
    out.append(f"routed: {', '.join(found['routes']) or 'unrouted'} (rules {message['rules_version']})")
    if explanation := found.get("explanation"):
        same = "" if explanation["same_rules"] else " (rules changed since: verdicts as the rules are now)"
        out.append(f"verdicts{same}:")
        for route in explanation["routes"]:
            checks = "; ".join(
                f"{'yes' if check['held'] else 'NO'} {check['criterion']}: {check['actual']}, wanted {check['wanted']}"
                for check in route["checks"]
            )
            out.append(f"  {route['name']}: {route['status']}" + (f" ({checks})" if checks else ""))
    out.append("deliveries:")
    for delivery in found["deliveries"]:
        out.append(f"  {delivery['route']} {delivery['sink']} -> {delivery['destination']}: {delivery['state']}")
        for attempt in delivery["attempt_log"]:
            status = attempt["status"] if attempt["status"] is not None else "-"
            out.append(f"    attempt {attempt['attempt']}: {attempt['outcome']} {status} {attempt['error']}")
    for letter in found["dead_letters"]:
        out.append(f"dead letter {letter['id']} ({letter['stage']}): {letter['reason']}")
    return out


def _erase(args: argparse.Namespace) -> int:
    from ..engines.embedded.erasure import erase

    if not (args.data_dir / "state.db").exists():
        print(f"smsroute: {args.data_dir}: no state.db (is it the engine's --data-dir?)", file=sys.stderr)
        return 2
    try:
        deleted = erase(args.data_dir, args.number)
    except ValueError as exc:
        print(f"smsroute: {exc}", file=sys.stderr)
        return 2
    print(f"{args.number} erased: " + ", ".join(f"{count} {table}" for table, count in deleted.items() if count))
    return 0
