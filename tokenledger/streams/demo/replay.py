"""The demo's day replayed through the SDK: each tenant's gateway asks its BudgetGuard
before a call and reports the call's usage and its task's outcome through a Ledger, paced
so that 24 simulated hours take the plan's seconds; then the wait until the worker, the sink
and the notifier have consumed everything, with one status line all along."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenledger.contract import topics
from tokenledger.contract.messages import Budget, UsageEvent
from tokenledger.guard import BudgetGuard
from tokenledger.ledger import Ledger, TopicNames
from tokenledger.streams.admin.progress import Probe, RecordCount
from tokenledger.streams.config import Settings
from tokenledger.streams.demo.plan import DemoPlan
from tokenledger.streams.demo.scenario import Scenario, usage_events
from tokenledger.streams.demo.status import StatusLine
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.local.processes import Supervisor


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


def _success(request_id: str) -> bool:
    """About 1 task in 20 fails at the application level (e.g. the answer was rejected)."""
    return int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) % 20 != 0


def drive(
    settings: Settings,
    plan: DemoPlan,
    scenario: Scenario,
    children: Supervisor,
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
                children.check()
        if not ledger.flush(60):
            raise ServiceUnavailableError(
                f"Kafka did not take the demo's events within 60s ({ledger.stats()}); they "
                f"are spilled under {settings.home / 'demo' / 'spill'}"
            )
        say("traffic done; waiting for the worker and the sink to catch up ...")
        _drain(
            plan.drain_timeout_s,
            children,
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
    timeout_s: float,
    children: Supervisor,
    probes: tuple[Probe, ...],
    show: Callable[[], None],
    logs: Path,
) -> None:
    """Until every probe's group has consumed everything (the worker first: its outputs are
    the others' inputs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children.check()
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
