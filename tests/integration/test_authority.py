"""Only the platform's own components can set budgets and publish block signals: with
TOKENLEDGER_SIGNING_KEY set, the worker ignores budgets that are not signed with it and
BudgetGuard ignores signals that are not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from schemas import topics
from schemas.messages import Budget, Signal
from streams.admin import budgets as budget_admin
from streams.config import Settings
from streams.worker import service as worker
from tests.helpers import factories
from tests.helpers.clock import midday_zone
from tests.helpers.kafka_io import produce, read_committed
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.settings import isolated
from tests.helpers.workers import run_worker
from tokenledger.guard import BudgetGuard
from tokenledger.signing import headers_for

pytestmark = pytest.mark.integration
KEY = "k" * 40


@pytest.fixture
def settings(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TOKENLEDGER_SIGNING_KEY", KEY)
    return isolated(kafka_bootstrap, 1)


@pytest.fixture
def running(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "auth-1", heartbeat=timedelta(hours=1)) as engine:
        yield engine


def _rogue(settings: Settings, topic: str, key: str, value: bytes, secret: bytes | None) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka})
    issued = int(datetime.now(UTC).timestamp() * 1000)
    producer.produce(settings.topic(topic), value, key.encode(),
                     headers=headers_for(secret, settings.topic(topic), key.encode(), value,
                                         issued))  # fmt: skip
    assert producer.flush(15) == 0


def test_unsigned_budgets_and_forged_signals_are_ignored(
    settings: Settings, running: worker.TransactionalEngine
) -> None:
    now = datetime.now(UTC)
    # A budget from the platform (signed by `tokenledger budget`) and two forged ones.
    budget_admin.put(
        settings, budget_admin.make_budget("payer", None, "0.000001", "day", midday_zone(), "50")
    )
    forged = Budget(tenant_id="victim", limit_nusd=1, updated_at=now).model_dump_json().encode()
    _rogue(settings, topics.BUDGETS, "tenant/victim", forged, None)
    _rogue(settings, topics.BUDGETS, "tenant/victim", forged, b"w" * 40)
    base = now - timedelta(minutes=2)
    events = [factories.usage(tenant_id=t, ts=base + timedelta(seconds=i), idempotency_key=f"{t}{i}")
              for i in range(3) for t in ("payer", "victim")]  # fmt: skip
    produce(settings.kafka, settings.topic(topics.USAGE),
            [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in events])  # fmt: skip
    read_committed(settings.kafka, settings.topic(topics.USAGE_ENRICHED), len(events))
    signals = [Signal.model_validate_json(m.value()) for m in
               read_committed(settings.kafka, settings.topic(topics.SIGNALS), 1, timeout=15)]  # fmt: skip
    assert [(s.scope, s.state) for s in signals] == [("tenant/payer", "block")]
    # The worker published that one signal and no other (its own count, read after the
    # enriched events and the block are visible), and refused both forged budgets.
    published = {k: v for k, v in running.counters().items() if k.startswith("signal.")}
    assert published == {"signal.block": 1}
    (task,) = running.tasks.values()
    assert task.budgets.book.unauthorized == 2  # type: ignore[attr-defined]
    payer_cost = sum(expected_cost(e) for e in events if e.tenant_id == "payer")
    assert signals[0].spend_nusd == payer_cost and signals[0].limit_nusd == 1000  # $0.000001

    # Gateways: the worker's block counts; a forged block for another tenant does not.
    fake = Signal(scope="tenant/victim", tenant_id="victim", state="block", reason="forged",
                  spend_nusd=1, limit_nusd=1, window_start=now, window_end=now + timedelta(days=1),
                  issued_at=now, issuer="budgets-worker").model_dump_json().encode()  # fmt: skip
    _rogue(settings, topics.SIGNALS, "tenant/victim", fake, None)
    _rogue(settings, topics.SIGNALS, "tenant/victim", fake, b"w" * 40)
    guard = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS)).start()
    trusting = BudgetGuard(bootstrap=settings.kafka, topic=settings.topic(topics.SIGNALS),
                           signing_key=None).start()  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (guard.ready() and trusting.ready()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guard.ready() and trusting.ready()
        assert not guard.check("payer").allowed
        assert guard.check("victim").allowed and guard.unauthorized_signals == 2
        assert not trusting.check("victim").allowed  # without the key, the forgery would stop it
    finally:
        guard.close()
        trusting.close()
