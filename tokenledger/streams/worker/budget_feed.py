"""Budget definitions followed from the compacted budgets topic into ``BudgetDefinitions``:
read to the end once (the worker at start, `tokenledger budget list|set|rm`), then polled."""

from __future__ import annotations

from typing import Any

from tokenledger.kafka_config import assign_from_start, client_config, read_to_end
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions


class BudgetFeed:
    """Keeps ``BudgetDefinitions`` current from the compacted budgets topic (all partitions)."""

    def __init__(self, settings: Settings, topic: str, book: BudgetDefinitions) -> None:
        from confluent_kafka import Consumer

        self.book = book
        self.topic = topic
        self.consumer = Consumer(
            client_config(
                settings.kafka,
                {
                    "group.id": settings.topic("tokenledger-budget-feed"),
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                },
            )
        )
        self.partitions = assign_from_start(self.consumer, topic)

    def catch_up(self, timeout: float = 30.0) -> None:
        def apply(m: Any) -> None:
            self.book.apply(m.key(), m.value(), m.headers())

        if not read_to_end(self.consumer, self.partitions, apply, timeout):
            raise ServiceUnavailableError(f"could not read {self.topic} to its end")

    def poll(self) -> None:
        for m in self.consumer.consume(500, 0):
            if m.error() is None:
                self.book.apply(m.key(), m.value(), m.headers())

    def close(self) -> None:
        self.consumer.close()
