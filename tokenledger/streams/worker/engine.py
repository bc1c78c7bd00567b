"""The worker's poll loop: exactly-once stream processing on Kafka transactions.

Each loop: consume a batch; hand every record to the task of its partition number (input
topics are co-partitioned by tenant, so one task sees all of a tenant's events); let every
task close the batch; then commit the outputs, the changed state keys and the input
offsets in ONE transaction (transactions.py), and only then tell each task's state how far
its changelog reaches. A batch that read, produced and changed nothing commits nothing.

On assignment a task's state comes back from its changelog partition: from the start into
memory, or (with ``state_dir``) into a RocksDB store that keeps what was committed, so only
the changelog tail after the store's last applied offset is replayed. A worker killed
mid-batch leaves an open transaction that the restarted worker (same ``instance_id``,
hence the same transactional.id) aborts on start; its partitions resume from the last
committed offsets with the state of that same commit, so totals, windows and signals equal
an uninterrupted run. A transaction that fails sends the engine back to the last commit,
tasks rebuilt on the restored state (crash-only within the process).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tokenledger.kafka_config import client_config
from tokenledger.streams.records import Output
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.transactions import Transactions

log = logging.getLogger(__name__)


class Task(Protocol):
    state: State

    @property
    def counters(self) -> Counter[str]: ...

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> list[Output]: ...

    def end_batch(self, now: datetime) -> list[Output]: ...


TaskFactory = Callable[[int, State], Task]


@dataclass(frozen=True)
class EngineConfig:
    group_id: str
    inputs: tuple[str, ...]
    changelog: str
    instance_id: str
    bootstrap: str
    max_batch: int = 2000
    batch_timeout_s: float = 0.05
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    restore_timeout_s: float = 60.0
    state_dir: str | None = None
    """Keep each partition's state in RocksDB under this folder (else in memory)."""


class TransactionalEngine:
    def __init__(
        self, config: EngineConfig, factory: TaskFactory, kafka_config: dict[str, Any] | None = None
    ) -> None:
        self.config = config
        self.factory = factory
        self.kafka_config = kafka_config or {}
        self.tasks: dict[int, Task] = {}
        self._retired: Counter[str] = Counter()
        """Counters of tasks whose partitions this engine no longer holds."""
        self._at_commit: Counter[str] = Counter()
        """counters() as of the last committed transaction (what a recovery goes back to)."""
        self.recoveries = 0
        """Failed transactions this engine recovered from."""
        self.batches = 0
        self.records = 0
        self.restores: Counter[str] = Counter()
        """state.* counters: partitions reused or rebuilt, changelog records replayed."""
        self.hooks: list[Callable[[], None]] = []
        """Called before every batch, on the engine's thread (e.g. to follow budgets)."""
        self._stop = threading.Event()
        self.transactions = Transactions(config, self.kafka_config, self._stop, self.restores)

    # -- public --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def counters(self) -> Counter[str]:
        """What this engine counted over its life, including partitions it handed over."""
        total: Counter[str] = Counter(self._retired)
        for task in self.tasks.values():
            total.update(task.counters)
        total.update(self.restores)
        return total

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        cfg = self.config
        self.transactions.start()
        consumer = Consumer(
            client_config(
                cfg.bootstrap,
                {
                    "group.id": cfg.group_id,
                    # static membership: a restarted instance takes its partitions back at once;
                    # a worker that never returns is replaced after the session timeout
                    "group.instance.id": cfg.instance_id,
                    "session.timeout.ms": cfg.session_timeout_ms,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",  # co-partitioned inputs stay together
                    **self.kafka_config,
                },
            )
        )
        consumer.subscribe(
            list(cfg.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("worker %s consuming %s", cfg.instance_id, ", ".join(cfg.inputs))
        try:
            while not self._stop.is_set():
                for hook in self.hooks:
                    hook()
                messages = consumer.consume(cfg.max_batch, cfg.batch_timeout_s)
                try:
                    self._process(consumer, messages)
                except KafkaException as exc:
                    self._recover(consumer, exc)
        finally:
            consumer.close()
            self.transactions.close()
            for task in self.tasks.values():
                task.state.close()

    # -- one batch -----------------------------------------------------------------------

    def _process(self, consumer: Any, messages: list[Any]) -> None:
        """Every record to its partition's task, then the batch's transaction."""
        now = datetime.now(UTC)
        outputs: list[Output] = []
        offsets: dict[tuple[str, int], int] = {}
        for m in messages:
            err = m.error()
            if err is not None:
                log.warning("consumer error: %s", err.str())
                continue
            partition = m.partition()
            task = self.tasks.get(partition)
            if task is None:  # revoked between consume and here: not ours to process
                continue
            outputs.extend(task.process(m.topic(), partition, m.offset(), m.key(), m.value(), now))
            offsets[(m.topic(), partition)] = m.offset() + 1
        for task in self.tasks.values():
            outputs.extend(task.end_batch(now))
        changes = [(p, k, v) for p, t in self.tasks.items() for k, v in t.state.changes()]
        if not offsets and not outputs and not changes:
            return
        reach = self.transactions.commit(outputs, changes, offsets, consumer)
        for partition, task in self.tasks.items():
            task.state.applied(reach.get(partition))
        self.batches += 1
        self.records += len(messages)
        self._at_commit = self.counters()

    def _recover(self, consumer: Any, exc: Exception) -> None:
        """Back to the last commit (transactions.recover): tasks rebuilt on the restored
        states, counters as of that commit."""

        def reload() -> dict[int, State]:
            for task in self.tasks.values():
                task.state.close()  # back to what is committed: the store, or nothing
            return self.transactions.restore(sorted(self.tasks))

        states = self.transactions.recover(consumer, exc, reload)
        if states is None:
            return  # stopping
        self._retired = Counter(self._at_commit)
        self.tasks = {p: self.factory(p, states[p]) for p in states}
        self.recoveries += 1
        log.warning("recovered: partitions %s back at their last commit", sorted(states))

    # -- rebalancing ---------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions} - set(self.tasks))
        if numbers:
            states = self.transactions.restore(numbers)
            for p in numbers:
                self.tasks[p] = self.factory(p, states[p])
            log.info("assigned partitions %s (state restored)", numbers)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            task = self.tasks.pop(tp.partition, None)
            if task is not None:
                self._retired.update(task.counters)
                task.state.close()
