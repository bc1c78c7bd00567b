"""Exactly once across a SIGKILL, and the same totals with two workers and a rebalance."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import factories
from tests.helpers.clock import midday_zone, recent
from tests.helpers.kafka_io import (
    committed_total,
    produce,
    read_committed,
    wait_visible,
)
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.totals import check_exactly_once
from tests.helpers.workers import Workers
from tokenledger.contract import topics
from tokenledger.contract.messages import Signal, UsageEvent

pytestmark = pytest.mark.integration


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(kafka_bootstrap, 3, tmp_path)
    yield pool
    pool.stop_all()


def make_events(n: int, tenants: int, base: datetime) -> list[UsageEvent]:
    models = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"]
    return [
        factories.usage(
            tenant_id=f"tenant-{i % tenants}",
            model=models[i % 3],
            provider="x",
            feature=f"f{i % 2}",
            input_tokens=500 + i % 997,
            cached_input_tokens=0,
            output_tokens=50 + i % 313,
            reasoning_tokens=0,
            ts=base + timedelta(milliseconds=i),
            idempotency_key=f"k-{i}",
        )
        for i in range(n)
    ]


def records(events: list[UsageEvent]) -> list[tuple[bytes | None, bytes]]:
    return [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events]


def test_sigkill_mid_stream_then_restart_counts_each_event_once(workers: Workers) -> None:
    base = recent()
    first = make_events(6000, tenants=12, base=base)
    worker = workers.start("w1")
    workers.wait_topics()
    limits = _budgets_crossed_midway(workers, first + make_events(7000, 12, base)[6000:])
    produce(workers.bootstrap, workers.topic(topics.USAGE), records(first))
    deadline = time.monotonic() + 60
    while _committed_inputs(workers) < 1000:  # cheap progress probe: kill soon after
        assert time.monotonic() < deadline, f"worker made no progress; logs in {workers.tmp}"
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    assert _committed_inputs(workers) < 6000, "the kill must land mid-stream"

    later = make_events(7000, tenants=12, base=base)[6000:]
    redelivered = first[:500]  # the SDK replaying a spill: same event_ids
    produce(workers.bootstrap, workers.topic(topics.USAGE), records(later + redelivered))
    restarted = workers.start("w1")
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), 7000)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(30) == 0
    check_exactly_once(workers, first + later, base)
    check_signals(workers, first + later, limits)


def _budgets_crossed_midway(workers: Workers, events: list[UsageEvent]) -> dict[str, int]:
    """Daily budgets for four tenants: warn at 50%, block at what they spend by midway."""
    from tokenledger.streams.admin import budgets as budget_admin
    from tokenledger.streams.config import Settings

    settings = Settings.from_env(workers.env)
    limits = {}
    for tenant in ("tenant-0", "tenant-1", "tenant-2", "tenant-3"):
        spent = sum(expected_cost(e) for e in events if e.tenant_id == tenant)
        limits[tenant] = spent // 2
        budget = budget_admin.make_budget(
            tenant, None, f"{Decimal(limits[tenant]) / 10**9}", "day", midday_zone(), "50"
        )
        budget_admin.put(settings, budget)
    return limits


def check_signals(workers: Workers, events: list[UsageEvent], limits: dict[str, int]) -> None:
    """Each scope's signal history is the uninterrupted one: warn once, block once, in order,
    no state published twice across the crash, and the final spend exact."""
    signals = [
        Signal.model_validate_json(m.value())
        for m in read_committed(workers.bootstrap, workers.topic(topics.SIGNALS), 8, timeout=10)
    ]
    for tenant, limit in limits.items():
        mine = [s for s in signals if s.scope == f"tenant/{tenant}"]
        assert [s.state for s in mine] == ["warn", "block"], tenant
        assert mine[0].spend_nusd * 2 >= limit and mine[1].spend_nusd >= limit
        assert all(s.limit_nusd == limit for s in mine)


def test_two_workers_and_a_rebalance_give_the_same_totals(workers: Workers) -> None:
    base = recent()
    events = make_events(8000, tenants=20, base=base)
    workers.start("a")
    workers.wait_topics()
    produce(workers.bootstrap, workers.topic(topics.USAGE), records(events[:4000]))
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), 500)
    workers.start("b")  # joins the group: partitions move while events flow
    produce(workers.bootstrap, workers.topic(topics.USAGE), records(events[4000:]))
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), 8000)
    workers.stop_all()
    assert [p.returncode for p in workers.procs] == [0, 0]
    check_exactly_once(workers, events, base)


def _committed_inputs(workers: Workers) -> int:
    """Usage records the worker group has committed, over all partitions."""
    return committed_total(
        workers.bootstrap, f"{workers.namespace}.tokenledger-worker", workers.topic(topics.USAGE), 3
    )
