"""``smsroute serve``, ``ingress`` and ``worker``: the engines' processes."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..config import ConfigError, Settings, load_settings
from ..engines.base import Service, serve
from ..logs import setup_logging
from ..providers import build_receivers
from ..rules import RuleError
from ..rules.watch import RulesWatcher
from ..sinks.outbound import provider_settings
from .rules import load, print_problems


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the engine: embedded (one process, SQLite), or the ingress on Kafka when [kafka] is configured",
    )
    _listen_options(parser)
    parser.add_argument("--data-dir", type=Path, help="where the log and state live (default ./data)")
    parser.add_argument("--routes", type=Path, help="routing rules file or directory (default routing_rules/)")
    parser.set_defaults(run=_serve)

    parser = commands.add_parser(
        "ingress", help="run the Kafka engine's ingress: provider requests in, raw events published to Kafka"
    )
    _listen_options(parser)
    parser.set_defaults(run=_ingress)

    parser = commands.add_parser(
        "worker", help="run a Kafka engine worker: processors and sinks over the Kafka topics (needs [kafka])"
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file (with a [kafka] section)")
    parser.add_argument("--data-dir", type=Path, help="where the worker keeps its RocksDB tables (default ./data)")
    parser.add_argument("--routes", type=Path, help="routing rules file or directory (default routing_rules/)")
    parser.add_argument("--metrics-port", type=int, help="port of GET /metrics (default 9108; 0: any free port)")
    parser.set_defaults(run=_worker)


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080)")


def _serve(args: argparse.Namespace) -> int:
    from ..engines.embedded.engine import Engine, processing_half

    settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir, routes=args.routes)
    if settings.kafka is not None:
        return _serve_ingress_on_kafka(settings)
    receivers = build_receivers(settings)
    provider_settings(settings.sms_reply)  # checked here, before either process starts on them
    _require_routes(settings)
    if load(settings.routes) is None:  # refused here, before either process starts on them
        return 1
    setup_logging(settings.log_level)
    return _run(Engine(settings, receivers, processing_half(settings)))


def _ingress(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, host=args.host, port=args.port)
    settings.require_kafka("`smsroute ingress` (it publishes to Kafka; `smsroute serve` runs the embedded engine)")
    return _serve_ingress_on_kafka(settings)


def _serve_ingress_on_kafka(settings: Settings) -> int:
    from ..engines.kafka.ingress import KafkaIngress

    kafka = settings.require_kafka("the Kafka ingress")
    receivers = build_receivers(settings)
    setup_logging(settings.log_level)
    return _run(KafkaIngress(settings, receivers, kafka))


def _worker(args: argparse.Namespace) -> int:
    from ..engines.kafka.run import run

    settings = load_settings(args.config, data_dir=args.data_dir, routes=args.routes)
    if args.metrics_port is not None:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"metrics_port": args.metrics_port})}
        )
    settings.require_kafka("`smsroute worker`")
    provider_settings(settings.sms_reply)
    rules = _rules(settings)
    if rules is None:
        return 1
    setup_logging(settings.log_level)
    run(settings, rules)
    return 0


def _require_routes(settings: Settings) -> None:
    if not settings.routes.exists():
        raise ConfigError(f"routes: {settings.routes} does not exist")


def _rules(settings: Settings) -> RulesWatcher | None:
    """The rules in force, watched for changes; None after printing every problem to stderr."""
    _require_routes(settings)
    try:
        return RulesWatcher(settings.routes)
    except RuleError as exc:
        print_problems(settings.routes, exc)
        return None


def _run(service: Service) -> int:
    """Serve until SIGINT or SIGTERM, on uvloop where it is built."""
    main: Coroutine[Any, Any, None] = serve(service)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        asyncio.run(main)
        return 0
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
    return 0
