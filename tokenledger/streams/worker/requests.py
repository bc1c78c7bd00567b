"""The request processor: ``tokenledger.requests.v1`` -> budget reservations.

A request event reserves its estimated cost for its tenant (and feature) until the usage
event of the same request and attempt settles it. Invalid request events go to the DLQ.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from tokenledger.contract.messages import RequestEvent
from tokenledger.streams.records import Output, Rejection, dead_letter
from tokenledger.streams.worker.budgets import BudgetTracker
from tokenledger.streams.worker.validate import parse

COMPONENT = "requests-worker"


class RequestHandler:
    def __init__(self, budgets: BudgetTracker, dlq_topic: str) -> None:
        self.budgets = budgets
        self.dlq_topic = dlq_topic
        self.counters: Counter[str] = Counter()

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> list[Output]:
        event = parse(value, RequestEvent, now)
        if isinstance(event, Rejection):
            return [
                dead_letter(
                    event,
                    self.counters,
                    self.dlq_topic,
                    raw=value,
                    key=key,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    component=COMPONENT,
                    now=now,
                )
            ]
        self.budgets.on_request(event)
        self.counters["reserved"] += 1
        return []
