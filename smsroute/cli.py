"""The ``smsroute`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from .config import ConfigError, Settings, load_settings
from .logs import setup_logging
from .models.message import InboundMessage
from .rules import RuleError, RuleSet, load_rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsroute", description="Inbound-SMS routing engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the engine: embedded (one process, SQLite), or the ingress on Kafka when [kafka] is configured"
    )
    _listen_options(serve)
    serve.add_argument("--data-dir", type=Path, help="where the log and state live (default ./data)")
    serve.add_argument("--routes", type=Path, help="routing rules file or directory (default routing_rules/)")
    serve.set_defaults(run=_serve)

    ingress = commands.add_parser(
        "ingress", help="run the Kafka engine's ingress: provider requests in, raw events published to Kafka"
    )
    _listen_options(ingress)
    ingress.set_defaults(run=_ingress)

    worker = commands.add_parser(
        "worker", help="run a Kafka engine worker: processors and sinks over the Kafka topics (needs [kafka])"
    )
    worker.add_argument("--config", type=Path, help="TOML configuration file (with a [kafka] section)")
    worker.add_argument("--data-dir", type=Path, help="where the worker keeps its RocksDB tables (default ./data)")
    worker.add_argument("--routes", type=Path, help="routing rules file or directory (default routing_rules/)")
    worker.add_argument("--metrics-port", type=int, help="port of GET /metrics (default 9108; 0: any free port)")
    worker.set_defaults(run=_worker)

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

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"smsroute: configuration error:\n{exc}", file=sys.stderr)
        return 2


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080)")


def _serve(args: argparse.Namespace) -> int:
    from .engines.embedded import engine as embedded
    from .providers import build_receivers

    settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir, routes=args.routes)
    if settings.kafka is not None:
        return _serve_ingress_on_kafka(settings)
    if not settings.routes.exists():
        raise ConfigError(f"routes: {settings.routes} does not exist")
    adapters = build_receivers(settings)
    setup_logging(settings.log_level)
    try:
        load_rules(settings.routes)  # refuse to start on invalid rules, whichever process will use them
    except RuleError as exc:
        _print_problems(settings.routes, exc)
        return 1
    _run(embedded.serve(settings, adapters))
    return 0


def _ingress(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, host=args.host, port=args.port)
    if settings.kafka is None:
        raise ConfigError(
            "kafka: not configured: `smsroute ingress` publishes to Kafka; give [kafka] bootstrap_servers "
            "in the configuration file or SMSROUTE_KAFKA__BOOTSTRAP_SERVERS (or run `smsroute serve`)"
        )
    return _serve_ingress_on_kafka(settings)


def _serve_ingress_on_kafka(settings: Settings) -> int:
    from .engines.kafka.ingress import serve_kafka
    from .providers import build_receivers

    assert settings.kafka is not None
    adapters = build_receivers(settings)
    setup_logging(settings.log_level)
    _run(serve_kafka(settings, adapters, settings.kafka))
    return 0


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the embedded engine's data directory")
    parser.add_argument("--kafka", action="store_true", help="the Kafka engine's dead letters (topic from --config)")
    parser.add_argument("--config", type=Path, help="TOML configuration file (with --kafka: its [kafka] section)")


def _worker(args: argparse.Namespace) -> int:
    from .engines.kafka.run import run
    from .rules.watch import RulesWatcher

    settings = load_settings(args.config, data_dir=args.data_dir, routes=args.routes)
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"metrics_port": args.metrics_port})})
    if settings.kafka is None:
        raise ConfigError("kafka: the worker needs a [kafka] section (at least bootstrap_servers)")
    if not settings.routes.exists():
        raise ConfigError(f"routes: {settings.routes} does not exist")
    setup_logging(settings.log_level)
    try:
        rules = RulesWatcher(settings.routes)
    except RuleError as exc:
        _print_problems(settings.routes, exc)
        return 1
    run(settings, rules)
    return 0


def _kafka_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if settings.kafka is None:
        raise ConfigError("kafka: --kafka needs a configuration with a [kafka] section")
    return settings


def _dead_letters_list(args: argparse.Namespace) -> int:
    if args.kafka:
        from .engines.kafka import deadletters

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
    from .engines.embedded.state import StateDB

    state = StateDB(data_dir / "state.db")
    try:
        letters = state.dead_letters(include_replayed=include_replayed)
        for letter in letters:
            letter.pop("payload")
            if letter["delivery_id"]:
                letter["attempts"] = state.attempts(letter["delivery_id"])
    finally:
        state.close()
    return letters


def _dead_letters_replay(args: argparse.Namespace) -> int:
    if args.kafka:
        from .engines.kafka import deadletters

        replayed = asyncio.run(deadletters.replay(_kafka_settings(args), args.ids or None))
        print(f"{replayed} deliver{'ies' if replayed != 1 else 'y'} sent again (the workers take them in turn)")
        return 0
    from .engines.embedded.state import StateDB

    try:
        ids = [int(letter_id) for letter_id in args.ids] or None
    except ValueError:
        print("smsroute: the embedded engine's dead letter ids are numbers", file=sys.stderr)
        return 2
    state = StateDB(args.data_dir / "state.db")
    try:
        replayed = state.replay_deliveries(ids)
    finally:
        state.close()
    print(f"{replayed} deliver{'ies' if replayed != 1 else 'y'} due again (a running engine picks them up within a second)")
    return 0


EXIT_UNROUTED = 3


def _load_rules(path: Path) -> RuleSet | None:
    """The rule set, or None after printing every problem to stderr."""
    try:
        return load_rules(path)
    except RuleError as exc:
        _print_problems(path, exc)
        return None


def _print_problems(path: Path, error: RuleError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    count = len(error.problems)
    print(f"{path}: {count} problem{'s' if count > 1 else ''}: rules not valid", file=sys.stderr)


def _rules_check(args: argparse.Namespace) -> int:
    rules = _load_rules(args.path)
    if rules is None:
        return 1
    aliased = f" (+{len(rules.aliases)} aliases)" if rules.aliases else ""
    counts = f"{len(rules.routes)} routes, {len(rules.keywords)} keywords{aliased}"
    print(f"{args.path}: ok: {counts}, version {rules.version}")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    rules = _load_rules(args.path)
    if rules is None:
        return 1
    message = InboundMessage(
        id="rules-test", provider=args.provider, source=args.source, sender=args.sender,
        recipient=args.recipient, text=args.text, received_at=args.at or datetime.now(UTC),
    )
    explanation = rules.explain(message)
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False, indent=2))
    else:
        print(f"message: {args.text!r} from {args.sender or '-'} to {args.recipient or '-'} "
              f"provider {args.provider or '-'} source {args.source or '-'} at {message.received_at.isoformat()}")
        print("\n".join(explanation.lines()))
    return 0 if explanation.routing.routes else EXIT_UNROUTED


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no UTC offset (e.g. 2026-11-21T10:00:00+01:00)")
    return moment


def _run(main: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        asyncio.run(main)  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)  # type: ignore[arg-type]
