"""`tokenledger demo`: the whole pipeline on embedded defaults, driven by a realistic day.

Starts the local broker (unless TOKENLEDGER_KAFKA points elsewhere), a fresh ClickHouse
database ``<database>_demo``, a stream worker, the sink and the notifier (its receiver a
local file), sets budgets, then replays one simulated day of traffic (the last 24 hours,
100,000 requests by default) through the SDK in a few minutes: five tenants with business
hours, classification on a small model, RAG on a mid model, reasoning on a large one,
exact and semantic cache hits, client timeouts that retry, nightly batch jobs, a tenant
whose bulk job exceeds its daily budget (refused at its gateway by a ``BudgetGuard`` once
the worker blocks it) and a runaway agent loop that pages on-call. At the end: a summary
in the terminal and the HTML report, both from the query library.

Every run uses its own topic namespace, deleted at the end, and recreates the demo database:
re-running works. Alerts go only to the demo's own file, never to a receiver configured in
the environment. Ctrl-C stops everything the demo started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tokenledger.contract import topics
from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.config import Settings
from tokenledger.streams.demo.namespace import delete_namespace, stage_env
from tokenledger.streams.demo.plan import DemoPlan, daily_budgets, plan_scenario
from tokenledger.streams.demo.replay import DemoResult, drive
from tokenledger.streams.demo.scenario import Scenario
from tokenledger.streams.demo.status import StatusLine
from tokenledger.streams.local.processes import Supervisor
from tokenledger.streams.redact import redact_dsn


def _cli(*args: str) -> list[str]:
    """``tokenledger *args``: the installed script next to this Python, else the module."""
    exe = Path(sys.executable).parent / "tokenledger"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tokenledger.streams.cli"]
    return [*command, *args]


def run(settings: Settings, plan: DemoPlan, *, report_path: Path | None = None) -> DemoResult:
    """Start what is missing, replay the day, write the report; stop what it started."""
    from tokenledger.streams.local.broker import LocalKafka

    status = StatusLine()
    say = status.say
    now = datetime.now(UTC).replace(microsecond=0)
    namespace = f"demo{now:%Y%m%d%H%M%S}"
    database = settings.demo_database
    home = settings.home / "demo"
    home.mkdir(parents=True, exist_ok=True)
    alerts_file = home / "alerts.jsonl"
    alerts_file.unlink(missing_ok=True)
    demo_settings = dataclasses.replace(
        settings, topic_namespace=namespace, clickhouse_database=database
    )
    kafka: LocalKafka | None = None
    if settings.kafka_is_local:
        kafka = LocalKafka(
            settings.home / "kafka",
            settings.cache,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
        )
        say("starting the local Kafka broker ...")
        if not kafka.start(progress=say):
            kafka = None  # it was already running: leave it running
    env = stage_env(
        os.environ,
        {
            "TOKENLEDGER_TOPIC_NAMESPACE": namespace,
            "TOKENLEDGER_CLICKHOUSE_DATABASE": database,
            "TOKENLEDGER_KAFKA": settings.kafka,
            "TOKENLEDGER_HOME": str(settings.home),
        },
    )
    children = Supervisor(home, env, grace_s=60)
    try:
        scenario = plan_scenario(plan, now)
        budgets = _prepare(demo_settings, scenario, now, say)
        children.start("worker", _cli("worker", "--instance", "demo-1", "--max-batch", "2000"))
        children.start("sink", _cli("sink", "--max-wait", "0.5"))
        children.start(
            "notifier",
            _cli("notify", "--retries", "3"),
            env={"TOKENLEDGER_NOTIFY_FILE": str(alerts_file)},
        )
        result = DemoResult(scenario.start, scenario.end, database, budgets=budgets)
        drive(demo_settings, plan, scenario, children, result, status, alerts_file)
        children.stop("sink", "notifier", "worker", together=True)
        result.alerts = (
            [json.loads(line) for line in alerts_file.read_text().splitlines() if line.strip()]
            if alerts_file.exists()
            else []
        )
        _write_report(demo_settings, result, report_path or settings.home / "report.html", now)
        return result
    finally:
        status.close()
        children.stop()
        delete_namespace(settings.kafka, namespace)
        if kafka is not None:
            say("stopping the local Kafka broker the demo started")
            kafka.stop()


def _prepare(
    settings: Settings, scenario: Scenario, now: datetime, say: Callable[[str], None]
) -> list[Budget]:
    """A fresh database and topic namespace, and the tenants' daily budgets."""
    from tokenledger.streams.admin import budgets as budget_admin
    from tokenledger.streams.admin.topics import create_topics
    from tokenledger.streams.sink import migrations
    from tokenledger.streams.sink.client import get_client

    database = settings.clickhouse_database
    say(f"fresh ClickHouse database {database} at {redact_dsn(settings.clickhouse)}")
    client = get_client(settings.clickhouse, database, create=True)
    client.command(f"DROP DATABASE IF EXISTS `{database}`")
    client = get_client(settings.clickhouse, database, create=True)
    migrations.migrate(client, progress=lambda _: None)
    client.close()
    del client  # the embedded engine: one process per data path, the sink needs it now
    specs = [
        topics.TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS
    ]
    create_topics(settings.kafka, specs, settings.partitions, settings.replication_factor)
    budgets = daily_budgets(scenario, now, load_price_book())
    for budget in budgets:
        budget_admin.put(settings, budget)
    say(
        f"budgets: {', '.join(f'{b.tenant_id} {format_usd(b.limit_nusd)}/day' for b in budgets)} "
        f"(days in {budgets[0].tz}, where it is now 23:xx)"
    )
    return budgets


def _write_report(settings: Settings, result: DemoResult, path: Path, now: datetime) -> None:
    """The summary and the HTML report, every time on the simulated day's clock."""
    from tokenledger.streams.analytics import report, report_html
    from tokenledger.streams.sink.client import get_client

    client = get_client(settings.clickhouse, settings.clickhouse_database)
    try:
        data = report.collect(client, result.start - timedelta(hours=1), now + timedelta(hours=1))
    finally:
        client.close()
    result.summary = report.render_text(data, clock=result.sim_clock)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html.render_html(data, clock=result.sim_clock))
    result.report = path
