"""The worker's processors without Kafka: one partition task fed from memory.

Runs exactly the logic the stream worker runs per partition (validation, dedup, pricing,
windows, budgets, anomaly detection), in batches, with the processing clock following event
time. Used to score the detectors on labeled scenarios (bench/bench_anomalies.py) and by
tests that need days of simulated traffic in seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tokenledger.contract import topics
from tokenledger.contract.call_control import kind_of
from tokenledger.contract.messages import Alert, Budget, Signal
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.streams.worker.anomalies import DetectorConfig
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.task import PartitionTask, partition_task

NAMES = {t.name: t.name for t in topics.TOPICS}


@dataclass
class OfflineRun:
    alerts: list[Alert] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    events: int = 0


class OfflineWorker:
    def __init__(
        self,
        *,
        prices: PriceBook | None = None,
        budgets: Iterable[Budget] = (),
        detectors: DetectorConfig | None = None,
        batch: int = 500,
        processing_delay: timedelta = timedelta(seconds=1),
        max_batch_time: timedelta = timedelta(seconds=5),
        state: ChangelogState | None = None,
    ) -> None:
        """``state``: what a previous run committed (a restore), else empty."""
        self.book = BudgetDefinitions()
        for budget in budgets:
            self.book.apply(budget.scope.encode(), budget.model_dump_json().encode())
        self.state = state or ChangelogState()
        self.task: PartitionTask = partition_task(
            self.state, prices or load_price_book(), self.book, NAMES, detectors=detectors
        )
        self.batch = batch
        self.delay = processing_delay
        self.max_batch_time = max_batch_time
        self.run = OfflineRun()
        self._offset = 0

    def feed(self, events: Iterable[tuple[datetime, dict[str, Any]]]) -> OfflineRun:
        """Process ``events`` (event time, usage event JSON) in batches; the batch ends at
        the processing time ``last event time + processing_delay``."""
        pending = 0
        last: datetime | None = None
        batch_end: datetime | None = None
        for ts, event in events:
            now = ts + self.delay
            if batch_end is not None and now >= batch_end and pending:
                self._collect(self.task.end_batch(batch_end))
                pending = 0
            if pending == 0:
                batch_end = now + self.max_batch_time
            self._offset += 1
            self._collect(
                self.task.process(
                    topics.USAGE, 0, self._offset, None, json.dumps(event).encode(), now
                )
            )
            self.run.events += 1
            pending += 1
            last = now
            if pending >= self.batch:
                self._collect(self.task.end_batch(now))
                pending = 0
        if last is not None:
            self._collect(self.task.end_batch(last))
        self.run.counters = self.task.counters
        return self.run

    def _collect(self, outputs: Iterable[Any]) -> None:
        for out in outputs:
            if out.topic == topics.ALERTS:
                self.run.alerts.append(Alert.model_validate_json(out.value))
            elif out.topic == topics.SIGNALS and kind_of(out.value) == "signal":
                self.run.signals.append(Signal.model_validate_json(out.value))
        self.state.changes()  # what the engine would write to the changelog
