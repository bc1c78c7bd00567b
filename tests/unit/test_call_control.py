"""Retry budgets and circuit breakers in the worker, from raw usage events through the real
partition task (validate, dedup, price) to the signals it publishes; no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import call_control, factories
from tests.helpers.signing_keys import ring, signer
from tokenledger import signing
from tokenledger.contract.call_control import BreakerSignal, RetryBudgetSignal, kind_of
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.demo.offline import NAMES
from tokenledger.streams.worker.breakers import BreakerConfig
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.retry_budgets import Limits, evaluate
from tokenledger.streams.worker.sliding import Minute, window
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.task import PartitionTask, partition_task

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
"""The processing clock (fixed); event times are relative to T."""
T = NOW - timedelta(minutes=5)
CALL_NUSD = 11_670_000  # factories.usage() on gpt-4o
PRICES = load_price_book()
USAGE = NAMES["tokenledger.usage.v1"]


class Worker:
    """One partition task over a changelog state, fed raw usage events."""

    def __init__(
        self,
        state: ChangelogState | None = None,
        book: BudgetDefinitions | None = None,
        **options: Any,
    ) -> None:
        self.state = state or ChangelogState()
        self.book = book or BudgetDefinitions()
        self.options = options
        self.task: PartitionTask = partition_task(self.state, PRICES, self.book, NAMES, **options)
        self.offset = 0
        self.n = 0

    def call(self, at: float, *, attempt: int = 1, **fields: Any) -> None:
        """A usage event ``at`` seconds after T (a retry shares its request's key)."""
        self.n += 1
        rid = fields.pop("request_id", f"r{self.n}")
        event = factories.usage(
            ts=T + timedelta(seconds=at),
            request_id=rid,
            idempotency_key=rid,
            attempt=attempt,
            **fields,
        )
        self.offset += 1
        self.task.process(USAGE, 0, self.offset, None, event.model_dump_json().encode(), NOW)

    def signals(self, now: datetime = NOW) -> list[Any]:
        """The call-control signals of a batch end."""
        out: list[Any] = []
        for o in self.task.end_batch(now):
            kind = kind_of(o.value)
            if kind == "retry_budget_signal":
                out.append(RetryBudgetSignal.model_validate_json(o.value))
            elif kind == "breaker_signal":
                out.append(BreakerSignal.model_validate_json(o.value))
        self.state.changes()  # what the engine writes to the changelog
        return out

    def restarted(self) -> Worker:
        """A new task over the state rebuilt from the changelog (as after a restart)."""
        fresh = ChangelogState()
        for key, value in self.state.data.items():
            fresh.restore(key, value)
        again = Worker(fresh, self.book, **self.options)
        again.offset, again.n = self.offset, self.n
        return again


def test_a_minute_slides_by_the_second_and_survives_encoding() -> None:
    m = Minute(2)
    m.add(1_000, 1, 0)
    m.add(1_999, 1, 1)
    m.add(60_500, 1, 0)
    assert m.totals() == [3, 1]
    assert not m.slide(60_999) and m.totals() == [3, 1]  # second 1 is still in (1..60)
    assert m.slide(61_000) and m.totals() == [1, 0]  # now seconds 2..61
    assert window(61_000) == (2_000, 62_000)
    assert Minute.decode(m.encode(), 2).seconds == m.seconds == {60: [1, 0]}


@pytest.mark.parametrize(
    ("limits", "first", "retries", "nusd", "state"),
    [
        (Limits(), 30, 9, 0, "allow"),  # the floor: 10 a minute
        (Limits(), 30, 10, 0, "block"),
        (Limits(), 100, 19, 0, "allow"),  # 20% of 100
        (Limits(), 100, 20, 0, "block"),
        (Limits(50, 0), 7, 2, 0, "allow"),  # 50% of 7 = 3 (integer): the third uses it
        (Limits(50, 0), 7, 3, 0, "block"),
        (Limits(0, 0), 5, 0, 0, "block"),  # no retries at all
        (Limits(max_retry_nusd=20_000_000), 30, 1, 19_999_999, "allow"),
        (Limits(max_retry_nusd=20_000_000), 30, 2, 20_000_000, "block"),
    ],
)
def test_the_budget_is_the_larger_of_the_floor_and_the_share(
    limits: Limits, first: int, retries: int, nusd: int, state: str
) -> None:
    assert evaluate(limits, "chat", first, retries, nusd)[0] == state


def test_retries_past_the_budget_block_that_route_only_and_age_out() -> None:
    w = Worker()
    for i in range(30):
        w.call(i, route="chat")
    for i in range(9):
        w.call(30 + i, attempt=2, route="chat", request_id=f"r{i + 1}")
        w.call(30 + i, attempt=2, route="search")
    assert w.signals() == []  # 9 of 10 on chat; search has no first attempts but the floor
    w.call(40, attempt=2, route="chat", request_id="r10")
    (block,) = w.signals()
    assert (
        block.scope,
        block.state,
        block.first_attempts,
        block.retries,
        block.retry_nusd,
        block.allowed_retries,
    ) == ("tenant/acme/route/chat/retry-budget", "block", 30, 10, 10 * CALL_NUSD, 10)
    assert (block.window_start, block.window_end) == (
        T - timedelta(seconds=19),
        T + timedelta(seconds=41),
    )
    assert block.reason == (
        "retry budget of route 'chat' used: 10 retries against 30 first attempts in a minute; "
        "it allows 10 (20% of first attempts, at least 10); first attempts pass"
    )
    w.call(41, route="chat")
    assert w.signals() == []  # still used: a state is published once
    w.call(89, route="chat")  # the watermark passes second 29: retries at 30.. still in
    assert w.signals() == []
    w.call(99, route="chat")  # now seconds 40..99: one retry left in the minute
    (allow,) = w.signals()
    assert (allow.state, allow.first_attempts, allow.retries) == ("allow", 3, 1)
    assert w.task.counters["signal.retry_budget.block"] == 1
    assert w.task.counters["signal.retry_budget.allow"] == 1


def test_a_restarted_worker_keeps_the_minute_and_what_it_published() -> None:
    w = Worker()
    for i in range(10):
        w.call(i, attempt=2, route="chat")
    (block,) = w.signals()
    again = w.restarted()
    again.call(10, attempt=2, route="chat")
    assert again.signals() == []  # blocked already: no second block
    for i in range(11, 70):
        again.call(i, route="chat")
    (allow,) = again.signals()
    assert (allow.state, allow.retries, allow.first_attempts) == ("allow", 1, 59)
    assert allow.issued_at > block.issued_at


def test_a_definition_from_the_budgets_topic_sets_the_route_and_a_dollar_cap() -> None:
    book = BudgetDefinitions()
    capped = call_control.retry_budget(
        route="search", percent=0, min_per_minute=100, max_retry_nusd=2 * CALL_NUSD
    )
    book.apply(capped.scope.encode(), capped.model_dump_json().encode())
    assert book.by_scope == {} and book.invalid == 0  # not taken for a spend budget
    w = Worker(book=book)
    w.call(0, attempt=2, route="search")
    assert w.signals() == []
    w.call(1, attempt=2, route="search")
    (block,) = w.signals()
    assert (block.state, block.retry_nusd, block.max_retry_nusd) == (
        "block",
        2 * CALL_NUSD,
        2 * CALL_NUSD,
    )
    assert "retries cost $0.02334 in a minute; it allows $0.02334" in block.reason
    book.apply(capped.scope.encode(), None)  # back to the defaults (10 a minute)
    (allow,) = w.signals()
    assert allow.state == "allow" and book.retry_budgets.by_scope == {}


def test_failures_open_the_breaker_probes_decide_and_the_cooldown_doubles() -> None:
    w = Worker(breakers=BreakerConfig())
    for i in range(19):
        w.call(i, success=False, route="chat")
    w.call(19, cache="exact", success=False, route="chat")  # a cache hit called no provider
    assert w.signals() == []  # 19 model calls: fewer than 20
    w.call(20, success=True, route="chat", model="gpt-4o-mini")  # another breaker
    w.call(20, success=True, route="chat")
    (opened,) = w.signals()
    assert (opened.scope, opened.state, opened.calls, opened.failures, opened.openings) == (
        "tenant/acme/route/chat/breaker/openai/gpt-4o",
        "open",
        20,
        19,
        1,
    )
    at = T + timedelta(seconds=20)
    assert (opened.opened_at, opened.open_until, opened.probe_pct) == (
        at,
        at + timedelta(seconds=30),
        10,
    )
    assert opened.reason == (
        "circuit open for openai gpt-4o on route 'chat': 19 of 20 calls failed in a minute; "
        "cool-down 30s"
    )
    w.call(49, success=False, route="chat")  # began before the cool-down ended: no probe
    assert w.signals() == []
    w.call(50, success=True, route="chat")
    w.call(51, success=False, route="chat")  # a probe failed: open again, twice as long
    (again,) = w.signals()
    assert (again.state, again.openings, again.calls, again.failures) == ("open", 2, 2, 1)
    assert again.open_until == T + timedelta(seconds=51 + 60)
    assert again.reason.endswith("a probe failed after 1 succeeded; cool-down 60s")
    for i in range(5):
        w.call(111 + i, success=True, route="chat")
    (closed,) = w.signals()
    assert (closed.state, closed.calls, closed.openings) == ("closed", 5, 0)
    assert closed.reason == "circuit closed for openai gpt-4o on route 'chat': 5 probes succeeded"
    for i in range(19):  # closed again: a fresh minute, the old failures are gone
        w.call(116 + i / 10, success=False, route="chat")
    assert w.signals() == []


def test_the_cooldown_stops_doubling_at_the_maximum() -> None:
    cfg = BreakerConfig()
    assert [cfg.cooldown_ms(n) for n in (1, 2, 3, 4, 5, 6, 1000)] == [
        30_000,
        60_000,
        120_000,
        240_000,
        300_000,
        300_000,
        300_000,
    ]


def test_an_open_breaker_survives_a_restart_and_is_reasserted_on_the_heartbeat() -> None:
    w = Worker(heartbeat=timedelta(seconds=10))
    for i in range(20):
        w.call(i / 10, success=False, route="chat")
    (opened,) = w.signals()
    again = w.restarted()
    assert again.signals(NOW) == []  # the first beat is one interval after the start
    (beat,) = again.signals(NOW + timedelta(seconds=10))
    assert (beat.state, beat.open_until, beat.openings) == ("open", opened.open_until, 1)
    assert beat.issued_at == NOW + timedelta(seconds=10)
    for i in range(5):
        again.call(40 + i, success=True, route="chat")
    assert [s.state for s in again.signals(NOW + timedelta(seconds=11))] == ["closed"]


def test_signals_are_signed_by_the_worker_key() -> None:
    key = signer()
    book = BudgetDefinitions()
    task = partition_task(ChangelogState(), PRICES, book, NAMES, signer=key)
    for i in range(20):
        event = factories.usage(
            ts=T + timedelta(seconds=i / 10),
            request_id=f"r{i}",
            idempotency_key=f"r{i}",
            success=False,
        )
        task.process(USAGE, 0, i, None, event.model_dump_json().encode(), NOW)
    (out,) = [o for o in task.end_batch(NOW) if kind_of(o.value) == "breaker_signal"]
    verdict = signing.check(ring(key), out.topic, out.key, out.value, out.headers)
    assert verdict.ok and verdict.issued_ms == int(NOW.timestamp() * 1000)
    stranger = signing.check(ring(signer()), out.topic, out.key, out.value, out.headers)
    assert not stranger.ok
