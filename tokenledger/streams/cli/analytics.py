"""Reading what ClickHouse holds: the query library, the report, Grafana files and
ClickHouse access control."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from tokenledger.streams.cli.base import Add
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.redact import redact_dsn
from tokenledger.streams.times import FORMS, parse_time


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.analytics import queries
    from tokenledger.streams.sink.client import reading_client

    if args.list or not args.name:
        for q in queries.library().values():
            params = " ".join(f"{p.name}={p.default or '?'}" for p in q.params)
            print(f"{q.name:28} {q.answers}" + (f"  [{params}]" if params else ""))
        return 0
    query = queries.get(args.name)
    given = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--param {item!r} needs the form name=value")
        given[key] = value
    bound = query.bind(given)
    client, _ = reading_client(settings)
    columns, rows = queries.run(client, query, bound)
    _print_table(columns, rows, args.format)
    return 0


def _print_table(columns: list[str], rows: list[tuple[object, ...]], fmt: str) -> None:
    import csv
    import json
    from decimal import Decimal

    rows = [tuple(format(v, "f") if isinstance(v, Decimal) else v for v in r) for r in rows]
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells = [[str(v) for v in r] for r in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for r in cells:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        print(f"({len(rows)} rows)")


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Write the HTML report (and print the summary) from what ClickHouse holds."""
    from tokenledger.streams.analytics import report, report_html
    from tokenledger.streams.sink.client import reading_client

    now = datetime.now(UTC)

    def when(name: str, raw: str) -> datetime:
        try:
            return parse_time(raw, now)
        except ValueError:
            raise UserError(f"--{name} {raw!r} is not a time; use {FORMS}") from None

    begin, until = when("start", args.start), when("end", args.end)
    if begin >= until:
        raise UserError("--start must be before --end")
    out = Path(args.out) if args.out else settings.home / "report.html"
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file, e.g. --out {out / 'report.html'}")
    client, _ = reading_client(settings)
    data = report.collect(client, begin, until, bucket_s=args.bucket)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html.render_html(data))
    print(report.render_text(data))
    print(f"Report: {out}")
    return 0


def cmd_grafana(args: argparse.Namespace, settings: Settings) -> int:
    from tokenledger.streams.analytics import grafana

    if args.check:
        drifted = grafana.drift()
        if drifted:
            print(
                f"generated Grafana files differ: {', '.join(drifted)}; run "
                "`tokenledger grafana export`",
                file=sys.stderr,
            )
            return 1
        print("Grafana dashboards and alert rules match the query library")
        return 0
    written = grafana.export()
    print(f"wrote {len(written)} Grafana files under {grafana.GRAFANA_DIR}")
    return 0


def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    """Grant a tenant's read-only analyst role, the platform role, or make Grafana's
    read-only user, on a ClickHouse server."""
    import os

    from tokenledger.streams.analytics import access
    from tokenledger.streams.config import GRAFANA_PASSWORD_ENV
    from tokenledger.streams.sink.client import get_client

    if args.action == "grant" and not args.tenant:
        raise UserError("access grant needs --tenant (the platform role: access platform)")
    password = None
    if args.action == "grafana":
        password = os.environ.get(GRAFANA_PASSWORD_ENV) or ""
        if not password:
            raise UserError(
                f"access grafana needs {GRAFANA_PASSWORD_ENV}: the password Grafana's "
                "datasource logs in with"
            )
    name = {"grant": "tenant_analyst"}.get(args.action, args.action)
    tenant = args.tenant if args.action == "grant" else None
    statements = access.render(
        name, database=settings.clickhouse_database, tenant=tenant, password=password
    )
    if args.print:
        print(";\n".join(statements) + ";")
        return 0
    client = get_client(settings.clickhouse, settings.clickhouse_database)
    if settings.clickhouse.startswith("chdb://"):
        access.parse_only(client, statements)
        print(
            f"the embedded engine has no access control: {len(statements)} statements parsed "
            "and skipped; apply them on a ClickHouse server (--print shows them)"
        )
        return 0
    access.apply(client, statements)
    who = {
        "grant": f"role {access.role_for(tenant or '')} (tenant {tenant})",
        "grafana": f"read-only user {access.GRAFANA_USER}",
    }.get(args.action, "role tokenledger_platform")
    print(f"{who}: {len(statements)} statements applied on {redact_dsn(settings.clickhouse)}")
    return 0


def register(add: Add) -> None:
    p = add("query", cmd_query, "run an analyst query from clickhouse/queries")
    p.add_argument("name", nargs="?")
    p.add_argument("--list", action="store_true", help="list the queries and what they answer")
    p.add_argument("--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p = add("report", cmd_report, "write the HTML cost report from ClickHouse")
    p.add_argument("--start", default="-7d", help="ISO 8601, now, today, or relative as -12h (-7d)")
    p.add_argument("--end", default="now", help="(now)")
    p.add_argument("--bucket", type=int, default=3600, help="seconds per time bucket (3600)")
    p.add_argument("--out", help="default: $TOKENLEDGER_HOME/report.html")
    p = add("grafana", cmd_grafana, "generate Grafana dashboards and alerts from the library")
    p.add_argument("action", choices=["export"])
    p.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    p = add(
        "access",
        cmd_access,
        "ClickHouse roles: a tenant's read-only analyst, the platform, Grafana's reader",
    )
    p.add_argument(
        "action",
        choices=["grant", "platform", "grafana"],
        help="grafana: the read-only user Grafana's datasource logs in as, with "
        "TOKENLEDGER_GRAFANA_PASSWORD",
    )
    p.add_argument("--tenant")
    p.add_argument("--print", action="store_true", help="print the SQL instead of applying it")
