"""Both Kafka clients against the real broker: every field arrives exactly as sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from schemas.messages import UsageEvent
from tests import factories

pytestmark = pytest.mark.integration

N = 200


def events() -> list[UsageEvent]:
    tenants = ["acme", "globex", "initech"]
    return [
        factories.usage(tenant_id=tenants[i % 3], input_tokens=1000 + i, output_tokens=i,
                        cached_input_tokens=i // 2, reasoning_tokens=0, cost_nusd=i * 997)
        for i in range(N)
    ]  # fmt: skip


def test_confluent_produces_and_aiokafka_consumes(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from confluent_kafka import Producer

    topic = topic_factory(partitions=3)
    sent = events()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for e in sent:
        producer.produce(topic, key=e.tenant_id.encode(), value=e.model_dump_json().encode())
    assert producer.flush(30) == 0

    async def consume() -> list[tuple[bytes, bytes, int]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )  # fmt: skip
        await consumer.start()
        got: list[tuple[bytes, bytes, int]] = []
        try:
            while len(got) < N:
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, f"no records within 10 s after {len(got)}"
                for records in batch.values():
                    got.extend((r.key, r.value, r.partition) for r in records)
        finally:
            await consumer.stop()
        return got

    received = asyncio.run(consume())
    assert len(received) == N
    parsed = [UsageEvent.model_validate_json(value) for _, value, _ in received]
    assert sorted(parsed, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    assert sum(e.cost_nusd or 0 for e in parsed) == sum(i * 997 for i in range(N))
    partition_of: dict[bytes, set[int]] = {}
    for key, _, partition in received:
        partition_of.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partition_of.values()), "one tenant, one partition"


def test_aiokafka_produces_and_confluent_consumes(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from confluent_kafka import Consumer

    topic = topic_factory(partitions=2)
    sent = events()

    async def produce() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for e in sent:
                await producer.send(
                    topic, key=e.tenant_id.encode(), value=e.model_dump_json().encode()
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    got: list[UsageEvent] = []
    try:
        while len(got) < N:
            messages = consumer.consume(num_messages=500, timeout=10)
            assert messages, f"no records within 10 s after {len(got)}"
            for m in messages:
                value = m.value()
                assert m.error() is None and value is not None, m.error()
                got.append(UsageEvent.model_validate_json(value))
    finally:
        consumer.close()
    assert len(got) == N
    assert {e.event_id: e for e in got} == {e.event_id: e for e in sent}
