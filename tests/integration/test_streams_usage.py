"""The usage worker on the real broker: validation, pricing, dedup, windows, exactly once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from schemas import topics
from schemas.messages import DlqRecord, EnrichedUsage, UsageEvent
from schemas.pricing import DEFAULT_TABLE
from streams.config import Settings
from streams.worker import service as worker
from streams.worker.windows import window_start
from tests import factories

pytestmark = pytest.mark.integration

RATES = {m["model"]: m for m in json.loads(DEFAULT_TABLE.read_text())["models"]}


def expected_cost(e: UsageEvent) -> int:
    """Independent of schemas.pricing: the rate file's numbers, Decimal arithmetic."""
    r = RATES[e.model]
    rate = {k: Decimal(r[k]) for k in ("input", "output")}
    cached = Decimal(r.get("cached_read", r["input"]))
    write = Decimal(r.get("cache_write", r["input"]))
    usd = (
        (e.input_tokens - e.cached_input_tokens - e.cache_write_tokens) * rate["input"]
        + e.cached_input_tokens * cached + e.cache_write_tokens * write
        + e.output_tokens * rate["output"]
    )  # fmt: skip
    if e.batch:
        usd *= 1 - Decimal(r["batch_discount"])
    return int((usd * 1000).to_integral_value(ROUND_HALF_EVEN))


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings.from_env({
        "TOKENLEDGER_KAFKA": kafka_bootstrap,
        "TOKENLEDGER_TOPIC_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "TOKENLEDGER_PARTITIONS": "3",
    })  # fmt: skip


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Offsets ``group`` has committed on ``topic``, summed. read_uncommitted: a killed
    transactional worker's open offsets do not hold the answer up. Retries (bounded) while
    a fresh broker's group coordinator is still loading."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    transient = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT}  # fmt: skip
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "isolation.level": "read_uncommitted"})  # fmt: skip
    try:
        for attempt in range(50):
            try:
                done = consumer.committed(
                    [TopicPartition(topic, p) for p in range(partitions)], timeout=10
                )
                return sum(max(tp.offset, 0) for tp in done)
            except KafkaException as exc:
                if exc.args[0].code() not in transient or attempt == 49:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


def _assigned(bootstrap: str, topic: str, **extra: Any) -> Consumer:
    """A read_committed consumer of every partition of ``topic`` from the start, without a
    consumer group (no rebalance to wait for)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         **extra})  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def read_committed(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    consumer = _assigned(bootstrap, topic)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(1000, 0.3) if m.error() is None)
        got.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return got


def changelog_windows(bootstrap: str, topic: str) -> dict[str, tuple[int, int, int]]:
    """The latest committed value of every window key in the workers' changelog."""
    from confluent_kafka import KafkaError

    latest: dict[str, bytes | None] = {}
    consumer = _assigned(bootstrap, topic, **{"enable.partition.eof": True})
    partitions = len(consumer.assignment())
    eof: set[int | None] = set()
    deadline = time.monotonic() + 30
    try:
        while len(eof) < partitions and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.3):
                err, key = m.error(), m.key()
                if err is None and key is not None:
                    latest[key.decode()] = m.value()
                    eof.discard(m.partition())
                elif err is not None and err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
    finally:
        consumer.close()
    assert len(eof) == partitions, "changelog not read to its end"
    out: dict[str, tuple[int, int, int]] = {}
    for name, value in latest.items():
        if name.startswith("w:") and value is not None:
            total, events, unpriced = (int(x) for x in value.decode().split(","))
            out[name] = (total, events, unpriced)
    return out


@contextmanager
def run_worker(settings: Settings, instance: str) -> Iterator[worker.TransactionalEngine]:
    """A worker engine running in a thread of this process, stopped on the way out."""
    engine = worker.build(settings, instance)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def running_worker(settings: Settings) -> Iterator[worker.TransactionalEngine]:
    with run_worker(settings, "w1") as engine:
        yield engine


def test_pipeline_counts_every_good_event_once_and_every_bad_one_in_the_dlq(
    settings: Settings, running_worker: worker.TransactionalEngine
) -> None:
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"]
    good = []
    for i in range(60):
        good.append(factories.usage(
            tenant_id=("acme", "globex")[i % 2], feature=("answer", "search")[i % 3 % 2],
            model=models[i % 3], provider="x", ts=base + timedelta(seconds=i),
            input_tokens=1000 + 37 * i, cached_input_tokens=(256 if i % 4 == 0 else 0),
            cache_write_tokens=(128 if i % 3 == 2 else 0), output_tokens=100 + i,
            reasoning_tokens=0, batch=(i % 5 == 0), idempotency_key=f"idem-{i}",
        ))  # fmt: skip
    cache_hit = factories.usage(tenant_id="acme", cache="exact", ts=base, idempotency_key="c1")
    carried = factories.usage(tenant_id="acme", cost_nusd=999, ts=base, idempotency_key="c2")
    unknown = factories.usage(tenant_id="globex", model="in-house-7b", ts=base,
                              idempotency_key="c3")  # fmt: skip
    retries = [factories.usage(tenant_id=g.tenant_id, idempotency_key=g.idempotency_key,
                               attempt=2, ts=g.ts, model=g.model) for g in good[:3]]  # fmt: skip
    late = factories.usage(tenant_id="acme", ts=base - timedelta(minutes=30), idempotency_key="l1")
    bad: list[tuple[str, bytes]] = [
        ("malformed_json", b"{not json"),
        ("malformed_json", b"[" * 5000 + b"]" * 5000),
        ("invalid_fields", _mutate(good[0], input_tokens="many")),
        ("negative_tokens", _mutate(good[0], output_tokens=-5)),
        ("absurd_tokens", _mutate(good[0], input_tokens=10**12)),
        ("unknown_schema_version", _mutate(good[0], schema_version=7)),
        ("absurd_timestamp", _mutate(good[0], ts="2099-01-01T00:00:00Z")),
        ("absurd_timestamp", _mutate(good[0], ts="2001-01-01T00:00:00Z")),
        ("oversize", _mutate(good[0], error="x" * 70_000)),
        ("missing_tenant", _mutate(good[0], tenant_id=None)),
        ("missing_tenant", _mutate(good[0], tenant_id="")),
    ]
    names = {n: settings.topic(n) for n in (topics.USAGE, topics.USAGE_ENRICHED, topics.DLQ,
                                            topics.WORKER_CHANGELOG)}  # fmt: skip
    kept = good + [cache_hit, carried, unknown] + retries
    records = [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in kept]
    records += [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in good[10:15]]
    records += [(b"acme", late.model_dump_json().encode())]
    records += [(b"bad", raw) for _, raw in bad]
    produce(settings.kafka, names[topics.USAGE], records)

    enriched = [EnrichedUsage.model_validate_json(m.value())
                for m in read_committed(settings.kafka, names[topics.USAGE_ENRICHED], len(kept) + 1)]  # fmt: skip
    dlq = [DlqRecord.model_validate_json(m.value())
           for m in read_committed(settings.kafka, names[topics.DLQ], len(bad))]  # fmt: skip

    assert len(enriched) == len(kept) + 1  # the redeliveries are gone, the late one is kept
    by_id = {e.event_id: e for e in enriched}
    assert len(by_id) == len(enriched)
    for e in good + retries:
        assert by_id[e.event_id].cost_nusd == expected_cost(e), e.model
        assert by_id[e.event_id].cost_source == "table"
    assert sum(by_id[e.event_id].cost_nusd or 0 for e in good) == sum(map(expected_cost, good))
    assert [by_id[r.event_id].duplicate_generation for r in retries] == [True] * 3
    assert not any(by_id[e.event_id].duplicate_generation for e in good)
    hit = by_id[cache_hit.event_id]
    assert (hit.cost_nusd, hit.cost_source, hit.table_cost_nusd) == (
        0,
        "cache",
        expected_cost(cache_hit),
    )
    own = by_id[carried.event_id]
    assert (own.cost_nusd, own.cost_source, own.cost_mismatch) == (999, "event", True)
    mystery = by_id[unknown.event_id]
    assert (mystery.cost_nusd, mystery.priced, mystery.cost_source) == (None, False, "unpriced")
    assert mystery.pricing_version.endswith(":unknown")
    assert by_id[late.event_id].late and not any(by_id[e.event_id].late for e in kept)
    for e in good:
        plain = e.model_copy(update={"cached_input_tokens": 0, "cache_write_tokens": 0,
                                     "batch": False, "model": "gpt-4o"})  # fmt: skip
        assert by_id[e.event_id].counterfactual_cost_nusd == expected_cost(plain)

    assert Counter(d.reason for d in dlq) == Counter(reason for reason, _ in bad)
    assert all(d.source_topic == names[topics.USAGE] and d.raw_b64 for d in dlq)

    windows = changelog_windows(settings.kafka, names[topics.WORKER_CHANGELOG])
    counted = list(kept)  # not the late one, not the redeliveries
    for tenant in ("acme", "globex"):
        mine = [e for e in counted if e.tenant_id == tenant]
        priced = [c for e in mine if (c := by_id[e.event_id].cost_nusd) is not None]
        day = window_start(int(base.timestamp() * 1000), "day")
        assert windows[f"w:day:t={tenant}:{day}"] == (
            sum(priced),
            len(mine),
            len(mine) - len(priced),
        )
    minute_total = sum(v[0] for k, v in windows.items() if k.startswith("w:minute:t="))
    assert minute_total == sum(by_id[e.event_id].cost_nusd or 0 for e in counted)

    counters = running_worker.counters()
    assert counters["redelivered"] == 5 and counters["late"] == 1
    assert counters["duplicate_generation"] == 3
    assert sum(v for k, v in counters.items() if k.startswith("dlq.")) == len(bad)


def _mutate(event: UsageEvent, **changes: Any) -> bytes:
    return factories.mutated_json(event, event_id=uuid.uuid4().hex, **changes)
