"""The ``smsroute`` command line: one module per group of commands, each adding its parsers."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError
from . import config, dead_letters, engines, messages, providers, rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsroute", description="Inbound-SMS routing engine.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (engines, rules, messages, providers, dead_letters, config):
        group.add(commands)
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except ConfigError as exc:
        print(f"smsroute: configuration error:\n{exc}", file=sys.stderr)
        return 2
