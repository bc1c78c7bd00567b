"""BudgetGuard decisions from signals and guardrails, without a broker."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import factories
from tokenledger.guard import BudgetGuard, Decision, Guardrails


def healthy(guard: BudgetGuard) -> BudgetGuard:
    """A guard that has caught up (what its consumer thread does after reading the topic)."""
    guard.book.caught_up()
    return guard


ISSUED = itertools.count()


def signal_bytes(**overrides: object) -> bytes:
    """A signal issued after every one made before it (the guard takes only newer ones)."""
    issued = datetime(2026, 11, 26, 12, tzinfo=UTC) + timedelta(seconds=next(ISSUED))
    return factories.signal(**{"issued_at": issued, **overrides}).model_dump_json().encode()


def test_not_caught_up_follows_the_policy() -> None:
    open_guard = BudgetGuard(on_unavailable="open")
    closed_guard = BudgetGuard(on_unavailable="closed")
    assert not open_guard.ready()
    d_open, d_closed = open_guard.check("acme"), closed_guard.check("acme")
    assert (d_open.allowed, d_open.state, d_open.degraded) == (True, "unavailable", True)
    assert (d_closed.allowed, d_closed.state, d_closed.degraded) == (False, "unavailable", True)
    assert "failing closed" in d_closed.reason


def test_block_allow_and_feature_scopes() -> None:
    guard = healthy(BudgetGuard())
    assert guard.check("acme").allowed and guard.check("acme").state == "allow"
    guard.apply(
        b"tenant/acme/feature/answer",
        signal_bytes(scope="tenant/acme/feature/answer", feature="answer"),
    )
    blocked = guard.check("acme", "answer")
    assert (blocked.allowed, blocked.state, blocked.scope) == (
        False,
        "block",
        "tenant/acme/feature/answer",
    )
    assert "($50.00 of $50.00)" in blocked.reason
    assert guard.check("acme", "search").allowed and guard.check("acme").allowed
    guard.apply(b"tenant/acme", signal_bytes())
    assert not guard.check("acme", "search").allowed and not guard.check("acme").allowed
    assert guard.check("globex").allowed
    guard.apply(b"tenant/acme", signal_bytes(state="allow", spend_nusd=0))
    assert guard.check("acme").allowed and not guard.check("acme", "answer").allowed
    guard.apply(b"tenant/acme/feature/answer", None)  # tombstone
    assert guard.check("acme", "answer").allowed


def test_warn_allows_until_the_estimate_would_exceed() -> None:
    guard = healthy(BudgetGuard())
    guard.apply(
        b"tenant/acme",
        signal_bytes(state="warn", threshold_pct=80, reason="80% used", spend_nusd=40_000_000_000),
    )
    d = guard.check("acme", est_cost=9_000_000_000)
    assert (d.allowed, d.state) == (True, "warn")
    over = guard.check("acme", est_cost=10_000_000_001)
    assert (over.allowed, over.state) == (False, "block")
    assert over.reason == "estimated cost would exceed the budget ($50.00 of $50.00)"


def test_invalid_signals_are_ignored_and_counted() -> None:
    guard = healthy(BudgetGuard())
    guard.apply(b"tenant/acme", b'{"state": "block"}')
    assert guard.invalid_signals == 1 and guard.check("acme").allowed


def test_guardrails_give_precise_reasons() -> None:
    rails = Guardrails(
        max_input_tokens={"rag": 8000, "*": 4000},
        max_output_tokens={"*": 1000},
        max_cost_per_request_nusd=50_000_000,
        max_retries=2,
        max_tool_steps=5,
    )
    guard = healthy(BudgetGuard(guardrails=rails))
    cases = [
        (
            {"route": "rag", "input_tokens": 8001},
            "input tokens 8001 exceed the limit of 8000 for route 'rag'",
        ),
        (
            {"route": "chat", "input_tokens": 4001},
            "input tokens 4001 exceed the limit of 4000 for route 'chat'",
        ),
        ({"output_tokens": 1001}, "output tokens 1001 exceed the limit of 1000 for route ''"),
        (
            {"est_cost": 50_000_001},
            "estimated cost $0.050000001 exceeds the per-request limit $0.05",
        ),
        ({"attempt": 4}, "attempt 4 exceeds the limit of 2 retries"),
        ({"tool_steps": 6}, "6 tool steps exceed the limit of 5"),
    ]
    for kwargs, reason in cases:
        d = guard.check("acme", **kwargs)  # type: ignore[arg-type]
        assert (d.allowed, d.state, d.reason) == (False, "guardrail", reason)
    ok = guard.check(
        "acme",
        route="rag",
        input_tokens=8000,
        output_tokens=1000,
        est_cost=50_000_000,
        attempt=3,
        tool_steps=5,
    )
    assert ok.allowed


def test_a_missing_signals_topic_is_said_once_and_keeps_the_guard_not_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = BudgetGuard(topic="staging.tokenledger.signals.v1", on_unavailable="open")
    reading = "the signals topic has not been read to its end yet; failing open"
    missing = "the signals topic 'staging.tokenledger.signals.v1' does not exist; failing open"
    assert guard.not_ready_reason() == reading
    with caplog.at_level(logging.WARNING, logger="tokenledger.guard"):
        for _ in range(3):  # three heartbeats find no topic
            guard.topic_exists(False)
    assert [r.getMessage() for r in caplog.records if r.name == "tokenledger.guard"] == [
        "the signals topic 'staging.tokenledger.signals.v1' does not exist: this guard is not "
        "ready and fails open until it does (are TOKENLEDGER_TOPIC_NAMESPACE and topic= those "
        "of the workers?)"
    ]
    assert (guard.ready(), guard.not_ready_reason()) == (False, missing)
    assert guard.check("acme") == Decision(True, "unavailable", missing, None, True)
    guard.topic_exists(True)  # created: now it is being read
    assert guard.not_ready_reason() == reading
    guard.book.caught_up()
    assert (guard.ready(), guard.not_ready_reason(), guard.check("acme").state) == (
        True,
        None,
        "allow",
    )
