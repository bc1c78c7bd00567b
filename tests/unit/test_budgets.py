"""The budget state machine, windows in timezones, reservations and rollover (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import factories
from tokenledger.contract.messages import Budget
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budgets import (
    BudgetTracker,
    budget_window,
    evaluate,
)
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.store import DiskState

NANO = 1_000_000_000


def budget(**overrides: object) -> Budget:
    fields: dict[str, object] = {
        "tenant_id": "acme",
        "limit_nusd": 10 * NANO,
        "warn_pct": (50, 80),
        "updated_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return Budget(**fields)  # type: ignore[arg-type]


def test_windows_follow_the_budget_timezone_across_dst() -> None:
    # 2026-03-29 is the spring-forward day in Berlin: 23 hours long
    start, end = budget_window(datetime(2026, 3, 29, 12, tzinfo=UTC), "day", "Europe/Berlin")
    assert (start, end) == (
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )
    start, end = budget_window(datetime(2026, 11, 26, 23, 30, tzinfo=UTC), "day", "Europe/Berlin")
    assert start == datetime(2026, 11, 26, 23, tzinfo=UTC)  # already the 27th in Berlin
    start, end = budget_window(datetime(2026, 11, 26, 10, tzinfo=UTC), "day", "Asia/Kolkata")
    assert (start, end - start) == (datetime(2026, 11, 25, 18, 30, tzinfo=UTC), timedelta(days=1))
    assert budget_window(datetime(2026, 11, 26, 10, 5, tzinfo=UTC), "hour", "UTC")[0] == datetime(
        2026, 11, 26, 10, tzinfo=UTC
    )
    week = budget_window(datetime(2026, 11, 26, tzinfo=UTC), "week", "UTC")
    assert week == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    month = budget_window(datetime(2026, 12, 31, 23, tzinfo=UTC), "month", "UTC")
    assert month == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("spend", "state", "pct"),
    [
        (0, "allow", None),
        (4_999_999_999, "allow", None),
        (5 * NANO, "warn", 50),
        (8 * NANO, "warn", 80),
        (10 * NANO - 1, "warn", 80),
        (10 * NANO, "block", 100),
        (25 * NANO, "block", 100),
    ],
)
def test_state_from_spend(spend: int, state: str, pct: int | None) -> None:
    got_state, got_pct, reason = evaluate(budget(), spend)
    assert (got_state, got_pct) == (state, pct)
    assert "$10.00" in reason


def tracker(*budgets: Budget, timeout_s: int = 600, heartbeat_s: int = 86_400) -> BudgetTracker:
    """A tracker over ``budgets``; heartbeats a day apart unless a test is about them."""
    book = BudgetDefinitions()
    for b in budgets:
        book.apply(b.scope.encode(), b.model_dump_json().encode())
    return BudgetTracker(
        ChangelogState(),
        book,
        reservation_timeout=timedelta(seconds=timeout_s),
        heartbeat=timedelta(seconds=heartbeat_s),
    )


def usage_at(now: datetime, cost: int, **overrides: object) -> object:
    return factories.enriched(ts=now - timedelta(seconds=1), cost_nusd=cost, **overrides)


def test_signals_are_state_changes_only() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget())
    t.on_usage(usage_at(now, 4 * NANO, request_id="r1"))  # type: ignore[arg-type]
    assert t.end_batch(now) == []  # allowed scopes stay quiet
    t.on_usage(usage_at(now, 1 * NANO, request_id="r2"))  # type: ignore[arg-type]
    (warn,) = t.end_batch(now)
    assert (warn.state, warn.threshold_pct, warn.spend_nusd, warn.scope) == (
        "warn",
        50,
        5 * NANO,
        "tenant/acme",
    )
    t.on_usage(usage_at(now, 1, request_id="r3"))  # type: ignore[arg-type]
    assert t.end_batch(now) == []  # still warn 50: no new signal
    t.on_usage(usage_at(now, 5 * NANO, request_id="r4"))  # type: ignore[arg-type]
    (block,) = t.end_batch(now)
    assert (block.state, block.spend_nusd, block.limit_nusd) == ("block", 10 * NANO + 1, 10 * NANO)
    assert (block.window_start, block.window_end) == (
        datetime(2026, 11, 26, tzinfo=UTC),
        datetime(2026, 11, 27, tzinfo=UTC),
    )


def test_rollover_publishes_allow_once() -> None:
    now = datetime(2026, 11, 26, 23, 59, tzinfo=UTC)
    t = tracker(budget())
    t.on_usage(usage_at(now, 11 * NANO))  # type: ignore[arg-type]
    assert [s.state for s in t.end_batch(now)] == ["block"]
    assert t.end_batch(now + timedelta(seconds=30)) == []
    (allow,) = t.end_batch(datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC))
    assert (allow.state, allow.spend_nusd) == ("allow", 0)
    assert allow.window_start == datetime(2026, 11, 27, tzinfo=UTC)
    assert t.end_batch(datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC)) == []


def test_reservations_count_until_settled_or_expired() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget(), timeout_s=60)
    t.on_request(
        factories.request(
            request_id="r1", reserved_cost_nusd=9 * NANO, ts=now - timedelta(seconds=2)
        )
    )
    (warn,) = t.end_batch(now)
    assert (warn.state, warn.threshold_pct, warn.spend_nusd) == ("warn", 80, 9 * NANO)
    t.on_usage(usage_at(now, 1 * NANO, request_id="r1"))  # type: ignore[arg-type]
    (allow,) = t.end_batch(now)
    assert (allow.state, allow.spend_nusd) == ("allow", 1 * NANO)
    t.on_request(
        factories.request(
            request_id="r2", reserved_cost_nusd=20 * NANO, ts=now - timedelta(seconds=1)
        )
    )
    assert [s.state for s in t.end_batch(now)] == ["block"]
    (expired,) = t.end_batch(now + timedelta(seconds=61))  # an orphan: no usage ever came
    assert (expired.state, expired.spend_nusd) == ("allow", 1 * NANO)


def test_usage_before_its_request_settles_it() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget())
    t.on_usage(usage_at(now, 1 * NANO, request_id="r9", attempt=2))  # type: ignore[arg-type]
    t.on_request(
        factories.request(
            request_id="r9", attempt=2, reserved_cost_nusd=9 * NANO, ts=now - timedelta(seconds=2)
        )
    )
    assert t.end_batch(now) == []  # 1 of 10: the late reservation was already settled
    assert t.spend(budget(), *budget_window(now, "day", "UTC")) == 1 * NANO


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_settle_marks_leave_memory_and_are_forgotten_after_the_timeout(
    kind: str, tmp_path: Path
) -> None:
    state = ChangelogState() if kind == "memory" else DiskState(tmp_path / "p")
    t = BudgetTracker(state, BudgetDefinitions(), reservation_timeout=timedelta(seconds=60))
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)

    def commit(at: datetime) -> dict[str, str | None]:
        t.end_batch(at)
        changes = dict(state.changes())
        state.applied(None)
        return changes

    for i in range(3):
        t.on_usage(usage_at(now, NANO, request_id=f"r{i}"))  # type: ignore[arg-type]
    commit(now)
    marks = {f"s:acme r{i}:1" for i in range(3)}
    assert {k for k, _ in state.items("s:")} == marks
    assert t._expiry == []  # memory holds reservations only, not one entry per usage event
    assert commit(now + timedelta(seconds=58)) == {}  # event time + 60 s not yet past
    assert commit(now + timedelta(seconds=62)) == dict.fromkeys(marks)  # tombstoned
    assert list(state.items("s:")) == []


def test_feature_budgets_and_removal() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    feature_budget = budget(feature="answer", limit_nusd=2 * NANO)
    t = tracker(budget(), feature_budget)
    t.on_usage(usage_at(now, 3 * NANO, feature="answer"))  # type: ignore[arg-type]
    t.on_usage(usage_at(now, 3 * NANO, feature="search"))  # type: ignore[arg-type]
    signals = {s.scope: s for s in t.end_batch(now)}
    assert signals["tenant/acme/feature/answer"].state == "block"
    assert (signals["tenant/acme"].state, signals["tenant/acme"].threshold_pct) == ("warn", 50)
    t.book.apply(b"tenant/acme/feature/answer", None)
    t.on_budgets_changed(t.book.changed)
    (removed,) = t.end_batch(now)
    assert (removed.scope, removed.state, removed.reason) == (
        "tenant/acme/feature/answer",
        "allow",
        "budget removed",
    )


def test_state_survives_a_restore() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget())
    t.on_request(factories.request(request_id="r1", reserved_cost_nusd=9 * NANO, ts=now))
    t.on_usage(usage_at(now, 2 * NANO, request_id="other"))  # type: ignore[arg-type]
    assert [s.state for s in t.end_batch(now)] == ["block"]
    restored = ChangelogState()
    for key, value in t.state.changes():
        restored.restore(key, value)
    again = BudgetTracker(restored, t.book)
    assert again.spend(budget(), *budget_window(now, "day", "UTC")) == 11 * NANO
    again.on_usage(usage_at(now, 1, request_id="r2"))  # type: ignore[arg-type]
    assert again.end_batch(now) == []  # re-evaluated: still block, already published
    again.on_usage(usage_at(now, 1, request_id="r1"))  # type: ignore[arg-type]  # settles r1
    assert [(s.state, s.spend_nusd) for s in again.end_batch(now)] == [("allow", 2 * NANO + 2)]


def test_warn_and_block_are_reasserted_on_the_heartbeat_with_newer_issue_times() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget(), budget(tenant_id="calm"), heartbeat_s=10)
    t.on_usage(usage_at(now, 11 * NANO))  # type: ignore[arg-type]
    t.on_usage(usage_at(now, 1 * NANO, tenant_id="calm"))  # type: ignore[arg-type]
    (first,) = t.end_batch(now)
    assert t.end_batch(now + timedelta(seconds=5)) == []  # not yet due
    (again,) = t.end_batch(now + timedelta(seconds=10))  # only the blocked scope: calm is allowed
    assert (again.scope, again.state, again.spend_nusd) == (first.scope, "block", 11 * NANO)
    assert again.issued_at == now + timedelta(seconds=10) > first.issued_at


def test_issue_times_survive_a_restore_and_stay_monotonic() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker(budget(), heartbeat_s=10)
    t.on_usage(usage_at(now, 11 * NANO))  # type: ignore[arg-type]
    (first,) = t.end_batch(now + timedelta(minutes=5))
    restored = BudgetTracker(t.state, t.book, heartbeat=timedelta(seconds=10))
    assert restored.end_batch(now) == []  # a restart publishes nothing it already published
    (beat,) = restored.end_batch(now + timedelta(seconds=10))  # still before the last issue
    assert beat.state == "block" and beat.issued_at == first.issued_at + timedelta(milliseconds=1)


def test_a_budget_set_mid_window_counts_a_tenant_named_with_a_colon() -> None:
    """Names may hold ':' (``eu:acme``): its spend before the budget existed is the
    tenant's, so the new budget blocks at once."""
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    t = tracker()
    t.on_usage(usage_at(now, 11 * NANO, tenant_id="eu:acme"))  # type: ignore[arg-type]
    assert t.end_batch(now) == []  # no budget yet
    limit = budget(tenant_id="eu:acme")
    t.book.apply(limit.scope.encode(), limit.model_dump_json().encode())
    t.on_budgets_changed(t.book.changed)
    (block,) = t.end_batch(now)
    assert (block.scope, block.state, block.spend_nusd) == ("tenant/eu:acme", "block", 11 * NANO)
