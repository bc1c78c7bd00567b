"""The request processor: ``tokenledger.requests.v1`` -> budget reservations.

A request event reserves its estimated cost for its tenant (and feature) until the usage
event of the same request and attempt settles it. Invalid request events go to the DLQ.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from schemas.messages import RequestEvent
from streams.budgets import BudgetTracker
from streams.usage import Output
from streams.validate import Rejection, dlq_record, parse

COMPONENT = "requests-worker"


class RequestHandler:
    def __init__(self, budgets: BudgetTracker, dlq_topic: str) -> None:
        self.budgets = budgets
        self.dlq_topic = dlq_topic
        self.counters: Counter[str] = Counter()

    def process(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        now: datetime,
    ) -> list[Output]:  # fmt: skip
        event = parse(value, RequestEvent, now)
        if isinstance(event, Rejection):
            self.counters[f"dlq.{event.reason}"] += 1
            record = dlq_record(event, raw=value, key=key, topic=topic, partition=partition,
                                offset=offset, component=COMPONENT, now=now)  # fmt: skip
            return [Output(self.dlq_topic, key, record.model_dump_json().encode())]
        self.budgets.on_request(event)
        self.counters["reserved"] += 1
        return []
