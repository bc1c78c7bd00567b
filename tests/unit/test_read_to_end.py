"""Reading a topic to its end (tokenledger.kafka_config.read_to_end): the one loop the budget
feed, the notifier's restore and the tests' readers share. Every record of the assigned
partitions is handed over until each partition has reported its end."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError

from tokenledger.kafka_config import read_to_end


class Message:
    def __init__(self, partition: int, value: bytes | None = None, code: int | None = None):
        self._partition, self._value = partition, value
        self._error = None if code is None else KafkaError(code)

    def error(self) -> KafkaError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def value(self) -> bytes | None:
        return self._value


class Consumer:
    """Hands out the given batches, one per consume() call, then nothing (after waiting
    ``timeout``, as librdkafka does when no message comes)."""

    def __init__(self, *batches: list[Message]) -> None:
        self.batches = deque(batches)
        self.calls = 0

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls += 1
        if self.batches:
            return self.batches.popleft()
        time.sleep(timeout)
        return []


def eof(partition: int) -> Message:
    return Message(partition, code=KafkaError._PARTITION_EOF)


def test_every_record_until_each_partition_reports_its_end() -> None:
    consumer = Consumer(
        [Message(0, b"a"), Message(1, b"b"), eof(0)],
        [Message(1, b"c"), Message(1, code=KafkaError._TRANSPORT)],  # an error is no record
        [eof(1)],
        [Message(0, b"after the end")],
    )
    got: list[Any] = []
    assert read_to_end(consumer, {0, 1}, lambda m: got.append(m.value()), timeout=5)
    assert got == [b"a", b"b", b"c"]
    assert consumer.calls == 3


def test_an_empty_set_of_partitions_is_at_its_end_at_once() -> None:
    consumer = Consumer([Message(0, b"a")])
    assert read_to_end(consumer, set(), lambda m: None, timeout=5)
    assert consumer.calls == 0


def test_a_partition_that_never_ends_gives_up_at_the_timeout() -> None:
    consumer = Consumer([Message(0, b"a"), eof(0), Message(1, b"b")])
    got: list[Any] = []
    assert not read_to_end(consumer, {0, 1}, lambda m: got.append(m.value()), timeout=0.3)
    assert got == [b"a", b"b"]
    assert consumer.calls >= 2
