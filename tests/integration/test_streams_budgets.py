"""Budgets end to end: usage and reservations through the worker, signals at a BudgetGuard."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import factories
from tests.helpers.clock import midday_zone
from tests.helpers.kafka_io import produce, read_committed
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_value
from tokenledger import BudgetGuard
from tokenledger.contract import topics
from tokenledger.contract.messages import EnrichedUsage, Signal
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker

pytestmark = pytest.mark.integration

CALL_NUSD = 11_670_000  # factories.usage() on gpt-4o: $0.01167


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:

    return isolated(kafka_bootstrap, 2)


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[tuple[worker.TransactionalEngine, BudgetGuard]]:
    budget_admin.put(
        settings, budget_admin.make_budget("acme", None, "0.10", "day", midday_zone(), "50,80")
    )
    engine = worker.build(
        settings, "w1", reservation_timeout=timedelta(seconds=3), heartbeat=timedelta(hours=1)
    )  # every signal here is a state change
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    guard = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS)).start()
    assert guard.wait_ready(30)
    yield engine, guard
    guard.close()
    engine.stop()
    thread.join(30)


def send_usage(settings: Settings, n: int, tenant: str = "acme") -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    events = [factories.usage(tenant_id=tenant, ts=now) for _ in range(n)]
    produce(
        settings.kafka,
        settings.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )


def test_usage_warns_then_blocks_and_a_raised_limit_allows(
    settings: Settings, pipeline: tuple[worker.TransactionalEngine, BudgetGuard]
) -> None:
    engine, guard = pipeline
    send_usage(settings, 5)  # 5 x $0.01167 = $0.05835 of $0.10: 58%
    warn = wait_value(lambda: guard.check("acme"), lambda d: d.state == "warn", "warn at 50%")
    assert (
        warn.allowed and warn.reason == "50% of the daily limit $0.1000 used ($0.0584 of $0.1000)"
    )
    send_usage(settings, 2)  # $0.08169: 82%
    wait_value(lambda: guard.check("acme"), lambda d: "80%" in d.reason, "warn at 80%")
    send_usage(settings, 2)  # $0.10503
    block = wait_value(lambda: guard.check("acme"), lambda d: not d.allowed, "block")
    assert (block.state, block.scope) == ("block", "tenant/acme")
    assert guard.check("globex").allowed and guard.check("acme", "answer").state == "block"

    budget_admin.put(
        settings, budget_admin.make_budget("acme", None, "1", "day", midday_zone(), "50,80")
    )
    wait_value(lambda: guard.check("acme"), lambda d: d.state == "allow", "allow after raise")

    signals = [
        Signal.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.SIGNALS), 4, timeout=10)
    ]
    assert [(s.scope, s.state, s.threshold_pct, s.spend_nusd, s.limit_nusd) for s in signals] == [
        ("tenant/acme", "warn", 50, 5 * CALL_NUSD, 100_000_000),
        ("tenant/acme", "warn", 80, 7 * CALL_NUSD, 100_000_000),
        ("tenant/acme", "block", 100, 9 * CALL_NUSD, 100_000_000),
        ("tenant/acme", "allow", None, 9 * CALL_NUSD, 1_000_000_000),
    ]
    # Nothing else was signalled: the worker's own count of what it published, read after
    # the last signal (the marker) is visible, matches the topic exactly.
    published = {k: v for k, v in engine.counters().items() if k.startswith("signal.")}
    assert published == {"signal.warn": 2, "signal.block": 1, "signal.allow": 1}


def test_an_orphan_reservation_blocks_until_it_expires(
    settings: Settings, pipeline: tuple[worker.TransactionalEngine, BudgetGuard]
) -> None:
    _, guard = pipeline
    budget_admin.put(
        settings, budget_admin.make_budget("globex", None, "0.05", "day", midday_zone(), "80")
    )
    request = factories.request(
        tenant_id="globex",
        reserved_cost_nusd=60_000_000,
        ts=datetime.now(UTC) - timedelta(seconds=1),
    )
    produce(
        settings.kafka,
        settings.topic(topics.REQUESTS),
        [(b"globex", request.model_dump_json().encode()), (b"globex", b"{broken")],
    )
    blocked = wait_value(
        lambda: guard.check("globex"), lambda d: not d.allowed, "reservation block"
    )
    assert "($0.0600 of $0.0500)" in blocked.reason
    wait_value(
        lambda: guard.check("globex"), lambda d: d.allowed, "expiry of the orphan", timeout=20
    )
    (dead,) = read_committed(settings.kafka, settings.topic(topics.DLQ), 1, timeout=10)
    assert b'"reason":"malformed_json"' in dead.value()


def test_a_claimed_cost_of_zero_on_a_priced_model_still_blocks(
    settings: Settings, pipeline: tuple[worker.TransactionalEngine, BudgetGuard]
) -> None:
    engine, guard = pipeline
    now = datetime.now(UTC) - timedelta(seconds=1)
    events = [factories.usage(tenant_id="acme", ts=now, cost_nusd=0) for _ in range(9)]
    produce(
        settings.kafka,
        settings.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )
    wait_value(lambda: guard.check("acme"), lambda d: not d.allowed, "block")

    def signals() -> list[Signal]:
        read = read_committed(settings.kafka, settings.topic(topics.SIGNALS), 1, timeout=5)
        return [Signal.model_validate_json(m.value()) for m in read]

    *before, block = wait_value(signals, lambda s: bool(s) and s[-1].state == "block", "signal")
    assert (block.scope, block.spend_nusd, block.limit_nusd) == (
        "tenant/acme",
        9 * CALL_NUSD,  # $0.10503: the book's cost of each call, not the claimed $0
        100_000_000,
    )
    assert {s.state for s in before} <= {"warn"}
    enriched = [
        EnrichedUsage.model_validate_json(m.value())
        for m in read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), 9)
    ]
    assert {(e.cost_nusd, e.reported_cost_nusd, e.cost_mismatch) for e in enriched} == {
        (CALL_NUSD, 0, True)
    }
    assert len(enriched) == 9 and engine.counters()["cost_mismatch"] == 9
