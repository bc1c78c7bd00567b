"""The SDK against the real broker: exact delivery, outages, spills, and BudgetGuard."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.helpers import factories
from tests.helpers.kafka_io import consume_all
from tests.helpers.waiting import wait_for
from tokenledger import BudgetGuard, Ledger, TopicNames, tokens
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.streams.local.broker import LocalKafka

pytestmark = pytest.mark.integration


@pytest.fixture
def sdk_topics(topic_factory: Callable[..., str]) -> TopicNames:
    return TopicNames(requests=topic_factory(3), usage=topic_factory(3), outcomes=topic_factory(3))


def test_events_arrive_exactly_as_emitted(
    kafka_bootstrap: str, sdk_topics: TopicNames, tmp_path: Path
) -> None:
    sent_usage = [
        factories.usage(
            tenant_id=f"t{i % 4}", input_tokens=2000 + i, cost_nusd=i * 1_001, error='x\ty\n"z" ü'
        )
        for i in range(120)
    ]
    with Ledger(
        "support-bot", bootstrap=kafka_bootstrap, topics=sdk_topics, spill_dir=tmp_path
    ) as ledger:
        for e in sent_usage:
            ledger.emit(e)
        assert tokens.wait_loaded(60)  # exact counts below, not the heuristic
        with ledger.track(
            tenant_id="acme",
            feature="answer",
            model="gpt-4o",
            provider="openai",
            route="rag",
            prompt_version="v3",
            prompt=[{"role": "user", "content": "hello world"}],
            max_output_tokens=800,
            task_id="task-1",
        ) as call:
            call.record(
                {
                    "usage": {
                        "prompt_tokens": 20,
                        "completion_tokens": 7,
                        "prompt_tokens_details": {"cached_tokens": 8},
                    }
                }
            )
        ledger.outcome("task-1", True, tenant_id="acme", feature="answer")
        assert ledger.flush(30)
        stats = ledger.stats()
    assert (stats["emitted"], stats["delivered"], stats["spilled"]) == (123, 123, 0)

    usage = [
        UsageEvent.model_validate_json(m.value())
        for m in consume_all(kafka_bootstrap, sdk_topics.usage, 121)
    ]
    assert len(usage) == 121
    by_id = {e.event_id: e for e in usage}
    assert [by_id[e.event_id] for e in sent_usage] == sent_usage  # every field, exactly
    assert sum(e.cost_nusd or 0 for e in usage) == sum(i * 1_001 for i in range(120))

    (tracked,) = [e for e in usage if e.event_id not in {s.event_id for s in sent_usage}]
    (request_msg,) = consume_all(kafka_bootstrap, sdk_topics.requests, 1)
    request = RequestEvent.model_validate_json(request_msg.value())
    assert request_msg.key() == b"acme"
    # o200k: "user" 1 token + "hello world" 2 + 3 per message + 3 reply priming
    assert (request.estimated_input_tokens, request.max_output_tokens) == (9, 800)
    assert request.reserved_cost_nusd == 9 * 2500 + 800 * 10_000  # gpt-4o list price
    assert request.prompt_text is None  # never leaves the process unless opted in
    assert (tracked.request_id, tracked.idempotency_key) == (
        request.request_id,
        request.idempotency_key,
    )
    assert (tracked.input_tokens, tracked.output_tokens, tracked.cached_input_tokens) == (20, 7, 8)
    assert (tracked.success, tracked.estimated, tracked.service, tracked.task_id) == (
        True,
        False,
        "support-bot",
        "task-1",
    )
    (outcome_msg,) = consume_all(kafka_bootstrap, sdk_topics.outcomes, 1)
    outcome = OutcomeEvent.model_validate_json(outcome_msg.value())
    assert (outcome.task_id, outcome.success, outcome.tenant_id) == ("task-1", True, "acme")


def test_failed_call_and_retries(
    kafka_bootstrap: str, sdk_topics: TopicNames, tmp_path: Path
) -> None:
    with Ledger("svc", bootstrap=kafka_bootstrap, topics=sdk_topics, spill_dir=tmp_path) as ledger:
        first = ledger.track(
            tenant_id="acme",
            feature="f",
            model="gpt-4o-mini",
            provider="openai",
            prompt="hello world",
            max_output_tokens=50,
        )
        with pytest.raises(TimeoutError):
            with first:
                raise TimeoutError("client timeout after 30s")
        second = first.retry()
        with second as call:
            call.record(input_tokens=2, output_tokens=40)

        @ledger.track(tenant_id="acme", feature="f", model="gpt-4o-mini", provider="openai")
        def answer() -> dict[str, Any]:
            return {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}

        answer()
        answer()
        assert ledger.flush(30)
    usage = sorted(
        (
            UsageEvent.model_validate_json(m.value())
            for m in consume_all(kafka_bootstrap, sdk_topics.usage, 4)
        ),
        key=lambda e: (e.idempotency_key != first.idempotency_key, e.attempt),
    )
    assert len(usage) == 4
    failed, retried, *decorated = usage
    assert (failed.attempt, failed.success, failed.estimated) == (1, False, True)
    assert failed.error == "TimeoutError: client timeout after 30s"
    assert (failed.input_tokens, failed.output_tokens) == (2, 0)  # the estimate, no output
    assert (retried.attempt, retried.success, retried.idempotency_key) == (
        2,
        True,
        failed.idempotency_key,
    )
    assert [(d.input_tokens, d.output_tokens, d.attempt) for d in decorated] == [(3, 4, 1)] * 2
    assert decorated[0].idempotency_key != decorated[1].idempotency_key


def create_topics(bootstrap: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        future.result(30)


def test_broker_outage_spills_and_replays_every_event_once(
    own_broker: LocalKafka, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    names = TopicNames(requests="o.requests", usage="o.usage", outcomes="o.outcomes")
    create_topics(bootstrap, [names.requests, names.usage, names.outcomes])
    spill_root = tmp_path / "spill"

    def ledger() -> Ledger:
        return Ledger(
            "svc",
            bootstrap=bootstrap,
            topics=names,
            spill_dir=spill_root,
            delivery_timeout_ms=1500,
            retry_interval_s=0.2,
            fsync="always",
        )

    guard = BudgetGuard(
        bootstrap=bootstrap, topic=names.outcomes, on_unavailable="closed", stale_after_s=1.0
    ).start()
    alive = ledger()
    before = [factories.usage(input_tokens=2000 + i) for i in range(20)]
    for e in before:
        alive.emit(e)
    assert alive.flush(30)
    assert guard.wait_ready(30) and guard.check("acme").allowed

    own_broker.stop()
    during = [factories.usage(input_tokens=3000 + i) for i in range(30)]
    started = time.perf_counter()
    for e in during:
        alive.emit(e)  # never blocks, never raises
    emit_seconds = time.perf_counter() - started
    wait_for(lambda: alive.stats()["spilled"] == 30, 30, "30 events spilled")
    assert alive.stats()["degraded"] == 1
    wait_for(lambda: guard.check("acme").degraded, 30, "the guard to notice the lost broker")
    stale = guard.check("acme")
    assert (stale.allowed, stale.state) == (False, "unavailable")
    assert "lost the broker" in stale.reason

    # A second process emits while the broker is down and exits: its spill waits on disk.
    leaving = ledger()
    orphaned = [factories.usage(tenant_id="globex", input_tokens=4000 + i) for i in range(40)]
    for e in orphaned:
        leaving.emit(e)
    leaving.close(timeout=3)
    assert leaving.spilled_waiting() == 40

    own_broker.start()
    assert alive.flush(60), alive.stats()
    assert alive.stats()["replayed"] == 30
    successor = ledger()  # a new process on the same spill_dir replays the orphaned spill
    assert successor.flush(60), successor.stats()
    assert successor.stats()["replayed"] == 40
    wait_for(lambda: not guard.check("acme").degraded, 30, "the guard to recover")
    for closing in (alive, successor):
        closing.close()
    guard.close()

    received = consume_all(bootstrap, names.usage, 90)
    events = [UsageEvent.model_validate_json(m.value()) for m in received]
    ids = [e.event_id for e in events]
    assert len(ids) == 90 and len(set(ids)) == 90, "every event once"
    assert {e.event_id: e for e in events} == {e.event_id: e for e in before + during + orphaned}
    acme_order = [e.event_id for e in events if e.tenant_id == "acme"]  # one key: one partition
    assert acme_order == [e.event_id for e in before + during], "spilled events replay in order"
    assert emit_seconds < 5  # generous: 30 queue appends; a blocking emit would take 45 s+


def test_budget_guard_follows_signals(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2, config={"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    issued = itertools.count()

    def publish(scope: str, **overrides: Any) -> None:
        """A signal issued after the ones before it (guards take only newer ones)."""
        at = factories.now() + timedelta(seconds=next(issued))
        producer.produce(
            topic,
            key=scope.encode(),
            value=factories.signal(scope=scope, issued_at=at, **overrides).model_dump_json(),
        )
        assert producer.flush(10) == 0

    publish("tenant/acme")  # a block published before the guard starts: read from the start
    with BudgetGuard(bootstrap=kafka_bootstrap, topic=topic) as guard:
        assert guard.wait_ready(30)
        blocked = guard.check("acme")
        assert (blocked.allowed, blocked.state, blocked.scope) == (False, "block", "tenant/acme")
        assert guard.check("globex").allowed

        publish("tenant/globex/feature/search", tenant_id="globex", feature="search")
        wait_for(lambda: not guard.check("globex", "search").allowed, 10, "feature block")
        assert guard.check("globex", "answer").allowed

        publish("tenant/acme", state="allow", spend_nusd=0, reason="new day")
        wait_for(lambda: guard.check("acme").allowed, 10, "allow to unblock acme")
        assert guard.check("acme").state == "allow"
        assert guard.signals_seen == 3


def test_interpreter_exit_flushes(
    kafka_bootstrap: str, sdk_topics: TopicNames, tmp_path: Path
) -> None:
    import subprocess
    import sys

    script = (
        "import sys; from tokenledger import Ledger, TopicNames;"
        "from tests.helpers import factories;"
        "t = TopicNames(requests=sys.argv[2], usage=sys.argv[3], outcomes=sys.argv[4]);"
        "ledger = Ledger('svc', bootstrap=sys.argv[1], topics=t, spill_dir=sys.argv[5]);"
        "[ledger.emit(factories.usage(event_id=f'exit-{i}')) for i in range(25)]"
        # no close(): the atexit hook must deliver them
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            kafka_bootstrap,
            sdk_topics.requests,
            sdk_topics.usage,
            sdk_topics.outcomes,
            str(tmp_path),
        ],
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    got = consume_all(kafka_bootstrap, sdk_topics.usage, 25)
    assert sorted(UsageEvent.model_validate_json(m.value()).event_id for m in got) == sorted(
        f"exit-{i}" for i in range(25)
    )


def test_leaving_a_ledger_block_delivers_every_event_and_stops_its_thread(
    kafka_bootstrap: str, sdk_topics: TopicNames, tmp_path: Path
) -> None:
    def ledger_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "tokenledger-ledger"}

    before = ledger_threads()
    events = [factories.usage(event_id=f"with-{i}", input_tokens=2000 + i) for i in range(25)]
    with Ledger("svc", bootstrap=kafka_bootstrap, topics=sdk_topics, spill_dir=tmp_path) as ledger:
        (thread,) = ledger_threads() - before
        for e in events:
            ledger.emit(e)  # no flush(): leaving the block delivers them
    assert not thread.is_alive()
    assert ledger.spilled_waiting() == 0
    got = consume_all(kafka_bootstrap, sdk_topics.usage, 25)
    assert sorted(m.value() for m in got) == sorted(e.model_dump_json().encode() for e in events)
