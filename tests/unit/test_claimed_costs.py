"""A caller's own cost_nusd is kept beside the price book's and checked; the book's is what
the ledger and the budgets count, unless nothing prices the model or the operator trusts
the service for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import factories
from tokenledger.contract import topics
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import UserError
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.task import partition_task
from tokenledger.streams.worker.windows import parse_window, window_start

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TS = NOW - timedelta(minutes=1)
CALL_NUSD = 11_670_000  # factories.usage() on gpt-4o: 2476 x 2500 + 1024 x 1250 + 420 x 10000
NAMES = {t.name: t.name for t in topics.TOPICS}
BOOK = load_price_book()


def run(events: list[Any], trusted: frozenset[str] = frozenset()) -> tuple[Any, list[Any]]:
    """A partition task with a $0.10 daily budget for acme, fed ``events`` at NOW."""
    book = BudgetDefinitions()
    budget = Budget(tenant_id="acme", limit_nusd=100_000_000, updated_at=NOW)
    book.apply(budget.scope.encode(), budget.model_dump_json().encode())
    task = partition_task(ChangelogState(), BOOK, book, NAMES, trusted_cost_services=trusted)
    out = []
    for offset, event in enumerate(events):
        raw = event.model_dump_json().encode()
        out += task.process(topics.USAGE, 0, offset, None, raw, NOW)
    out += task.end_batch(NOW)
    return task, out


def enriched(outputs: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(o.value) for o in outputs if o.topic == topics.USAGE_ENRICHED]


def test_a_claimed_cost_of_zero_on_a_priced_model_spends_the_books_cost() -> None:
    events = [factories.usage(ts=TS, cost_nusd=0) for _ in range(9)]
    task, out = run(events)
    records = enriched(out)
    assert {
        (r["cost_nusd"], r["reported_cost_nusd"], r["cost_source"], r["cost_mismatch"])
        for r in records
    } == {(CALL_NUSD, 0, "table", True)}
    day = window_start(int(TS.timestamp() * 1000), "day")
    window = parse_window(f"w:day:t=acme:{day}", task.state.get(f"w:day:t=acme:{day}"))
    assert (window.cost_nusd, window.events) == (9 * CALL_NUSD, 9)
    (signal,) = [json.loads(o.value) for o in out if o.topic == topics.SIGNALS]
    assert (signal["state"], signal["spend_nusd"]) == ("block", 9 * CALL_NUSD)
    assert task.counters["cost_mismatch"] == 9 and task.counters["enriched"] == 9


def test_a_claim_within_rounding_is_kept_but_not_flagged() -> None:
    task, out = run([factories.usage(ts=TS, cost_nusd=CALL_NUSD + 11_670)])  # 0.1% over
    (record,) = enriched(out)
    assert (record["cost_nusd"], record["reported_cost_nusd"], record["cost_mismatch"]) == (
        CALL_NUSD,
        CALL_NUSD + 11_670,
        False,
    )
    assert "cost_mismatch" not in task.counters


def test_the_callers_cost_counts_where_nothing_prices_the_model() -> None:
    task, out = run([factories.usage(ts=TS, model="in-house-7b", cost_nusd=4_200_000)])
    (record,) = enriched(out)
    assert (record["cost_nusd"], record["priced"], record["cost_source"]) == (
        4_200_000,
        True,
        "event",
    )
    assert (record["reported_cost_nusd"], record["table_cost_nusd"]) == (4_200_000, None)
    assert not record["cost_mismatch"]


def test_a_trusted_services_cost_counts_and_a_difference_is_still_flagged() -> None:
    billed = factories.usage(ts=TS, service="llm-gateway", cost_nusd=9_000_000)
    claimed = factories.usage(ts=TS, service="support-bot", cost_nusd=9_000_000)
    task, out = run([billed, claimed], trusted=frozenset({"llm-gateway"}))
    got = [
        (r["service"], r["cost_nusd"], r["cost_source"], r["cost_mismatch"]) for r in enriched(out)
    ]
    assert got == [
        ("llm-gateway", 9_000_000, "event", True),
        ("support-bot", CALL_NUSD, "table", True),
    ]
    assert task.counters["cost_mismatch"] == 2


def test_the_trusted_services_setting() -> None:
    env = {"TOKENLEDGER_TRUSTED_COST_SERVICES": " llm-gateway, billing.proxy ,"}
    assert Settings.from_env(env).trusted_cost_services == {"llm-gateway", "billing.proxy"}
    assert Settings.from_env({}).trusted_cost_services == frozenset()
    with pytest.raises(UserError) as err:
        Settings.from_env({"TOKENLEDGER_TRUSTED_COST_SERVICES": "gateway,my gateway"})
    assert str(err.value) == (
        "TOKENLEDGER_TRUSTED_COST_SERVICES: 'my gateway' is not a service name; give service "
        "names separated by commas"
    )
