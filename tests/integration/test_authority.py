"""Only the platform's own private keys can set budgets and publish block signals: the
worker counts only budgets signed by the admin CLI's key, and a BudgetGuard holding public
keys only counts only signals signed by the worker's. Forgeries (unsigned, another key, the
old shared HMAC key) are refused, each with its reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.helpers import factories
from tests.helpers.clock import midday_zone
from tests.helpers.kafka_io import produce, read_committed
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.settings import isolated
from tests.helpers.signing_keys import (
    OLD_HMAC_KEY,
    KeyFile,
    forgeries,
    hmac_headers,
    key_file,
    refusals,
    writer_env,
)
from tests.helpers.workers import run_worker
from tokenledger.contract import topics
from tokenledger.contract.messages import Budget, Signal
from tokenledger.guard import BudgetGuard
from tokenledger.signing import PublicKeyring, check
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.admin import hmac_migration
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.worker import service as worker

pytestmark = pytest.mark.integration
HMAC = next(reason for reason in refusals() if "HMAC" in reason)
OLD_RING = hmac_migration.HmacKeys((OLD_HMAC_KEY,))


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyFile, KeyFile]:
    return key_file(tmp_path, "worker"), key_file(tmp_path, "admin")


@pytest.fixture
def settings(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, keys: tuple[KeyFile, KeyFile]
) -> Settings:
    for name, value in writer_env(*keys).items():  # the worker's key, both public keys
        monkeypatch.setenv(name, value)
    return isolated(kafka_bootstrap, 1)


@pytest.fixture
def running(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "auth-1", heartbeat=timedelta(hours=1)) as engine:
        yield engine


def forge(settings: Settings, topic: str, key: str, value: bytes) -> None:
    """The same record unsigned, signed by a stranger's key and signed with HMAC."""
    name, issued = settings.topic(topic), int(datetime.now(UTC).timestamp() * 1000)
    producer = Producer({"bootstrap.servers": settings.kafka})
    for headers in forgeries(name, key.encode(), value, issued):
        producer.produce(name, value, key.encode(), headers=headers)
    assert producer.flush(15) == 0


def test_only_the_admin_and_worker_keys_count(
    settings: Settings,
    running: worker.TransactionalEngine,
    keys: tuple[KeyFile, KeyFile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker_key, admin_key = keys
    now = datetime.now(UTC)
    # `tokenledger budget` on the admin host signs with the admin key
    monkeypatch.setenv("TOKENLEDGER_SIGNING_KEY_FILE", str(admin_key.path))
    budget_admin.put(
        settings, budget_admin.make_budget("payer", None, "0.000001", "day", midday_zone(), "50")
    )
    forged = Budget(tenant_id="victim", limit_nusd=1, updated_at=now).model_dump_json().encode()
    forge(settings, topics.BUDGETS, "tenant/victim", forged)
    base = now - timedelta(minutes=2)
    events = [
        factories.usage(tenant_id=t, ts=base + timedelta(seconds=i), idempotency_key=f"{t}{i}")
        for i in range(3)
        for t in ("payer", "victim")
    ]
    produce(
        settings.kafka,
        settings.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
    )
    read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), len(events))
    records = read_committed(settings.kafka, settings.topic(topics.SIGNALS), 1, timeout=15)
    signals = [Signal.model_validate_json(m.value()) for m in records]
    assert [(s.scope, s.state) for s in signals] == [("tenant/payer", "block")]
    assert dict(records[0].headers())["tokenledger-ed25519"].startswith(worker_key.id.encode())
    # The worker published that one signal and no other, and refused the three forgeries.
    published = {k: v for k, v in running.counters().items() if k.startswith("signal.")}
    assert published == {"signal.block": 1}
    (task,) = running.tasks.values()
    book = task.budgets.book  # type: ignore[attr-defined]
    assert (book.unauthorized, dict(book.refusals)) == (3, refusals())
    assert list(book.by_scope) == ["tenant/payer"]
    payer_cost = sum(expected_cost(e) for e in events if e.tenant_id == "payer")
    assert signals[0].spend_nusd == payer_cost and signals[0].limit_nusd == 1000  # $0.000001

    # Gateways hold public keys only (TOKENLEDGER_PUBLIC_KEYS): the worker's block counts, a
    # forged block for another tenant does not, whoever signed it.
    fake = (
        factories.signal(scope="tenant/victim", tenant_id="victim", reason="forged", issued_at=now)
        .model_dump_json()
        .encode()
    )
    forge(settings, topics.SIGNALS, "tenant/victim", fake)
    monkeypatch.delenv("TOKENLEDGER_SIGNING_KEY_FILE")  # a gateway's host: no private key
    guard = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS)).start()
    trusting = BudgetGuard(
        bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS), public_keys=None
    ).start()
    try:
        deadline = time.monotonic() + 30
        while not (guard.ready() and trusting.ready()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guard.ready() and trusting.ready()
        assert guard.public_keys is not None and guard.public_keys.ids == (
            worker_key.id,
            admin_key.id,
        )
        assert not guard.check("payer").allowed
        assert guard.check("victim").allowed
        assert (guard.unauthorized_signals, dict(guard.book.refusals)) == (3, refusals())
        assert not trusting.check("victim").allowed  # without keys, the forgery would stop it
    finally:
        guard.close()
        trusting.close()


def test_the_migration_from_hmac_carries_budgets_over_and_old_readers_keep_verifying(
    settings: Settings, keys: tuple[KeyFile, KeyFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_key, admin_key = keys
    budgets, signals = settings.topic(topics.BUDGETS), settings.topic(topics.SIGNALS)
    specs = [
        topics.TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS
    ]
    create_topics(settings.kafka, specs, 1, 1)
    # What the HMAC version left on the topics: a budget and a block, signed with the old key
    then = datetime.now(UTC) - timedelta(minutes=1)
    ms = int(then.timestamp() * 1000)
    budget = Budget(tenant_id="payer", limit_nusd=1000, updated_at=then).model_dump_json().encode()
    block = factories.signal(scope="tenant/old", tenant_id="old", issued_at=then)
    producer = Producer({"bootstrap.servers": settings.kafka})
    producer.produce(
        budgets, budget, b"tenant/payer", headers=hmac_headers(budgets, b"tenant/payer", budget, ms)
    )
    value = block.model_dump_json().encode()
    producer.produce(
        signals, value, b"tenant/old", headers=hmac_headers(signals, b"tenant/old", value, ms)
    )
    assert producer.flush(15) == 0

    # 1. the admin host re-signs the budgets in force, reading them with the old key
    monkeypatch.setenv("TOKENLEDGER_SIGNING_KEY_FILE", str(admin_key.path))
    monkeypatch.setenv("TOKENLEDGER_LEGACY_HMAC_KEY", OLD_HMAC_KEY.decode())
    signed, key = budget_admin.resign(settings)
    assert ([b.limit_nusd for b in signed], key) == ([1000], admin_key.id)
    _, resigned = read_committed(settings.kafka, budgets, 2)
    ring, old = PublicKeyring.parse(writer_env(*keys)["TOKENLEDGER_PUBLIC_KEYS"]), OLD_RING
    both = (budgets, resigned.key(), resigned.value(), resigned.headers())
    assert check(ring, *both).key_id == admin_key.id  # upgraded workers take it
    assert hmac_migration.check(old, *both).ok  # and so do workers not yet upgraded

    # 2. the upgraded worker enforces it, and dual-signs its signals during the migration
    monkeypatch.setenv("TOKENLEDGER_SIGNING_KEY_FILE", str(worker_key.path))
    with run_worker(settings, "mig-1", heartbeat=timedelta(hours=1)) as engine:
        events = [factories.usage(tenant_id="payer", ts=datetime.now(UTC) - timedelta(seconds=5))]
        produce(
            settings.kafka,
            settings.topic(topics.USAGE),
            [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events],
        )
        records = read_committed(settings.kafka, signals, 2, timeout=30)
        (task,) = engine.tasks.values()
        book = task.budgets.book  # type: ignore[attr-defined]
        assert dict(book.refusals) == {HMAC: 1}  # the HMAC original, never taken as such
    first, new = records
    assert Signal.model_validate_json(new.value()).scope == "tenant/payer"
    both = (signals, new.key(), new.value(), new.headers())
    assert check(ring, *both).key_id == worker_key.id
    assert hmac_migration.check(old, *both).ok

    # 3. an upgraded gateway refuses the HMAC-only block and follows the worker's
    monkeypatch.delenv("TOKENLEDGER_SIGNING_KEY_FILE")
    with BudgetGuard(bootstrap=settings.kafka, topic=signals) as guard:
        assert guard.wait_ready(30)
        assert (guard.check("old").allowed, guard.check("payer").allowed) == (True, False)
        assert dict(guard.book.refusals) == {HMAC: 1}
