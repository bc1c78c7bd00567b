"""Retry budgets and breakers at the gateway: the guard's own decision from the signals, the
edge's question, an older reader's view of the new kinds, the CLI's one-line errors."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.helpers import factories
from tests.helpers.call_control import T0, breaker_signal, retry_signal
from tests.helpers.cli import one_line_error, tl
from tokenledger.contract.messages import Signal
from tokenledger.gates import breaker_decision, probe_every, retry_decision
from tokenledger.signal_book import SignalBook
from tokenledger.streams.edge.bodies import HttpError
from tokenledger.streams.edge.checks import AuthzHeaders, decide, from_headers, from_query

OPEN_UNTIL = (T0 + timedelta(seconds=30)).timestamp()


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def book(at: float = T0.timestamp()) -> tuple[SignalBook, Clock]:
    """A caught-up book whose gates read ``clock``."""
    b = SignalBook(topic="signals", public_keys=None)
    clock = Clock(at)
    b.gates.clock = clock
    b.caught_up()
    return b, clock


def feed(b: SignalBook, *signals: object) -> None:
    for s in signals:
        b.apply(s.scope.encode(), s.model_dump_json().encode())  # type: ignore[attr-defined]


def test_a_used_retry_budget_refuses_retries_and_passes_first_attempts() -> None:
    signal = retry_signal()
    assert retry_decision(signal, 1) is None
    refused = retry_decision(signal, 2)
    assert refused is not None
    assert (refused.allowed, refused.state, refused.scope) == (
        False,
        "retry_budget",
        "tenant/acme/route/chat/retry-budget",
    )
    assert refused.reason == "attempt 2 refused: retry budget of route 'chat' used"
    assert retry_decision(retry_signal(state="allow"), 3) is None


def test_an_open_breaker_refuses_then_probes_one_call_in_ten() -> None:
    signal = breaker_signal()
    shut = breaker_decision(signal, OPEN_UNTIL - 0.001, 0)
    assert shut is not None and (shut.allowed, shut.state) == (False, "breaker")
    assert shut.reason.endswith("; refused until 12:00:30 UTC")
    answers = [breaker_decision(signal, OPEN_UNTIL, n) for n in range(21)]
    assert [n for n, d in enumerate(answers) if d is not None and d.allowed] == [0, 10, 20]
    assert {d.state for d in answers if d is not None} == {"probe", "breaker"}
    assert answers[1] is not None and answers[1].reason.endswith(
        "half-open: 1 call in 10 is a probe, this one is refused"
    )
    assert breaker_decision(breaker_signal(state="closed"), OPEN_UNTIL, 0) is None
    assert [probe_every(p) for p in (1, 10, 30, 50, 100)] == [100, 10, 4, 2, 1]


def test_the_book_asks_the_gates_first_and_scopes_them_exactly() -> None:
    b, clock = book()
    feed(b, retry_signal(), breaker_signal())
    assert b.check("acme", route="chat", attempt=2).state == "retry_budget"
    assert b.check("acme", route="chat", attempt=1).allowed
    assert b.check("acme", route="search", attempt=2).allowed  # another route
    assert b.check("globex", route="chat", attempt=2).allowed  # another tenant

    def gpt4o() -> str:
        return b.check("acme", route="chat", provider="openai", model="gpt-4o").state

    assert gpt4o() == "breaker"
    assert b.check("acme", route="chat", provider="openai", model="gpt-4o-mini").allowed
    assert b.check("acme", route="chat").allowed  # no model named: no breaker asked
    clock.at = OPEN_UNTIL
    assert [gpt4o() for _ in range(11)] == ["probe"] + ["breaker"] * 9 + ["probe"]
    feed(b, factories.signal(issued_at=T0))  # the tenant's budget blocks: so does a probe
    assert [gpt4o() for _ in range(10)] == ["breaker"] * 9 + ["block"]
    feed(b, breaker_signal(state="closed", issued_at=T0 + timedelta(seconds=40)))
    assert gpt4o() == "block"
    assert b.gates.state() == [retry_signal()]


def test_a_replayed_older_breaker_signal_is_ignored() -> None:
    b, _ = book()
    feed(b, breaker_signal(issued_at=T0 + timedelta(seconds=5), state="closed"))
    feed(b, breaker_signal(issued_at=T0))  # a copy of the earlier open
    assert not b.gates and b.replayed_signals == 1
    assert b.check("acme", route="chat", provider="openai", model="gpt-4o").allowed


def test_degraded_feeds_answer_before_the_gates() -> None:
    b = SignalBook(topic="signals", public_keys=None, on_unavailable="closed")
    feed(b, breaker_signal())
    assert b.check("acme", route="chat", provider="openai", model="gpt-4o").state == "unavailable"


def test_an_older_reader_refuses_the_new_kinds_instead_of_misreading_them() -> None:
    """``Signal`` is what releases before these kinds parse the signals topic with: a breaker
    or retry-budget record is invalid to it (ignored and counted), never a tenant's block."""
    for new in (retry_signal(), breaker_signal()):
        with pytest.raises(ValidationError) as caught:
            Signal.model_validate_json(new.model_dump_json())
        assert caught.value.errors()[0]["loc"] == ("kind",)
    b, _ = book()
    feed(b, retry_signal(), breaker_signal())
    assert b.state() == {} and b.invalid_signals == 0 and b.signals_seen == 2


def test_a_breaker_signal_whose_scope_is_not_its_fields_is_invalid() -> None:
    with pytest.raises(ValidationError, match="is not 'tenant/acme/route/chat/breaker"):
        breaker_signal(scope="tenant/acme")


def test_the_edge_reads_the_call_from_the_query_or_the_headers() -> None:
    b, _ = book()
    feed(b, retry_signal(), breaker_signal())
    q = from_query({"tenant": "acme", "route": "chat", "attempt": "2"})
    assert (q.attempt, decide(b, q).state) == (2, "retry_budget")
    q = from_query({"tenant": "acme", "route": "chat", "provider": "openai", "model": "gpt-4o"})
    assert (q.attempt, decide(b, q).state) == (1, "breaker")
    names = AuthzHeaders()
    h = from_headers({names.tenant: "acme", names.route: "chat", names.attempt: "3"}, names)
    assert decide(b, h).reason.startswith("attempt 3 refused: ")
    for bad in ("0", "two", "1001", "²", "-1"):
        with pytest.raises(HttpError) as caught:
            from_query({"tenant": "acme", "attempt": bad})
        assert (caught.value.status, caught.value.reason) == (400, "bad_attempt")
        assert caught.value.message == (
            f"attempt {bad!r} is not a whole number from 1 to 1000 (1 = first attempt)"
        )


ROUTE = ["--tenant", "acme", "--route", "chat"]


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (["--tenant", "acme"], "retry-budget set needs --tenant and --route"),
        (["--route", "chat"], "retry-budget set needs --tenant and --route"),
        ([*ROUTE, "--percent", "abc"], "--percent 'abc' is not a whole number, e.g. --percent 20"),
        ([*ROUTE, "--percent", "1001"], "--percent 1001 is more than 1,000"),
        ([*ROUTE, "--min-per-minute", "-1"], "--min-per-minute '-1' is not a whole number, e.g. "),
        ([*ROUTE, "--max-usd", "sNaN"], "--max-usd 'sNaN' is not an amount; write e.g. 5 or 0.50"),
        ([*ROUTE, "--max-usd", "1e-10"], "--max-usd '1e-10' must be positive with at most 9"),
        (["--tenant", "ac$me", "--route", "chat"], "--tenant 'ac$me': use 1-128 letters"),
    ],
)
def test_retry_budget_set_refuses_bad_values_in_one_line(
    args: list[str], starts: str, tmp_path: Path
) -> None:
    env = {**os.environ, "TOKENLEDGER_HOME": str(tmp_path), "TOKENLEDGER_KAFKA": "127.0.0.1:1"}
    one_line_error(tl(env, "retry-budget", "set", *args, timeout=60), 2, starts)
