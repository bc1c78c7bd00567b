"""Budget definitions followed from the compacted budgets topic into a BudgetBook: read to
the end once (the worker at start, `tokenledger budget list|set|rm`), then polled."""

from __future__ import annotations

import time

from streams.config import Settings
from streams.errors import ServiceUnavailableError
from streams.worker.budgets import BudgetBook
from tokenledger.kafka_config import client_config


class BudgetFeed:
    """Keeps a BudgetBook current from the compacted budgets topic (all partitions)."""

    def __init__(self, settings: Settings, topic: str, book: BudgetBook) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.book = book
        self.topic = topic
        self.consumer = Consumer(client_config(settings.kafka, {
            "group.id": settings.topic("tokenledger-budget-feed"), "enable.auto.commit": False,
            "enable.partition.eof": True,
        }))  # fmt: skip
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.partitions = set(meta.partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])

    def catch_up(self, timeout: float = 30.0) -> None:
        from confluent_kafka import KafkaError

        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while at_end != self.partitions:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"could not read {self.topic} to its end")
            for m in self.consumer.consume(1000, 0.2):
                err = m.error()
                if err is None:
                    self.book.apply(m.key(), m.value(), m.headers())
                elif err.code() == KafkaError._PARTITION_EOF and m.partition() is not None:
                    at_end.add(m.partition())  # type: ignore[arg-type]

    def poll(self) -> None:
        for m in self.consumer.consume(500, 0):
            if m.error() is None:
                self.book.apply(m.key(), m.value(), m.headers())

    def close(self) -> None:
        self.consumer.close()
