"""The `tokenledger` command line.

Exit codes: 0 done; 1 `kafka status` found no broker / `schemas export --check` found drift;
2 a usage or input mistake; 3 a service (Kafka, ClickHouse) is unavailable. Every error is
one line on stderr saying what is wrong and how to fix it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tokenledger.streams.cli import (
    admin,
    analytics,
    demo,
    edge,
    local,
    prices,
    retry_budgets,
    services,
)
from tokenledger.streams.cli.base import Handler, Parser
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError, from_exception
from tokenledger.streams.redact import RedactingFilter, dsn_secrets, scrub

GROUPS = (local, admin, retry_budgets, prices, services, edge, analytics, demo)
"""Command modules in the order `tokenledger --help` lists them."""
SERVICES = {services.__name__, edge.__name__}
"""Modules of the long-running commands (their log lines carry the time)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tokenledger", description="LLM cost control on Kafka and ClickHouse.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    for group in GROUPS:
        group.register(add)
    return parser


def _configure_logging(quiet: bool, service: bool, secrets: tuple[str, ...] = ()) -> None:
    """Our progress lines on stderr; libraries' own log lines (retries, driver errors) stay
    out of the terminal: failures reach the user as one error line instead. A long-running
    stage (worker, sink, notifier) stamps each line with the time, for its operators. No
    line carries a secret (the ClickHouse DSN's password)."""
    logging.getLogger().addHandler(logging.NullHandler())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s" if service else "%(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    for name in ("tokenledger",):
        ours = logging.getLogger(name)
        ours.handlers[:] = [handler]
        ours.setLevel(logging.WARNING if quiet else logging.INFO)
        ours.propagate = False
    # librdkafka's transient warnings (a coordinator still loading, a retry) are not news
    logging.getLogger("tokenledger.kafka").setLevel(logging.ERROR)


def commands() -> list[str]:
    """The subcommand names, e.g. for checking what docker-compose runs."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    secrets: tuple[str, ...] = ()
    try:
        args = parser.parse_args(argv)
        settings = Settings.from_env()
        secrets = dsn_secrets(settings.clickhouse)
        _configure_logging(args.quiet, args.handler.__module__ in SERVICES, secrets)
        for option in ("partitions", "replication_factor", "max_batch", "max_rows"):
            value = getattr(args, option, None)
            if value is not None and value < 1:
                raise UserError(f"--{option.replace('_', '-')} must be at least 1")
        code: int = args.handler(args, settings)
        return code
    except KeyboardInterrupt:
        print("tokenledger: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        error = exc if isinstance(exc, UserError) else from_exception(exc)
        if error is None:
            raise  # a bug: its traceback is what a report needs
        print(f"tokenledger: {' '.join(scrub(str(error), secrets).splitlines())}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
