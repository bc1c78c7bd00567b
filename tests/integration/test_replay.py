"""Replayed and rotated authority on the real broker: a copied old signal, budget or removal
changes nothing; a guard started after a replay converges within one heartbeat; a key
rotation from A to B loses no signal and accepts no unsigned or A-only record after A is
retired."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Producer

from tests.helpers import factories
from tests.helpers.clock import midday_zone
from tests.helpers.kafka_io import produce, read_all_committed
from tests.helpers.settings import isolated
from tests.helpers.signing_keys import KeyFile, key_file, ring_text, writer_env
from tests.helpers.waiting import wait_for, wait_value
from tests.helpers.workers import run_worker
from tokenledger.contract import topics
from tokenledger.contract.messages import Budget, Signal
from tokenledger.guard import BudgetGuard, Decision
from tokenledger.signing import PublicKeyring
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.task import PartitionTask

pytestmark = pytest.mark.integration
HEARTBEAT = timedelta(seconds=2)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyFile, KeyFile]:
    return key_file(tmp_path, "a"), key_file(tmp_path, "b")


def use(monkeypatch: pytest.MonkeyPatch, key: KeyFile, *trusted: KeyFile) -> None:
    """Writers (the worker and `tokenledger budget`, in this process) sign with ``key``."""
    for name, value in writer_env(key, *trusted).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def settings(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, keys: tuple[KeyFile, KeyFile]
) -> Settings:
    use(monkeypatch, keys[0])
    return isolated(kafka_bootstrap, 1)


def set_budget(settings: Settings, tenant: str, limit_usd: str) -> None:
    budget_admin.put(
        settings, budget_admin.make_budget(tenant, None, limit_usd, "day", midday_zone(), "50")
    )


def spend(settings: Settings, tenant: str, n: int = 2) -> None:
    now = datetime.now(UTC) - timedelta(seconds=5)
    events = [factories.usage(tenant_id=tenant, ts=now) for _ in range(n)]
    produce(
        settings.kafka,
        settings.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )


def records(settings: Settings, topic: str, key: str) -> list[tuple[bytes | None, list[Any]]]:
    """Every committed record of ``key`` on ``topic``: value and headers, as a copier sees."""
    return [
        (m.value(), list(m.headers() or []))
        for m in read_all_committed(settings.kafka, settings.topic(topic))
        if m.key() == key.encode()
    ]


def replay(
    settings: Settings, topic: str, key: str, value: bytes | None, headers: list[Any]
) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka})
    producer.produce(settings.topic(topic), value, key.encode(), headers=headers)
    assert producer.flush(15) == 0


def guard(settings: Settings, *trusted: KeyFile) -> BudgetGuard:
    """A gateway holding the public keys of ``trusted`` only."""
    ring = PublicKeyring.parse(ring_text(*trusted))
    g = BudgetGuard(
        bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS), public_keys=ring
    )
    g.start()
    assert g.wait_ready(30)
    return g


def blocked(g: BudgetGuard, tenant: str, timeout: float = 30) -> Decision:
    return wait_value(
        lambda: g.check(tenant), lambda d: not d.allowed, f"{tenant} blocked", timeout
    )


def state(g: BudgetGuard, tenant: str, want: str) -> Decision:
    return wait_value(lambda: g.check(tenant), lambda d: d.state == want, f"{tenant} {want}")


def book_of(engine: worker.TransactionalEngine) -> BudgetDefinitions:
    """The budget book the engine's partition tasks share (empty until assigned)."""
    wait_for(lambda: bool(engine.tasks), 30, "the worker's partitions")
    task = next(iter(engine.tasks.values()))
    return cast(PartitionTask, task).budgets.book


@pytest.fixture
def running(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "replay-1", heartbeat=HEARTBEAT) as engine:
        yield engine


def test_a_replayed_allow_is_ignored_and_a_later_guard_sees_the_block(
    settings: Settings, running: worker.TransactionalEngine, keys: tuple[KeyFile, KeyFile]
) -> None:
    watching = guard(settings, keys[0])
    try:
        set_budget(settings, "payer", "0.000001")
        spend(settings, "payer")
        blocked(watching, "payer")
        set_budget(settings, "payer", "1000")  # raised: the worker publishes allow
        state(watching, "payer", "allow")
        set_budget(settings, "payer", "0.000001")  # lowered again: block
        blocked(watching, "payer")
        allows = [
            (v, h)
            for v, h in records(settings, topics.SIGNALS, "tenant/payer")
            if v is not None and Signal.model_validate_json(v).state == "allow"
        ]
        replay(settings, topics.SIGNALS, "tenant/payer", *allows[0])  # yesterday's allow
        set_budget(settings, "marker", "0.000001")  # a marker after the replay
        spend(settings, "marker")
        blocked(watching, "marker")  # the running guard has read past the replay
        assert not watching.check("payer").allowed
        assert watching.replayed_signals >= 1
        late = guard(settings, keys[0])  # started after the replay
        try:
            blocked(late, "payer", timeout=HEARTBEAT.total_seconds() + 5)
        finally:
            late.close()
    finally:
        watching.close()


def test_a_replayed_older_budget_or_removal_leaves_the_current_one_in_force(
    settings: Settings, running: worker.TransactionalEngine, keys: tuple[KeyFile, KeyFile]
) -> None:
    watching = guard(settings, keys[0])
    try:
        set_budget(settings, "lowered", "1000")
        set_budget(settings, "lowered", "0.000001")
        set_budget(settings, "kept", "1000")
        budget_admin.remove(settings, "tenant/kept")
        set_budget(settings, "kept", "0.000001")
        high = [
            (v, h)
            for v, h in records(settings, topics.BUDGETS, "tenant/lowered")
            if v is not None and Budget.model_validate_json(v).limit_nusd == 10**12
        ]
        removal = [(v, h) for v, h in records(settings, topics.BUDGETS, "tenant/kept") if v is None]
        replay(settings, topics.BUDGETS, "tenant/lowered", *high[0])
        replay(settings, topics.BUDGETS, "tenant/kept", *removal[0])
        set_budget(settings, "marker", "0.000001")
        book = book_of(running)
        wait_for(
            lambda: "tenant/marker" in book.by_scope, 30, "the worker to read past the replays"
        )
        spend(settings, "lowered")
        spend(settings, "kept")
        for tenant in ("lowered", "kept"):
            decision = blocked(watching, tenant)
            assert decision.reason.endswith("of $0.0000)"), decision.reason
        assert book.replayed == 2
        assert [
            b.limit_nusd
            for b in budget_admin.current(settings)
            if b.tenant_id in ("lowered", "kept")
        ] == [1000, 1000]
    finally:
        watching.close()


def test_rotating_from_key_a_to_b_loses_no_signal(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, keys: tuple[KeyFile, KeyFile]
) -> None:
    a, b = keys
    specs = [
        topics.TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS
    ]
    create_topics(settings.kafka, specs, 1, 1)
    old_only = guard(settings, a)  # a gateway that is never given B
    try:
        with run_worker(settings, "rot-1", heartbeat=HEARTBEAT):
            set_budget(settings, "first", "0.000001")
            spend(settings, "first")
            blocked(old_only, "first")
        # 1. every reader learns B's public key; writers still sign with A
        use(monkeypatch, a, b)
        learning = guard(settings, a, b)
        with run_worker(settings, "rot-1", heartbeat=HEARTBEAT):
            blocked(learning, "first")
            set_budget(settings, "second", "0.000001")
            spend(settings, "second")
            blocked(old_only, "second")  # the old-only gateway still verifies everything
            blocked(learning, "second")
        # 2. writers sign with B; budgets re-signed; signals re-asserted by the heartbeat
        use(monkeypatch, b, a)
        with run_worker(settings, "rot-1", heartbeat=HEARTBEAT):
            signed, key = budget_admin.resign(settings)
            assert (len(signed), key) == (2, b.id)
            for tenant in ("first", "second"):
                blocked(learning, tenant)
        # 3. A retired from every ring
        use(monkeypatch, b)
        with run_worker(settings, "rot-1", heartbeat=HEARTBEAT) as engine:
            retired = guard(settings, b)
            try:
                for tenant in ("first", "second"):
                    blocked(retired, tenant, timeout=HEARTBEAT.total_seconds() + 10)
                # what it refused so far: the history signed with A
                refused_signals = retired.unauthorized_signals
                book = book_of(engine)
                refused_budgets = book.unauthorized
                # whoever still holds A's private key signs a block, and a budget
                now, name = datetime.now(UTC), settings.topic(topics.SIGNALS)
                forged = (
                    factories.signal(scope="tenant/victim", tenant_id="victim", issued_at=now)
                    .model_dump_json()
                    .encode()
                )
                ms = int(now.timestamp() * 1000)
                replay(
                    settings,
                    topics.SIGNALS,
                    "tenant/victim",
                    forged,
                    a.signer.headers(name, b"tenant/victim", forged, ms),
                )
                replay(settings, topics.SIGNALS, "tenant/victim", forged, [])
                value = Budget(tenant_id="victim", limit_nusd=1, updated_at=now).model_dump_json()
                replay(
                    settings,
                    topics.BUDGETS,
                    "tenant/victim",
                    value.encode(),
                    a.signer.headers(
                        settings.topic(topics.BUDGETS), b"tenant/victim", value.encode(), ms
                    ),
                )
                spend(settings, "victim")
                wait_for(
                    lambda: retired.unauthorized_signals == refused_signals + 2,
                    30,
                    "both forged signals read and refused",
                )
                assert retired.check("victim").allowed
                not_in_ring = f"signed by key {a.id!r}, which is not in TOKENLEDGER_PUBLIC_KEYS"
                assert retired.book.refusals["unsigned"] == 1
                assert retired.book.refusals[not_in_ring] == refused_signals + 1
                wait_for(
                    lambda: book.unauthorized == refused_budgets + 1,
                    30,
                    "the A-signed budget read and refused",
                )
                assert "tenant/victim" not in book.by_scope
                assert book.refusals == {not_in_ring: refused_budgets + 1}
            finally:
                retired.close()
        learning.close()
    finally:
        old_only.close()
