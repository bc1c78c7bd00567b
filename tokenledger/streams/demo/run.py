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
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tokenledger.contract import topics
from tokenledger.contract.common import format_usd
from tokenledger.contract.messages import Budget, UsageEvent
from tokenledger.contract.price_book import load_price_book
from tokenledger.guard import BudgetGuard
from tokenledger.ledger import Ledger, TopicNames
from tokenledger.streams.admin.progress import Probe, RecordCount
from tokenledger.streams.config import Settings
from tokenledger.streams.demo.namespace import delete_namespace, stage_env
from tokenledger.streams.demo.scenario import (
    Incident,
    Scenario,
    Tenant,
    mean_request_cost_nusd,
    usage_events,
)
from tokenledger.streams.demo.status import StatusLine
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.redact import redact_dsn

TENANTS = (
    ("acme", 0.38, 13.0),
    ("globex", 0.25, 9.0),
    ("initech", 0.17, 15.0),
    ("umbrella", 0.12, 11.0),
    ("hooli", 0.08, 17.0),
)
ANOMALY_TENANT = "globex"
OVER_BUDGET_TENANT = "initech"


@dataclass
class DemoPlan:
    requests_per_day: int = 100_000
    seconds: float = 150.0
    """Wall-clock seconds the simulated day is compressed into."""
    seed: int = 42
    drain_timeout_s: float = 180.0


@dataclass
class DemoResult:
    start: datetime
    end: datetime
    database: str
    emitted: list[UsageEvent] = field(default_factory=list)
    blocked: Counter[str] = field(default_factory=Counter)
    block_reasons: dict[str, str] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    summary: str = ""
    report: Path | None = None
    sim_clock: SimClock | None = None


@dataclass(frozen=True)
class SimClock:
    """Maps a wall-clock moment of the replay to the simulated time it stood for."""

    wall_start: datetime
    sim_start: datetime
    speed: float

    def __call__(self, wall: datetime) -> datetime:
        if wall.tzinfo is None:  # ClickHouse's DateTime64(3, 'UTC') may come back naive
            wall = wall.replace(tzinfo=UTC)
        return self.sim_start + (wall - self.wall_start) * self.speed


def _offset_hours(now: datetime) -> int:
    offset = 23 - now.hour
    return offset - 24 if offset > 14 else offset


def day_timezone(now: datetime) -> str:
    """A fixed-offset zone in which it is now 23:xx, so that the last 24 hours are (almost
    all) one budget day: the simulated day is that tenant's business day."""
    offset = _offset_hours(now)
    # POSIX-style names invert the sign: Etc/GMT-5 is UTC+5
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def plan_scenario(plan: DemoPlan, now: datetime) -> Scenario:
    """The simulated day: the last 24 hours, its incidents placed in the budget day."""
    start = now - timedelta(hours=24)
    tz_offset = _offset_hours(now)
    local_midnight = (now + timedelta(hours=tz_offset)).replace(
        hour=0, minute=0, second=0, microsecond=0
    ) - timedelta(hours=tz_offset)
    tenants = [
        Tenant(name, max(1, int(plan.requests_per_day * share)), peak)
        for name, share, peak in TENANTS
    ]
    runaway_at = start + timedelta(hours=15, minutes=10)
    incidents = [
        Incident("runaway", ANOMALY_TENANT, runaway_at, runaway_at + timedelta(minutes=10)),
        Incident(
            "budget_burn",
            OVER_BUDGET_TENANT,
            local_midnight + timedelta(hours=6),
            local_midnight + timedelta(hours=13),
        ),
    ]
    return Scenario(tenants, start, 1, incidents, seed=plan.seed, length=timedelta(hours=24))


class Stack:
    """The subprocesses the demo started; stopped (SIGTERM, then SIGKILL) on the way out."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        exe = Path(sys.executable).parent / "tokenledger"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tokenledger.streams.cli"]
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(  # noqa: S603 (our own CLI)
            [*command, *args], env={**self.env, **(env or {})}, stdout=log, stderr=log
        )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ServiceUnavailableError(
                    f"the demo's {name} stopped (exit {proc.returncode}); see {self.logs / name}.log"
                )

    def stop(self, *names: str) -> None:
        chosen = [n for n in (names or tuple(self.procs)) if n in self.procs]
        for name in chosen:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        for name in chosen:
            proc = self.procs.pop(name)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _success(request_id: str) -> bool:
    """About 1 task in 20 fails at the application level (e.g. the answer was rejected)."""
    return int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) % 20 != 0


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
    stack = Stack(env, home)
    try:
        scenario = plan_scenario(plan, now)
        budgets = _prepare(demo_settings, scenario, now, say)
        stack.start("worker", "worker", "--instance", "demo-1", "--max-batch", "2000")
        stack.start("sink", "sink", "--max-wait", "0.5")
        stack.start(
            "notifier",
            "notify",
            "--retries",
            "3",
            env={"TOKENLEDGER_NOTIFY_FILE": str(alerts_file)},
        )
        result = DemoResult(scenario.start, scenario.end, database, budgets=budgets)
        _drive(demo_settings, plan, scenario, stack, result, status, alerts_file)
        stack.stop("sink", "notifier", "worker")
        result.alerts = (
            [json.loads(line) for line in alerts_file.read_text().splitlines() if line.strip()]
            if alerts_file.exists()
            else []
        )
        _write_report(demo_settings, result, report_path or settings.home / "report.html", now)
        return result
    finally:
        status.close()
        stack.stop()
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
    prices = load_price_book()
    budgets = []
    for tenant in scenario.tenants:
        if tenant.tenant_id == ANOMALY_TENANT:
            continue  # no budget: on-call hears about its runaway from the anomaly alert
        typical = mean_request_cost_nusd(tenant, prices) * tenant.requests_per_day
        factor = 12 if tenant.tenant_id == OVER_BUDGET_TENANT else 50  # tenths
        budgets.append(
            Budget(
                tenant_id=tenant.tenant_id,
                limit_nusd=max(typical * factor // 10, 1),
                tz=day_timezone(now),
                warn_pct=(50, 80),
                updated_at=now,
            )
        )
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


def _drive(
    settings: Settings,
    plan: DemoPlan,
    scenario: Scenario,
    stack: Stack,
    result: DemoResult,
    status: StatusLine,
    alerts_file: Path,
) -> None:
    """Replay the day through the SDK at ``plan.seconds`` for 24 simulated hours, with a
    BudgetGuard at each tenant's gateway; then wait until everything is stored."""

    names = TopicNames(
        requests=settings.topic(topics.REQUESTS),
        usage=settings.topic(topics.USAGE),
        outcomes=settings.topic(topics.OUTCOMES),
    )
    guard = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS)).start()
    ledger = Ledger(
        "demo-traffic",
        bootstrap=settings.kafka,
        topics=names,
        spill_dir=settings.home / "demo" / "spill",
    )
    worker = Probe(settings, settings.topic("tokenledger-worker"), settings.topic(topics.USAGE))
    sink = Probe(
        settings,
        settings.topic("tokenledger-sink"),
        *(
            settings.topic(t)
            for t in (topics.USAGE_ENRICHED, topics.OUTCOMES, topics.SIGNALS, topics.ALERTS)
        ),
    )
    stored = Probe(
        settings, settings.topic("tokenledger-sink"), settings.topic(topics.USAGE_ENRICHED)
    )
    enriched = RecordCount(settings, settings.topic(topics.USAGE_ENRICHED))
    notifier = Probe(
        settings, settings.topic("tokenledger-notifier"), settings.topic(topics.ALERTS)
    )
    speed = 86_400 / plan.seconds
    began = time.monotonic()
    result.sim_clock = SimClock(datetime.now(UTC), scenario.start, speed)
    refused: set[str] = set()
    say = status.say

    def line(sim: datetime, final: bool = False) -> None:
        if final or status.due():
            text = _status_text(sim, result, worker, stored, enriched, alerts_file, final)
            status.status(text, force=final)

    try:
        say(
            f"replaying {scenario.start:%Y-%m-%d %H:%M} to {scenario.end:%H:%M} UTC in "
            f"{plan.seconds:.0f}s ({speed:,.0f}x)"
        )
        for ts, raw in usage_events(scenario):
            due = began + (ts - scenario.start).total_seconds() / speed
            wait = due - time.monotonic()
            if wait > 0.002:
                time.sleep(wait)
            line(ts)
            if _through_the_gateway(raw, guard, ledger, refused, result) and (
                len(result.emitted) % 5000 == 0
            ):
                stack.check()
        if not ledger.flush(60):
            raise ServiceUnavailableError(
                f"Kafka did not take the demo's events within 60s ({ledger.stats()}); they "
                f"are spilled under {settings.home / 'demo' / 'spill'}"
            )
        say("traffic done; waiting for the worker and the sink to catch up ...")
        _drain(
            plan.drain_timeout_s,
            stack,
            (worker, sink, notifier),
            lambda: line(scenario.end),
            settings.home / "demo",
        )
        line(scenario.end, final=True)
    finally:
        ledger.close()
        guard.close()
        for probe in (worker, sink, stored, notifier):
            probe.consumer.close()
        enriched.close()


def _through_the_gateway(
    raw: dict[str, Any], guard: BudgetGuard, ledger: Ledger, refused: set[str], result: DemoResult
) -> bool:
    """What a tenant's gateway does with one call: ask the guard (first attempts), and if
    it may pass, report its usage and its task's outcome. True when it was emitted."""
    request = raw["request_id"]
    if raw["attempt"] == 1:
        decision = guard.check(raw["tenant_id"], raw["feature"])
        if not decision.allowed:
            refused.add(request)
            result.blocked[raw["tenant_id"]] += 1
            result.block_reasons[raw["tenant_id"]] = decision.reason
    if request in refused:
        return False
    event = UsageEvent.model_validate_json(json.dumps(raw))
    ledger.emit(event)
    result.emitted.append(event)
    if raw["success"]:
        ledger.outcome(
            raw["task_id"],
            _success(request),
            tenant_id=raw["tenant_id"],
            feature=raw["feature"],
            request_id=request,
        )
    return True


def _drain(
    timeout_s: float, stack: Stack, probes: tuple[Probe, ...], show: Callable[[], None], logs: Path
) -> None:
    """Until every probe's group has consumed everything (the worker first: its outputs are
    the others' inputs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check()
        show()
        if all(probe.caught_up() for probe in probes):
            return
        time.sleep(0.5)  # pacing: each check reads committed offsets
    raise ServiceUnavailableError(
        f"the pipeline did not catch up within {timeout_s:.0f}s; logs in {logs}"
    )


def _status_text(
    sim: datetime,
    result: DemoResult,
    worker: Probe,
    stored: Probe,
    enriched: RecordCount,
    alerts_file: Path,
    final: bool,
) -> str:
    """emitted: usage events sent; processed: usage events the worker committed; stored:
    enriched usage events the sink committed (records, not offsets: the enriched topic is
    transactional, its offsets also count commit markers)."""
    alerts = len(alerts_file.read_text().splitlines()) if alerts_file.exists() else 0
    # read downstream first: each stage only has what the one before it had, so the line
    # never shows a stage ahead of its input
    stored_n = enriched.before(
        stored.committed_by_partition() or {}, budget_s=10.0 if final else 0.1
    )
    processed_n = max(worker.committed(), 0)
    return (
        f"  {sim:%a %H:%M} sim | emitted {len(result.emitted):>7,} | processed "
        f"{processed_n:>7,} | stored {stored_n:>7,} | "
        f"blocked {sum(result.blocked.values()):>5,} | alerts {alerts}"
    )
