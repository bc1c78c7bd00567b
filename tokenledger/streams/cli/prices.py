"""Prices: which source prices a model and why, the operator's file, genai-prices upgrades,
and reconciling the ledger with the providers' own cost reports."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tokenledger.streams.cli.base import Add
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.times import parse_time

if TYPE_CHECKING:
    from tokenledger.contract.price_book import PriceBook


def _book(args: argparse.Namespace) -> PriceBook:
    from tokenledger.contract.price_book import load_price_book
    from tokenledger.contract.price_file import PriceFileError

    try:
        return load_price_book(getattr(args, "file", None))
    except PriceFileError as exc:
        raise UserError(str(exc)) from None


def _at(text: str | None) -> datetime:
    try:
        return parse_time(text or "now", datetime.now(UTC))
    except ValueError:
        raise UserError(f"--at {text!r} is not a date; write e.g. 2025-06-01") from None


def cmd_prices(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.contract.price_book import CallContext
    from tokenledger.streams.admin import prices

    if args.action == "diff":
        return _diff(args)
    book = _book(args)
    at = _at(args.at)
    if args.action == "check":
        print(prices.check(book))
    elif args.action == "list":
        for row in prices.list_rows(book, at, args.provider):
            print(row)
    else:
        if not args.model:
            raise UserError("prices show needs a MODEL, e.g. `tokenledger prices show gpt-4o`")
        context = CallContext(batch=args.batch, service_tier=args.service_tier or "")
        lines = prices.show(book, args.provider or "", args.model, at, context)
        print("\n".join(lines))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from tokenledger.contract.price_source import PriceSource
    from tokenledger.streams.admin import prices

    if not args.model:
        raise UserError(
            "prices diff needs a genai-prices data file (data.json of the release to compare with)"
        )
    try:
        other = PriceSource(prices.load_snapshot(Path(args.model)))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    installed = prices.installed_source()
    changes = prices.diff(installed, other, _at(args.at))
    for change in changes:
        print(f"{change.kind:8} {change.model}  {change.detail}")
    counts = {k: sum(c.kind == k for c in changes) for k in ("added", "removed", "changed")}
    print(
        f"moving from {installed.version} to {args.model}: {counts['added']} added, "
        f"{counts['removed']} removed, {counts['changed']} changed"
    )
    return 0


def register(add: Add) -> None:
    p = add("prices", cmd_prices, "list, show, check or diff the prices tokenledger applies")
    p.add_argument(
        "action",
        choices=["list", "show", "check", "diff"],
        help="show MODEL: which source prices it and why; diff DATA_JSON: what a "
        "genai-prices upgrade to that data changes",
    )
    p.add_argument("model", nargs="?", help="show: the model as events name it; diff: a file")
    p.add_argument("--provider", help="the event's provider (openai, anthropic, bedrock, ...)")
    p.add_argument("--at", help="the date prices are read at (default: now), e.g. 2025-06-01")
    p.add_argument("--batch", action="store_true", help="show: batch processing prices")
    p.add_argument("--service-tier", help="show: flex, priority, ...")
    p.add_argument("--file", help="the price file (default: TOKENLEDGER_PRICES or bundled)")
    register_reconcile(add)


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.analytics import queries, reconcile
    from tokenledger.streams.analytics.provider_reports import ReportError, read_report
    from tokenledger.streams.analytics.report import Table, cells, fmt_table
    from tokenledger.streams.sink import migrations
    from tokenledger.streams.sink.client import get_client

    rows = []
    for name in args.files:
        try:
            read = read_report(args.provider, Path(name))
        except ReportError as exc:
            raise UserError(str(exc)) from None
        rows.append((name, read))
    book = _book(args)
    client = get_client(settings.clickhouse, settings.clickhouse_database)
    migrations.migrate(client)
    for name, read in rows:
        reconcile.store(client, read, Path(name).name)
        kinds = sorted({r.report for r in read})
        print(f"stored {len(read)} {args.provider} {'/'.join(kinds)} rows from {name}")
    reconcile.refresh_model_keys(client, book)
    days = [r.day for _, read in rows for r in read]
    query = queries.get("reconciliation")
    bound = query.bind(
        {"start": min(days).isoformat(), "end": max(days).isoformat(), "provider": args.provider}
    )
    columns, table = queries.run(client, query, bound)
    print(fmt_table(*cells("reconciliation", Table(columns, table))))
    return 0


def register_reconcile(add: Add) -> None:
    p = add(
        "reconcile", cmd_reconcile, "compare the ledger with a provider's own cost or usage report"
    )
    p.add_argument("--provider", required=True, choices=["openai", "anthropic"])
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="OpenAI Costs / Usage API pages, Anthropic cost / usage report pages "
        "(JSON, a list of pages, or one page per line)",
    )
    p.add_argument("--file", help="the price file (default: TOKENLEDGER_PRICES or bundled)")
