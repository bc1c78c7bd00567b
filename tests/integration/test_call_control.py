"""Retry budgets and circuit breakers end to end: usage events through the real worker on
the real broker, signed signals, a real BudgetGuard and the edge's /v1/check and /v1/authz."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from tests.helpers import factories
from tests.helpers.cli import tl
from tests.helpers.edge import Served, served, with_topics
from tests.helpers.kafka_io import produce, read_committed
from tests.helpers.settings import isolated
from tests.helpers.signing_keys import key_file, writer_env
from tests.helpers.waiting import wait_for, wait_value
from tokenledger import BudgetGuard, Decision
from tokenledger.contract import topics
from tokenledger.contract.call_control import BreakerSignal, RetryBudgetSignal, kind_of
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker
from tokenledger.streams.worker.breakers import BreakerConfig
from tokenledger.streams.worker.task import PartitionTask

pytestmark = pytest.mark.integration

CALL_NUSD = 11_670_000  # factories.usage() on gpt-4o: $0.01167
COOLDOWN_S = 8


@dataclass
class Pipeline:
    settings: Settings
    engine: worker.TransactionalEngine
    guard: BudgetGuard
    edge: Served
    env: dict[str, str]

    def send(self, *events: Any) -> None:
        produce(
            self.settings.kafka,
            self.settings.topic(topics.USAGE),
            [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
        )

    def signals(self, count: int) -> list[RetryBudgetSignal | BreakerSignal]:
        out: list[RetryBudgetSignal | BreakerSignal] = []
        for m in read_committed(self.settings.kafka, self.settings.topic(topics.SIGNALS), count):
            kind = kind_of(m.value())
            if kind == "retry_budget_signal":
                out.append(RetryBudgetSignal.model_validate_json(m.value()))
            elif kind == "breaker_signal":
                out.append(BreakerSignal.model_validate_json(m.value()))
        return out

    def retry_budgets(self) -> set[str]:
        """The retry budget scopes the running worker's partitions know."""
        tasks = [cast(PartitionTask, t) for t in self.engine.tasks.values()]
        return {s for t in tasks if t.control for s in t.control.retries.configs.by_scope}

    def check(self, **query: str) -> dict[str, Any]:
        path = "/v1/check?" + "&".join(f"{k}={v}" for k, v in {"tenant": "acme", **query}.items())
        answer: dict[str, Any] = self.edge.call("GET", path).json()
        return answer


@pytest.fixture
def pipeline(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    settings = isolated(kafka_bootstrap, 2)
    key = key_file(tmp_path, "worker")
    for name, value in writer_env(key).items():  # the worker and the admin CLI sign
        monkeypatch.setenv(name, value)
    cooldown = timedelta(seconds=COOLDOWN_S)
    engine = worker.build(
        settings, "w1", heartbeat=timedelta(hours=1), breakers=BreakerConfig(cooldown=cooldown)
    )
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    guard = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS)).start()
    assert guard.wait_ready(30) and guard.public_keys is not None  # it verifies signatures
    topics_env = with_topics(settings, tmp_path)
    env = {**os.environ, **topics_env}
    reader = {**topics_env, "TOKENLEDGER_SIGNING_KEY_FILE": ""}  # the edge only verifies
    with served(reader, tmp_path) as edge:
        yield Pipeline(settings, engine, guard, edge, env)
    guard.close()
    engine.stop()
    thread.join(30)


def test_retries_past_the_budget_are_refused_on_that_route_only(pipeline: Pipeline) -> None:
    p, guard = pipeline, pipeline.guard
    at = datetime.now(UTC) - timedelta(seconds=1)  # one instant: the minute never slides here
    first = [
        factories.usage(ts=at, request_id=f"r{i}", idempotency_key=f"r{i}", route="chat")
        for i in range(30)
    ]
    retries = [
        factories.usage(ts=at, request_id=f"r{i}", idempotency_key=f"r{i}", attempt=2, route="chat")
        for i in range(10)
    ]
    elsewhere = [
        factories.usage(
            ts=at, request_id=f"s{i}", idempotency_key=f"s{i}", attempt=2, route="search"
        )
        for i in range(8)
    ]
    p.send(*first, *retries[:9], *elsewhere)
    wait_for(lambda: p.engine.records >= 47, 30, "the worker to commit 47 events")
    assert guard.check("acme", route="chat", attempt=2).state == "allow"  # 9 of 10
    p.send(retries[9])

    def retry_on_chat() -> Decision:
        return guard.check("acme", route="chat", attempt=2)

    refused = wait_value(retry_on_chat, lambda d: not d.allowed, "the retry budget block")
    assert (refused.state, refused.scope) == ("retry_budget", "tenant/acme/route/chat/retry-budget")
    assert refused.reason == (
        "attempt 2 refused: retry budget of route 'chat' used: 10 retries against 30 first "
        "attempts in a minute; it allows 10 (20% of first attempts, at least 10); first "
        "attempts pass"
    )
    assert guard.check("acme", route="chat", attempt=1).state == "allow"
    assert guard.check("acme", route="search", attempt=2).state == "allow"
    assert guard.check("globex", route="chat", attempt=2).state == "allow"
    edge = p.check(route="chat", attempt="2")
    assert (edge["allowed"], edge["state"], edge["reason"]) == (
        False,
        "retry_budget",
        refused.reason,
    )
    assert p.check(route="chat", attempt="1")["allowed"] is True
    authz = p.edge.call(
        "GET",
        "/v1/authz",
        headers={
            "x-tokenledger-tenant": "acme",
            "x-tokenledger-route": "chat",
            "x-tokenledger-attempt": "3",
        },
    )
    assert authz.status == 429 and authz.headers["x-tokenledger-state"] == "retry_budget"

    # a dollar cap set with the CLI: the next retry on search costs more than it allows
    done = tl(
        p.env, "retry-budget", "set", "--tenant", "acme", "--route", "search", "--max-usd", "0.02"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "set tenant/acme/route/search/retry-budget: retries up to 20% of first attempts, at "
        "least 10, per minute, at most $0.02 of retries\n"
    )
    wait_for(
        lambda: "tenant/acme/route/search/retry-budget" in p.retry_budgets(),
        30,
        "the worker to read the retry budget",
    )
    p.send(factories.usage(ts=at, request_id="s8", idempotency_key="s8", attempt=2, route="search"))
    capped = wait_value(
        lambda: guard.check("acme", route="search", attempt=2),
        lambda d: not d.allowed,
        "the dollar cap",
    )
    assert "retries cost $0.10503 in a minute; it allows $0.02" in capped.reason
    assert guard.check("acme", route="search", attempt=1).allowed

    signals = sorted(p.signals(2), key=lambda s: s.scope)  # keyed by scope: any partition
    assert [
        (s.scope, s.state, s.first_attempts, s.retries, s.retry_nusd, s.allowed_retries)
        for s in signals
        if isinstance(s, RetryBudgetSignal)
    ] == [
        ("tenant/acme/route/chat/retry-budget", "block", 30, 10, 10 * CALL_NUSD, 10),
        ("tenant/acme/route/search/retry-budget", "block", 0, 9, 9 * CALL_NUSD, 10),
    ]
    assert p.engine.counters()["signal.retry_budget.block"] == 2


def test_failures_open_the_breaker_probes_half_open_it_and_successes_close_it(
    pipeline: Pipeline,
) -> None:
    p, guard = pipeline, pipeline.guard
    call = {"route": "chat", "provider": "openai", "model": "gpt-4o"}

    def gpt4o() -> Decision:
        return guard.check("acme", route="chat", provider="openai", model="gpt-4o")

    now = datetime.now(UTC)
    p.send(
        *(
            factories.usage(
                ts=now,
                request_id=f"f{i}",
                idempotency_key=f"f{i}",
                success=False,
                error="HTTP 503",
                route="chat",
            )
            for i in range(20)
        )
    )
    opened = wait_value(gpt4o, lambda d: not d.allowed, "the breaker to open")
    assert (opened.state, opened.scope) == (
        "breaker",
        "tenant/acme/route/chat/breaker/openai/gpt-4o",
    )
    assert opened.reason.startswith(
        "circuit open for openai gpt-4o on route 'chat': 20 of 20 calls failed in a minute; "
        f"cool-down {COOLDOWN_S}s; refused until "
    )
    edge = p.check(**call)
    assert (edge["allowed"], edge["state"], edge["reason"]) == (False, "breaker", opened.reason)
    assert guard.check("acme", route="chat", provider="openai", model="gpt-4o-mini").allowed

    probe = wait_value(gpt4o, lambda d: d.allowed, "half-open", timeout=COOLDOWN_S + 20)
    assert probe.state == "probe" and probe.reason.endswith("half-open: this call is a probe")
    assert [gpt4o().state for _ in range(10)] == ["breaker"] * 9 + ["probe"]
    assert p.check(**call)["state"] == "probe"  # the edge decides by itself, as every guard

    now = datetime.now(UTC)  # after open_until on this clock: these are the probes
    p.send(
        *(
            factories.usage(ts=now, request_id=f"p{i}", idempotency_key=f"p{i}", route="chat")
            for i in range(5)
        )
    )
    closed = wait_value(gpt4o, lambda d: d.state == "allow", "the breaker to close")
    assert closed.allowed and p.check(**call)["state"] == "allow"

    signals = [s for s in p.signals(2) if isinstance(s, BreakerSignal)]
    assert [(s.state, s.calls, s.failures, s.openings) for s in signals] == [
        ("open", 20, 20, 1),
        ("closed", 5, 0, 0),
    ]
    assert signals[0].open_until - signals[0].opened_at == timedelta(seconds=COOLDOWN_S)
    assert signals[0].reason == opened.reason.split("; refused until")[0]
