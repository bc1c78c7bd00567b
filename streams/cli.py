"""The `tokenledger` command line.

Exit codes: 0 done; 1 `kafka status` found no broker / `schemas export --check` found drift;
2 a usage or input mistake; 3 a service (Kafka, ClickHouse) is unavailable. Every error is
one line on stderr saying what is wrong and how to fix it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

from streams.config import Settings
from streams.errors import UserError
from streams.kafka_local import LocalKafka

log = logging.getLogger("tokenledger")

Handler = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _local_kafka(settings: Settings) -> LocalKafka:
    return LocalKafka(
        settings.home / "kafka",
        settings.cache,
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
    )


def _require_local(settings: Settings) -> None:
    if not settings.kafka_is_local:
        raise UserError(
            f"TOKENLEDGER_KAFKA={settings.kafka} points at an external broker; "
            "`tokenledger kafka` manages only the local one (unset TOKENLEDGER_KAFKA)"
        )


# -- commands ----------------------------------------------------------------------------


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from streams import setup_tiktoken

    if args.only in (None, "tiktoken"):
        where = setup_tiktoken.install(settings.cache / "tiktoken", progress=log.info)
        print(f"tiktoken ranks: {where}")
    if args.only in (None, "kafka"):
        local = _local_kafka(settings)
        print(f"kafka jars: {local.fetch(progress=log.info)}")
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    _require_local(settings)
    local = _local_kafka(settings)
    if args.action == "start":
        started = local.start(progress=log.info)
        pid = local.status().pid
        verb = "started" if started else "already running"
        print(f"kafka {verb}: {local.bootstrap} (pid {pid}, logs {local.log_file})")
    elif args.action == "stop":
        print("kafka stopped" if local.stop() else "kafka is not running")
    elif args.action == "fetch":
        print(f"kafka jars: {local.fetch(progress=log.info)}")
    else:
        status = local.status()
        if not status.running:
            print(f"kafka is not running (would listen on {local.bootstrap})")
            return 1
        print(f"kafka running: {status.bootstrap} (pid {status.pid}, data {local.data_dir})")
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka_admin import create_topics, describe_topics
    from streams.topics import TOPICS, TopicSpec

    specs = [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in TOPICS]
    if args.action == "create":
        partitions = args.partitions or settings.partitions
        rf = args.replication_factor or settings.replication_factor
        for name, outcome in create_topics(settings.kafka, specs, partitions, rf).items():
            print(f"{outcome:8} {name}")
        return 0
    described = describe_topics(settings.kafka, [t.name for t in specs])
    for spec in specs:
        info = described.get(spec.name)
        if info is None:
            print(f"{spec.name}  missing (run `tokenledger topics create`)")
            continue
        extras = " ".join(f"{k}={v}" for k, v in sorted(info.items()) if k != "partitions")
        print(f"{spec.name}  partitions={info['partitions']} {extras}".rstrip())
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from streams import migrations
    from streams.clickhouse import get_client

    database = args.database or settings.clickhouse_database
    client = get_client(settings.clickhouse, database, create=True)
    files = migrations.discover()
    if args.status:
        done = migrations.applied(client)
        for m in files:
            print(f"{'applied' if m.version in done else 'pending':8} {m.path.name}")
        return 0
    now = migrations.migrate(client, files, progress=log.info)
    print(
        f"{len(now)} migration(s) applied, {len(files) - len(now)} already applied "
        f"(database {database} at {settings.clickhouse})"
    )
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from schemas import export

    out = Path(args.out) if args.out else export.JSON_DIR
    if args.check:
        drifted = export.drift(out)
        if drifted:
            print(
                f"JSON Schema in {out} differs from the models: {', '.join(drifted)}; "
                "run `tokenledger schemas export`",
                file=sys.stderr,
            )
            return 1
        print(f"JSON Schema in {out} matches the models")
        return 0
    written = export.export(out)
    print(f"wrote {len(written)} schema files to {out}")
    return 0


def cmd_prices(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.pricing import PriceTableError, load_price_table

    try:
        table = load_price_table(args.file)
    except PriceTableError as exc:
        raise UserError(str(exc)) from None
    if args.action == "check":
        print(f"price table {table.version}: {len(table.models())} model names, valid")
        return 0
    for model in table.models():
        print(model)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the stream worker until SIGTERM or Ctrl-C; it finishes its batch and leaves."""
    from streams import worker

    if not 0 < args.dedup_hours <= 24 * 30:
        raise UserError("--dedup-hours must be above 0 and at most 720 (30 days)")
    engine = worker.build(settings, args.instance, max_batch=args.max_batch,
                          dedup_retention=timedelta(hours=args.dedup_hours))  # fmt: skip
    engine.install_signal_handlers()
    engine.run()
    counters = engine.counters()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "no events"
    print(f"worker {engine.config.instance_id} stopped after {engine.records} records: {summary}")
    return 0


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver alerts to the receivers configured in the environment until SIGTERM/Ctrl-C."""
    import signal as signals

    from streams.kafka_admin import require_broker
    from streams.notifier import Notifier
    from streams.receivers import receivers_from_env

    receivers = receivers_from_env()
    notifier = Notifier(settings, receivers, retries=args.retries, backoff_s=args.backoff)
    require_broker(settings.kafka)
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: notifier.stop())
    names = ", ".join(r.name for r in receivers)
    print(f"notifier delivering alerts to {names}", file=sys.stderr)
    notifier.run()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(notifier.counters.items())) or "no alerts"
    print(f"notifier stopped: {summary}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole pipeline on a simulated day, then print the summary and the report."""
    from streams import demo

    if args.requests_per_day < 100 or args.seconds <= 0:
        raise UserError("--requests-per-day must be at least 100 and --seconds above 0")
    plan = demo.DemoPlan(requests_per_day=args.requests_per_day, seconds=args.seconds)
    result = demo.run(settings, plan)
    print(result.summary)
    blocked = ", ".join(f"{t}: {n} requests ({result.block_reasons[t]})"
                        for t, n in sorted(result.blocked.items())) or "none"  # fmt: skip
    print(f"Refused at the gateway (BudgetGuard): {blocked}")
    paged = [f"{a['status']} {a['detector']} on {a['scope']}" for a in result.alerts]
    print(f"Paged to on-call ({settings.home / 'demo' / 'alerts.jsonl'}): "
          f"{'; '.join(paged) or 'nothing'}")  # fmt: skip
    print(f"\nReport: {result.report}")
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Write the HTML report (and print the summary) from what ClickHouse holds."""
    from streams import queries, report
    from streams.clickhouse import get_client

    now = datetime.now(UTC)

    def when(name: str, raw: str) -> datetime:
        try:
            value: datetime = queries.parse_value(
                queries.Param(name, "DateTime64(3)", raw), raw, now
            )
        except UserError:
            raise UserError(f"--{name} {raw!r} is not a time; use ISO 8601, now, today or "
                            f"-7d / -12h") from None  # fmt: skip
        return value

    begin, until = when("start", args.start), when("end", args.end)
    if begin >= until:
        raise UserError("--start must be before --end")
    client = get_client(settings.clickhouse, settings.clickhouse_database)
    data = report.collect(client, begin, until, bucket_s=args.bucket)
    out = Path(args.out) if args.out else settings.home / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render_html(data))
    print(report.render_text(data))
    print(f"Report: {out}")
    return 0


def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    """Grant a tenant's read-only analyst role, or the platform role, on a ClickHouse server."""
    from streams import access
    from streams.clickhouse import get_client

    if args.action == "grant" and not args.tenant:
        raise UserError("access grant needs --tenant (the platform role: access platform)")
    name, tenant = ("tenant_analyst", args.tenant) if args.action == "grant" else ("platform", None)
    statements = access.render(name, database=settings.clickhouse_database, tenant=tenant)
    if args.print:
        print(";\n".join(statements) + ";")
        return 0
    client = get_client(settings.clickhouse, settings.clickhouse_database)
    if settings.clickhouse.startswith("chdb://"):
        access.parse_only(client, statements)
        print(f"the embedded engine has no access control: {len(statements)} statements parsed "
              "and skipped; apply them on a ClickHouse server (--print shows them)")  # fmt: skip
        return 0
    access.apply(client, statements)
    who = (
        f"role {access.role_for(tenant)} (tenant {tenant})"
        if tenant
        else "role tokenledger_platform"
    )
    print(f"{who}: {len(statements)} statements applied on {settings.clickhouse}")
    return 0


def cmd_budget(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.messages import budget_scope
    from streams import budget_admin
    from streams.kafka_admin import require_broker

    require_broker(settings.kafka)
    if args.action == "list":
        budgets = budget_admin.current(settings)
        for budget in budgets:
            print(budget_admin.describe(budget))
        if not budgets:
            print("no budgets (set one with `tokenledger budget set`)")
        return 0
    if not args.tenant:
        raise UserError(f"budget {args.action} needs --tenant")
    if args.action == "rm":
        scope = budget_scope(args.tenant, args.feature)
        if not budget_admin.remove(settings, scope):
            raise UserError(f"{scope} has no budget (see `tokenledger budget list`)")
        print(f"removed the budget of {scope}")
        return 0
    if args.limit_usd is None:
        raise UserError("budget set needs --limit-usd, e.g. --limit-usd 50")
    budget = budget_admin.make_budget(args.tenant, args.feature, args.limit_usd, args.window,
                                      args.tz, args.warn)  # fmt: skip
    budget_admin.put(settings, budget)
    print(f"set {budget_admin.describe(budget)}")
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ClickHouse sink until SIGTERM or Ctrl-C (it owns an embedded data path)."""
    import signal as signals

    from streams import migrations
    from streams.clickhouse import get_client
    from streams.kafka_admin import require_broker
    from streams.sink import Sink

    require_broker(settings.kafka)

    def connect() -> object:
        client = get_client(settings.clickhouse, settings.clickhouse_database, create=True)
        migrations.migrate(client)
        return client

    sink = Sink(settings, connect, max_rows=args.max_rows, max_wait_s=args.max_wait)
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: sink.stop())
    sink.run()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(sink.counters.items())) or "nothing"
    print(f"sink stopped: {summary}")
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from streams import queries
    from streams.clickhouse import get_client

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
    client = get_client(settings.clickhouse, settings.clickhouse_database)
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


def cmd_grafana(args: argparse.Namespace, settings: Settings) -> int:
    from streams import grafana

    if args.check:
        drifted = grafana.drift()
        if drifted:
            print(f"generated Grafana files differ: {', '.join(drifted)}; run "
                  "`tokenledger grafana export`", file=sys.stderr)  # fmt: skip
            return 1
        print("Grafana dashboards and alert rules match the query library")
        return 0
    written = grafana.export()
    print(f"wrote {len(written)} Grafana files under {grafana.GRAFANA_DIR}")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local stack (broker, topics, ClickHouse schema) and say where it is."""
    if settings.kafka_is_local:
        cmd_kafka(argparse.Namespace(action="start"), settings)
    cmd_topics(argparse.Namespace(action="create", partitions=None, replication_factor=None),
               settings)  # fmt: skip
    cmd_migrate(argparse.Namespace(database=None, status=False), settings)
    print(f"\nKafka:      {settings.kafka}")
    print(f"ClickHouse: {settings.clickhouse} (database {settings.clickhouse_database})")
    print(f"State:      {settings.home}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.kafka_is_local:
        print(f"nothing to stop: Kafka is external ({settings.kafka})")
        return 0
    return cmd_kafka(argparse.Namespace(action="stop"), settings)


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokenledger", description="LLM cost control on Kafka and ClickHouse.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("setup", cmd_setup, "install tiktoken ranks and the Kafka jars (idempotent)")
    p.add_argument("--only", choices=["tiktoken", "kafka"])
    p = add("kafka", cmd_kafka, "manage the local Kafka broker (KRaft, 127.0.0.1)")
    p.add_argument("action", choices=["start", "stop", "status", "fetch"])
    p = add("topics", cmd_topics, "create or list tokenledger's topics")
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("--partitions", type=int, help="default: TOKENLEDGER_PARTITIONS or 3")
    p.add_argument("--replication-factor", type=int, help="default: TOKENLEDGER_REPLICATION or 1")
    p = add("migrate", cmd_migrate, "apply ClickHouse migrations (idempotent)")
    p.add_argument("--database", help="default: TOKENLEDGER_CLICKHOUSE_DATABASE or tokenledger")
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    p = add("schemas", cmd_schemas, "export the message and row JSON Schema")
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", help="folder (default: schemas/json in the source tree)")
    p.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    p = add("prices", cmd_prices, "check or list a price table")
    p.add_argument("action", choices=["check", "list"])
    p.add_argument("file", nargs="?", help="default: TOKENLEDGER_PRICES or the bundled table")
    p = add("worker", cmd_worker, "run the stream worker (price, deduplicate, windows)")
    p.add_argument("--instance", help="stable name of this worker (default: <host>-0); "
                   "restarts must reuse it")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=2000, help="records per transaction")
    p.add_argument("--dedup-hours", type=float, default=48.0,
                   help="event-time hours an event_id is remembered (48); memory ~600 bytes "
                   "per event in that window")  # fmt: skip
    p = add("notify", cmd_notify, "deliver alerts to webhook, Slack, PagerDuty, Alertmanager")
    p.add_argument("--retries", type=int, default=5, help="attempts per receiver (5)")
    p.add_argument("--backoff", type=float, default=0.5,
                   help="seconds before the 2nd attempt, doubled after each (0.5)")  # fmt: skip
    p = add("demo", cmd_demo, "run everything on a simulated day of traffic, then report")
    p.add_argument("--requests-per-day", type=int, default=100_000, help="(100000)")
    p.add_argument("--seconds", type=float, default=150.0,
                   help="wall-clock seconds the day is replayed in (150)")  # fmt: skip
    p = add("report", cmd_report, "write the HTML cost report from ClickHouse")
    p.add_argument("--start", default="-1d", help="ISO 8601, now, today or --start=-7d (-1d)")
    p.add_argument("--end", default="now", help="(now)")
    p.add_argument("--bucket", type=int, default=3600, help="seconds per time bucket (3600)")
    p.add_argument("--out", help="default: $TOKENLEDGER_HOME/report.html")
    p = add("access", cmd_access, "ClickHouse roles: a tenant's read-only analyst, the platform")
    p.add_argument("action", choices=["grant", "platform"])
    p.add_argument("--tenant")
    p.add_argument("--print", action="store_true", help="print the SQL instead of applying it")
    p = add("budget", cmd_budget, "set, list or remove tenant and feature budgets")
    p.add_argument("action", choices=["set", "list", "rm"])
    p.add_argument("--tenant")
    p.add_argument("--feature")
    p.add_argument("--limit-usd", help="the limit per window in USD, e.g. 50 or 12.50")
    p.add_argument("--window", choices=["hour", "day", "week", "month"], default="day")
    p.add_argument("--tz", default="UTC", help="IANA timezone the window follows (UTC)")
    p.add_argument("--warn", default="50,80", help="warn thresholds in percent (50,80)")
    p = add("sink", cmd_sink, "run the ClickHouse sink (every topic into its table)")
    p.add_argument("--max-rows", type=int, default=5000, help="rows per INSERT batch")
    p.add_argument("--max-wait", type=float, default=1.0, help="seconds before a batch is flushed")
    p = add("query", cmd_query, "run an analyst query from clickhouse/queries")
    p.add_argument("name", nargs="?")
    p.add_argument("--list", action="store_true", help="list the queries and what they answer")
    p.add_argument("--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p = add("grafana", cmd_grafana, "generate Grafana dashboards and alerts from the library")
    p.add_argument("action", choices=["export"])
    p.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    add("up", cmd_up, "start the local stack: broker, topics, ClickHouse schema")
    add("down", cmd_down, "stop the local broker")
    return parser


def _configure_logging(quiet: bool) -> None:
    """Our progress lines on stderr; libraries' own log lines (retries, driver errors) stay
    out of the terminal: failures reach the user as one error line instead."""
    logging.getLogger().addHandler(logging.NullHandler())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("tokenledger", "streams", "schemas"):
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
    try:
        args = parser.parse_args(argv)
        _configure_logging(quiet=args.quiet)
        for option in ("partitions", "replication_factor", "max_batch", "max_rows"):
            value = getattr(args, option, None)
            if value is not None and value < 1:
                raise UserError(f"--{option.replace('_', '-')} must be at least 1")
        settings = Settings.from_env()
        code: int = args.handler(args, settings)
        return code
    except UserError as exc:
        print(f"tokenledger: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tokenledger: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
