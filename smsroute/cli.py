"""The ``smsroute`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .config import ConfigError, load_settings
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsroute", description="Inbound-SMS routing engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the embedded engine (ingress and log in one process)")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--data-dir", type=Path, help="where the log and state live (default ./data)")
    serve.add_argument("--routes", type=Path, help="routing rules file or directory (default routing_rules/)")
    serve.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"smsroute: configuration error:\n{exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from . import embedded
    from .ingress.providers import build_adapters

    settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir, routes=args.routes)
    if not settings.routes.exists():
        raise ConfigError(f"routes: {settings.routes} does not exist")
    adapters = build_adapters(settings)
    setup_logging(settings.log_level)
    _run(embedded.serve(settings, adapters))
    return 0


def _run(main: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        asyncio.run(main)  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)  # type: ignore[arg-type]
