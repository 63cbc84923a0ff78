"""``smsroute dead-letters list`` and ``replay``, on either engine."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings, load_settings


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser("dead-letters", help="list dead letters, or replay failed deliveries")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    listing = dead_commands.add_parser("list", help="dead letters with their reasons and every attempt")
    _engine_options(listing)
    listing.add_argument("--all", action="store_true", help="include dead letters already replayed")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_dead_letters_list)
    replay = dead_commands.add_parser(
        "replay", help="make dead deliveries due again with a fresh set of retries (all, or the given ids)"
    )
    replay.add_argument("ids", nargs="*", help="dead letter ids (default: every delivery dead letter)")
    _engine_options(replay)
    replay.set_defaults(run=_dead_letters_replay)


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the embedded engine's data directory")
    parser.add_argument("--kafka", action="store_true", help="the Kafka engine's dead letters (topic from --config)")
    parser.add_argument("--config", type=Path, help="TOML configuration file (with --kafka: its [kafka] section)")


def _kafka_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    settings.require_kafka("--kafka")
    return settings


def _dead_letters_list(args: argparse.Namespace) -> int:
    if args.kafka:
        from ..engines.kafka import deadletters

        letters = [
            deadletters.describe(letter)
            for letter in asyncio.run(deadletters.latest(_kafka_settings(args)))
            if args.all or letter.replayed_at is None
        ]
    else:
        letters = _embedded_dead_letters(args.data_dir, args.all)
    if args.json:
        print(json.dumps(letters, indent=2))
        return 0
    for letter in letters:
        when = datetime.fromtimestamp(letter["created_at"], UTC).isoformat(timespec="seconds")
        replayed = " (replayed)" if letter["replayed_at"] else ""
        print(f"{letter['id']:>6}  {when}  {letter['stage']:<9} {letter['reason']}{replayed}")
        for attempt in letter.get("attempts", ()):
            status = attempt["status"] if attempt["status"] is not None else "-"
            print(f"        attempt {attempt['attempt']}: {attempt['outcome']} {status} {attempt['error']}")
    print(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}")
    return 0


def _embedded_dead_letters(data_dir: Path, include_replayed: bool) -> list[dict[str, object]]:
    from ..engines.embedded.state import State

    state = State(data_dir / "state.db")
    try:
        letters = state.dead_letters.all(include_replayed=include_replayed)
        for letter in letters:
            letter.pop("payload")
            if letter["delivery_id"]:
                letter["attempts"] = state.deliveries.attempts(letter["delivery_id"])
    finally:
        state.close()
    return letters


def _dead_letters_replay(args: argparse.Namespace) -> int:
    if args.kafka:
        from ..engines.kafka import deadletters

        replayed = asyncio.run(deadletters.replay(_kafka_settings(args), args.ids or None))
        print(f"{replayed} deliver{'ies' if replayed != 1 else 'y'} sent again (the workers take them in turn)")
        return 0
    from ..engines.embedded.state import State

    try:
        ids = [int(letter_id) for letter_id in args.ids] or None
    except ValueError:
        print("smsroute: the embedded engine's dead letter ids are numbers", file=sys.stderr)
        return 2
    state = State(args.data_dir / "state.db")
    try:
        with state.transaction():
            replayed = state.dead_letters.replay_deliveries(ids)
    finally:
        state.close()
    print(
        f"{replayed} deliver{'ies' if replayed != 1 else 'y'} due again (a running engine picks them up within a second)"
    )
    return 0
