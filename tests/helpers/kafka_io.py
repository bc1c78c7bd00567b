"""Talking to the real broker from tests: produce, read what is committed, count committed
offsets, wait for topics. Readers assign partitions directly (no group to rebalance)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, Producer

from tokenledger.backoff import delays, retry


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

    transient = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
    }
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"}
    )
    wanted = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        return retry(
            lambda: sum(max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=10)),
            delays(0.2, factor=1, retries=49),
            retry_if=lambda exc: (
                isinstance(exc, KafkaException) and exc.args[0].code() in transient
            ),
        )
    finally:
        consumer.close()


def assigned_reader(bootstrap: str, topic: str, **extra: Any) -> Consumer:
    """A read_committed consumer of every partition of ``topic`` from the start, without a
    consumer group (no rebalance to wait for)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **extra,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def read_committed(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    consumer = assigned_reader(bootstrap, topic)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(1000, 0.3) if m.error() is None)
        got.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return got


def read_all_committed(bootstrap: str, topic: str, timeout: float = 30) -> list[Any]:
    """Every committed record of ``topic``, read until each partition reports its end (no
    transaction may be left open: a running producer's open one would hold the end back)."""
    from tokenledger.kafka_config import read_to_end

    consumer = assigned_reader(bootstrap, topic, **{"enable.partition.eof": True})
    got: list[Any] = []
    try:
        partitions = {tp.partition for tp in consumer.assignment()}
        done = read_to_end(consumer, partitions, got.append, timeout)
        assert done, f"{topic} not read to its end"
    finally:
        consumer.close()
    return got


def wait_visible(bootstrap: str, topic: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(read_committed(bootstrap, topic, at_least, timeout=3))
        if n >= at_least:
            return n
    raise AssertionError(f"fewer than {at_least} records on {topic} after {timeout}s")


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m)
        extra = consumer.consume(num_messages=1000, timeout=1.0)  # nothing more may come
        got.extend(m for m in extra if m.error() is None)
    finally:
        consumer.close()
    return got


def changelog_state(bootstrap: str, topic: str) -> dict[str, bytes | None]:
    """The latest committed value of every key in the workers' changelog (None: deleted)."""
    return {
        key.decode(): m.value()
        for m in read_all_committed(bootstrap, topic)
        if (key := m.key()) is not None
    }


def changelog_windows(bootstrap: str, topic: str) -> dict[str, tuple[int, int, int]]:
    """The latest committed value of every window key in the workers' changelog."""
    out: dict[str, tuple[int, int, int]] = {}
    for name, value in changelog_state(bootstrap, topic).items():
        if name.startswith("w:") and value is not None:
            total, events, unpriced = (int(x) for x in value.decode().split(","))
            out[name] = (total, events, unpriced)
    return out


def wait_topics(bootstrap: str, wanted: set[str], timeout: float = 60) -> None:
    """Wait until every topic in ``wanted`` exists (a worker creates its topics at start)."""
    from tokenledger.streams.admin.topics import admin_client

    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while not wanted <= set(admin.list_topics(timeout=5).topics):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"topics missing after {timeout}s: {sorted(wanted - set(admin.list_topics(timeout=5).topics))}"
            )
        time.sleep(0.1)
