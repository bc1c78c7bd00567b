"""Money in the library queries stays integer nano-USD on the real engine: the burn-down
forecast to the nano-dollar where Float64 is not, the caller's claimed cost beside the
book's, and the reported cost of rows stored before that column existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import factories
from tokenledger.contract.rows import SignalRow, UsageRow
from tokenledger.streams.analytics import queries
from tokenledger.streams.sink import migrations

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=12)  # the budget window: a day, half of it gone
INT64_MAX = 2**63 - 1


def insert(ch: Any, row_type: type[Any], rows: list[Any], columns: list[str] | None = None) -> None:
    names = columns or row_type.insert_columns()
    values = [[*r.values(), 0, i] for i, r in enumerate(rows)]
    if columns is not None:
        index = [row_type.insert_columns().index(c) for c in columns]
        values = [[v[i] for i in index] for v in values]
    ch.insert(row_type.table, values, column_names=names)


def run(ch: Any, name: str, now: datetime = NOW, **params: str) -> list[tuple[Any, ...]]:
    query = queries.get(name)
    return queries.run(ch, query, query.bind(params, now=now))[1]


def seed_budget(ch: Any, spend: list[int]) -> None:
    migrations.migrate(ch)
    signal = factories.signal(
        scope="tenant/acme",
        tenant_id="acme",
        state="warn",
        limit_nusd=4 * 10**18,
        window_start=START,
        window_end=START + timedelta(days=1),
        issued_at=NOW,
    )
    insert(ch, SignalRow, [SignalRow.from_message(signal)])
    usage = [
        UsageRow.from_message(
            factories.enriched(ts=START + timedelta(minutes=i), cost_nusd=c, table_cost_nusd=c)
        )
        for i, c in enumerate(spend)
    ]
    insert(ch, UsageRow, usage)


def test_the_burndown_forecast_is_integer_nano_usd(ch: Any) -> None:
    spend = 10**16 + 1  # $10,000,000.000000001: past 2**53, where Float64 drops the last digit
    seed_budget(ch, [spend])
    ((tenant, state, limit, spent, _, forecast, exhausts),) = run(ch, "budget_burndown")
    assert (tenant, state, limit, spent) == ("acme", "warn", 4 * 10**18, spend)
    assert forecast == spend * 86_400 // 43_200 == 20_000_000_000_000_002
    assert not exhausts
    # one second into the window the forecast passes Int64: it reads as the largest value
    ((*_, early, early_exhausts),) = run(ch, "budget_burndown", now=START + timedelta(seconds=1))
    assert (early, early_exhausts) == (INT64_MAX, True)


def test_claimed_costs_that_disagree_with_the_book_are_listed(ch: Any) -> None:
    migrations.migrate(ch)
    ts = NOW - timedelta(hours=1)
    rows = [
        factories.enriched(
            ts=ts,
            cost_nusd=11_670_000,
            table_cost_nusd=11_670_000,
            reported_cost_nusd=0,
            cost_mismatch=True,
        ),
        factories.enriched(
            ts=ts,
            cost_nusd=11_670_000,
            table_cost_nusd=11_670_000,
            reported_cost_nusd=3,
            cost_mismatch=True,
        ),
        factories.enriched(
            ts=ts,
            cost_nusd=11_670_000,
            table_cost_nusd=11_670_000,
            reported_cost_nusd=11_670_001,
            cost_mismatch=False,
        ),
        factories.enriched(
            ts=ts,
            service="llm-gateway",
            cost_nusd=9_000_000,
            table_cost_nusd=11_670_000,
            reported_cost_nusd=9_000_000,
            cost_source="event",
            cost_mismatch=True,
        ),
    ]
    insert(ch, UsageRow, [UsageRow.from_message(r) for r in rows])
    assert run(ch, "cost_mismatches", start="-1d") == [
        ("acme", "support-bot", "openai", "gpt-4o", 2, 3, 2 * 11_670_000, 3 - 2 * 11_670_000),
        ("acme", "llm-gateway", "openai", "gpt-4o", 1, 9_000_000, 11_670_000, -2_670_000),
    ]


def test_rows_stored_without_a_reported_cost_read_it_from_what_was_counted(ch: Any) -> None:
    migrations.migrate(ch)
    ts = NOW - timedelta(hours=1)
    before = [  # as the sink of an earlier release wrote them: no reported_cost_nusd column
        factories.enriched(
            ts=ts,
            event_id="own",
            cost_nusd=999,
            cost_source="event",
            table_cost_nusd=11_670_000,
            cost_mismatch=True,
        ),
        factories.enriched(ts=ts, event_id="book", cost_nusd=11_670_000, cost_source="table"),
    ]
    columns = [c for c in UsageRow.insert_columns() if c != "reported_cost_nusd"]
    insert(ch, UsageRow, [UsageRow.from_message(r) for r in before], columns)
    got = ch.query("SELECT event_id, reported_cost_nusd FROM usage_events ORDER BY event_id")
    assert got.result_rows == [("book", None), ("own", 999)]


def test_retries_answered_from_a_claim_are_prevented_beside_retries_still_paid(ch: Any) -> None:
    migrations.migrate(ch)
    at = NOW - timedelta(hours=1)
    first = [3_000_000_001, 7_250_000_003]  # the first attempts' table costs
    rows = [
        factories.enriched(ts=at, idempotency_key=f"k{i}", cost_nusd=c, table_cost_nusd=c)
        for i, c in enumerate(first)
    ]
    rows += [  # two retries replayed from the claims: cost 0, the first attempt's price
        factories.enriched(
            ts=at + timedelta(seconds=1),
            idempotency_key=f"k{i}",
            attempt=2,
            replay_of=rows[i].event_id,
            cost_nusd=0,
            table_cost_nusd=c,
            cost_source="replay",
        )
        for i, c in enumerate(first)
    ]
    rows.append(  # one retry generated again: paid
        factories.enriched(
            ts=at + timedelta(seconds=2),
            idempotency_key="k0",
            attempt=3,
            cost_nusd=3_000_000_001,
            table_cost_nusd=3_000_000_001,
            duplicate_generation=True,
        )
    )
    rows.append(factories.enriched(ts=at, tenant_id="globex", cost_nusd=5, table_cost_nusd=5))
    insert(ch, UsageRow, [UsageRow.from_message(r) for r in rows])
    (row,) = run(ch, "retry_cost")
    assert row[:4] == ("acme", "answer", 1, 3_000_000_001)
    assert row[5:8] == (2 * 3_000_000_001 + 7_250_000_003, 2, 3_000_000_001 + 7_250_000_003)
    steps = dict((r[0], r[1]) for r in run(ch, "savings_waterfall", tenant="acme"))
    assert steps["prevented retries"] == -(3_000_000_001 + 7_250_000_003)
    assert steps["actual"] == 2 * 3_000_000_001 + 7_250_000_003
    assert sum(v for k, v in steps.items() if k != "actual") == steps["actual"]
