"""One partition's processors, composed: usage (validate -> dedup -> price -> windows), requests
(reservations), budgets and anomalies over one state.

The usage and request topics are co-partitioned by tenant, so one partition task holds
everything about its tenants: dedup, windows, reservations, budget spend and the signals
it published. Runs on the transactional engine (tokenledger.streams.worker.service) or without Kafka
(tokenledger.streams.demo.offline).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from tokenledger.contract import topics
from tokenledger.contract.price_book import PriceBook
from tokenledger.streams.admin.signer import Signer, headers_for
from tokenledger.streams.records import Output
from tokenledger.streams.worker.anomalies import AnomalyTask, DetectorConfig
from tokenledger.streams.worker.breakers import BreakerConfig
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budgets import (
    DEFAULT_HEARTBEAT,
    DEFAULT_RESERVATION_TIMEOUT,
    BudgetTracker,
)
from tokenledger.streams.worker.call_control import CallControl
from tokenledger.streams.worker.price import Enriched
from tokenledger.streams.worker.requests import RequestHandler
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.usage import UsageTask, UsageTopics


class PartitionTask:
    """Everything one partition of the (co-partitioned) usage and request topics needs."""

    def __init__(
        self,
        state: State,
        usage: UsageTask,
        requests: RequestHandler,
        budgets: BudgetTracker,
        anomalies: AnomalyTask,
        requests_topic: str,
        signals_topic: str,
        signer: Signer | None = None,
        control: CallControl | None = None,
    ) -> None:
        self.state = state
        self.usage = usage
        self.requests = requests
        self.budgets = budgets
        self.anomalies = anomalies
        self.signer = signer
        self.requests_topic = requests_topic
        self.signals_topic = signals_topic
        self.control = control

    @property
    def counters(self) -> Counter[str]:
        control = self.control.counters if self.control is not None else Counter()
        return self.usage.counters + self.requests.counters + self.anomalies.counters + control

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> list[Output]:
        handler = self.requests if topic == self.requests_topic else self.usage
        return handler.process(topic, partition, offset, key, value, now)

    def end_batch(self, now: datetime) -> list[Output]:
        outputs = self.usage.end_batch(now)
        for signal in self.budgets.end_batch(now):
            self.usage.counters[f"signal.{signal.state}"] += 1
            key, value = signal.scope.encode(), signal.model_dump_json().encode()
            issued_ms = int(signal.issued_at.timestamp() * 1000)
            headers = headers_for(self.signer, self.signals_topic, key, value, issued_ms)
            outputs.append(Output(self.signals_topic, key, value, headers))
        if self.control is not None:
            outputs += self.control.end_batch(self.usage.watermark_ms, now)
        return outputs + self.anomalies.end_batch()


def partition_task(
    state: State,
    prices: PriceBook,
    book: BudgetDefinitions,
    names: dict[str, str],
    *,
    reservation_timeout: timedelta = DEFAULT_RESERVATION_TIMEOUT,
    heartbeat: timedelta = DEFAULT_HEARTBEAT,
    detectors: DetectorConfig | None = None,
    signer: Signer | None = None,
    breakers: BreakerConfig | None = None,
    **options: Any,
) -> PartitionTask:
    """The processors of one input partition over ``state``; ``names`` maps each topic's
    name to the (namespaced) name to use. Also runs without Kafka (tokenledger/streams/offline.py)."""
    out = UsageTopics(enriched=names[topics.USAGE_ENRICHED], dlq=names[topics.DLQ])
    budgets = BudgetTracker(
        state, book, reservation_timeout=reservation_timeout, heartbeat=heartbeat
    )
    usage = UsageTask(state, prices, out, **options)
    anomalies = AnomalyTask(
        state, usage.windows, names[topics.ALERTS], budgets=budgets, config=detectors
    )

    signals = names[topics.SIGNALS]
    control = CallControl(
        state, book.retry_budgets, signals, signer, heartbeat=heartbeat, breakers=breakers
    )

    def on_enriched(event: Enriched) -> None:
        budgets.on_usage(event)
        anomalies.observe(event)
        control.on_usage(event)

    usage.on_enriched = on_enriched
    usage.on_minute = anomalies.tick
    requests = RequestHandler(budgets, names[topics.DLQ])
    return PartitionTask(
        state,
        usage,
        requests,
        budgets,
        anomalies,
        names[topics.REQUESTS],
        names[topics.SIGNALS],
        signer,
        control,
    )
