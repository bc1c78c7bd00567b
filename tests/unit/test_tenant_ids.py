"""Remembered ids belong to their tenant, are kept the retention from when the worker saw
them (however old the event), and state written before they were scoped still counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.state_keys import scoped, unscoped
from tokenledger.contract import topics
from tokenledger.contract.messages import Budget
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.records import Output
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budgets import budget_window
from tokenledger.streams.worker.state import ChangelogState, State
from tokenledger.streams.worker.store import DiskState
from tokenledger.streams.worker.task import PartitionTask, partition_task
from tokenledger.streams.worker.windows import parse_window, window_start

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BOOK = load_price_book()
NAMES = {t.name: t.name for t in topics.TOPICS}
CALL_NUSD = 11_670_000  # factories.usage() on gpt-4o
RESERVED = 60_000_000


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def task_over(state: State) -> PartitionTask:
    book = BudgetDefinitions()
    for tenant in ("acme", "globex"):
        budget = Budget(tenant_id=tenant, limit_nusd=10**9, updated_at=NOW)
        book.apply(budget.scope.encode(), budget.model_dump_json().encode())
    return partition_task(state, BOOK, book, NAMES)


def usage(at: datetime = NOW, **fields: Any) -> bytes:
    fields.setdefault("ts", at - timedelta(minutes=1))
    return factories.usage(**fields).model_dump_json().encode()


def request(**fields: Any) -> bytes:
    fields = {"ts": NOW - timedelta(minutes=1), "reserved_cost_nusd": RESERVED, **fields}
    return factories.request(**fields).model_dump_json().encode()


def feed(task: PartitionTask, records: list[tuple[str, bytes]], now: datetime = NOW) -> list[Any]:
    """The enriched records ``records`` (topic, bytes) give at ``now``, as JSON."""
    out: list[Output] = []
    for offset, (topic, value) in enumerate(records):
        out += task.process(topic, 0, offset, None, value, now)
    task.end_batch(now)
    return [json.loads(o.value) for o in out if o.topic == topics.USAGE_ENRICHED]


def spend(task: PartitionTask, tenant: str) -> int:
    budget = task.budgets.book.by_scope[f"tenant/{tenant}"]
    return task.budgets.spend(budget, *budget_window(NOW, "day", "UTC"))


def test_two_tenants_sending_the_same_ids_are_each_counted_once() -> None:
    state = ChangelogState()
    task = task_over(state)
    same: dict[str, Any] = {
        "event_id": "src-1/evt-1",
        "idempotency_key": "order-42",
        "request_id": "req-1",
    }
    acme, globex = usage(tenant_id="acme", **same), usage(tenant_id="globex", **same)
    retry = usage(tenant_id="globex", event_id="src-1/evt-2", idempotency_key="order-42")
    records = [acme, globex, acme, globex, retry]  # two redeliveries, one real retry
    enriched = feed(task, [(topics.USAGE, r) for r in records])
    assert [(e["tenant_id"], e["cost_nusd"], e["duplicate_generation"]) for e in enriched] == [
        ("acme", CALL_NUSD, False),
        ("globex", CALL_NUSD, False),
        ("globex", CALL_NUSD, True),
    ]
    day = window_start(ms(NOW - timedelta(minutes=1)), "day")
    for tenant, events in (("acme", 1), ("globex", 2)):
        window = parse_window(f"w:day:t={tenant}:{day}", state.data[f"w:day:t={tenant}:{day}"])
        assert (window.cost_nusd, window.events) == (events * CALL_NUSD, events)
    assert task.counters == {"enriched": 3, "redelivered": 2, "duplicate_generation": 1}


def test_another_tenants_usage_does_not_settle_this_tenants_reservation() -> None:
    task = task_over(ChangelogState())
    feed(
        task,
        [
            (topics.REQUESTS, request(tenant_id="acme", request_id="req-1")),
            (topics.USAGE, usage(tenant_id="globex", request_id="req-1")),
        ],
    )
    assert (spend(task, "acme"), spend(task, "globex")) == (RESERVED, CALL_NUSD)
    feed(task, [(topics.USAGE, usage(tenant_id="acme", request_id="req-1"))])
    assert spend(task, "acme") == CALL_NUSD  # its own usage settles it
    # and a request that arrives after another tenant's usage still reserves
    feed(
        task,
        [
            (topics.USAGE, usage(tenant_id="acme", request_id="req-2")),
            (topics.REQUESTS, request(tenant_id="globex", request_id="req-2")),
        ],
    )
    assert spend(task, "globex") == CALL_NUSD + RESERVED


def test_an_old_event_is_remembered_from_when_it_was_seen() -> None:
    task = task_over(ChangelogState())
    spilled = usage(ts=NOW - timedelta(days=3), idempotency_key="spilled")
    assert len(feed(task, [(topics.USAGE, spilled)])) == 1
    later = NOW + timedelta(minutes=3)  # newer traffic moves the event-time watermark 3 days
    assert len(feed(task, [(topics.USAGE, usage(later, idempotency_key="live"))], later)) == 1
    for at in (NOW + timedelta(minutes=5), NOW + timedelta(hours=47, minutes=59)):
        assert feed(task, [(topics.USAGE, spilled)], at) == []
    assert task.counters == {"enriched": 2, "redelivered": 2}
    # forgotten the retention (48 h) after it was seen, not kept for ever
    past = NOW + timedelta(hours=48, minutes=1)
    feed(task, [], past)
    assert task.state.get(scoped("I:", "acme", json.loads(spilled)["event_id"])) is None


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_state_written_before_ids_were_scoped_is_honoured_until_it_expires(
    kind: str, tmp_path: Path
) -> None:
    state: State = ChangelogState() if kind == "memory" else DiskState(tmp_path / "p")
    seen, minute_ago = ms(NOW - timedelta(hours=1)), ms(NOW - timedelta(minutes=1))
    old = {
        unscoped("E:", "evt-1"): str(seen),
        unscoped("K:", "order-42"): str(seen),
        "x:req-9:1": str(minute_ago),
        "r:req-7:1": f"acme|answer|{RESERVED}|{minute_ago}",
    }
    for k, v in old.items():
        state.restore(k, v)
    state.finish_restore(len(old))
    task = task_over(state)
    assert spend(task, "acme") == RESERVED  # the old reservation still counts
    enriched = feed(
        task,
        [
            (topics.USAGE, usage(event_id="evt-1", idempotency_key="another")),  # seen before
            (topics.USAGE, usage(event_id="evt-2", idempotency_key="order-42")),  # a retry
            (topics.USAGE, usage(event_id="evt-3", idempotency_key="new", request_id="req-7")),
            (topics.REQUESTS, request(request_id="req-9")),  # settled before: reserves nothing
        ],
    )
    assert [(e["event_id"], e["duplicate_generation"]) for e in enriched] == [
        ("evt-2", True),
        ("evt-3", False),
    ]
    changes = dict(state.changes())
    written = {k for k, v in changes.items() if v is not None}
    assert not {k for k in written if k[:2] in ("E:", "K:", "x:")}  # nothing unscoped written
    assert {
        scoped("I:", "acme", "evt-2"),
        scoped("I:", "acme", "evt-3"),
        scoped("G:", "acme", "new"),
        "s:acme req-1:1",
    } <= written
    assert "r:acme req-7:1" not in written and changes["r:req-7:1"] is None  # re-keyed, settled
    assert spend(task, "acme") == 2 * CALL_NUSD
    state.applied(None)
    # two days on, the old ids have expired and with them the lookups of the old layout
    feed(task, [], NOW + timedelta(days=2))
    assert {k: v for k, v in state.changes() if k in old} == dict.fromkeys(
        [unscoped("E:", "evt-1"), unscoped("K:", "order-42"), "x:req-9:1"]
    )
    state.applied(None)
    assert not task.usage.dedup.unscoped
    assert feed(task, [(topics.USAGE, usage(event_id="evt-1", idempotency_key="another"))])
