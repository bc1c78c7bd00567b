"""Exactly-once stream processing on Kafka transactions (EOS v2, KIP-447).

Each loop: consume a batch; hand every record to the task of its partition number (input
topics are co-partitioned by tenant, so one task sees all of a tenant's events); then, in
ONE transaction, produce the outputs, the changed state keys to the compacted changelog
(partition = the task's partition), and the input offsets. Either all of it is visible to
``read_committed`` readers or none of it is.

On assignment a task's state is rebuilt from its changelog partition. A worker killed
mid-batch leaves an open transaction that the restarted worker (same ``instance_id``,
hence the same transactional.id) aborts on start, or that the broker aborts after
``transaction.timeout.ms``; its partitions resume from the last committed offsets with the
state of that same commit, so totals, windows and signals equal an uninterrupted run.
Failures inside a transaction are not patched up: the worker aborts and exits (crash-only),
and the restart restores from the last commit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from streams.errors import ServiceUnavailableError
from streams.records import Output
from streams.worker.state import ChangelogState
from tokenledger.kafka_config import client_config

log = logging.getLogger(__name__)


class Task(Protocol):
    state: ChangelogState

    @property
    def counters(self) -> Counter[str]: ...

    def process(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        now: datetime,
    ) -> list[Output]: ...  # fmt: skip

    def end_batch(self, now: datetime) -> list[Output]: ...


TaskFactory = Callable[[int, ChangelogState], Task]


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


class TransactionalEngine:
    def __init__(self, config: EngineConfig, factory: TaskFactory,
                 kafka_config: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.config = config
        self.factory = factory
        self.kafka_config = kafka_config or {}
        self.tasks: dict[int, Task] = {}
        self.batches = 0
        self.records = 0
        self.hooks: list[Callable[[], None]] = []
        """Called before every batch, on the engine's thread (e.g. to follow budgets)."""
        self._stop = threading.Event()

    # -- public --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for task in self.tasks.values():
            total.update(task.counters)
        return total

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException, Producer

        cfg = self.config
        producer = Producer(client_config(cfg.bootstrap, {
            "transactional.id": f"{cfg.group_id}-{cfg.instance_id}",
            "enable.idempotence": True,
            "transaction.timeout.ms": cfg.transaction_timeout_ms,
            "linger.ms": 5,
            "compression.type": "lz4",
            **self.kafka_config,
        }))  # fmt: skip
        try:
            producer.init_transactions(30)  # fences and aborts a previous incarnation's txn
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"cannot start transactions: {exc.args[0].str()}"
            ) from None
        consumer = Consumer(client_config(cfg.bootstrap, {
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
        }))  # fmt: skip
        consumer.subscribe(list(cfg.inputs), on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)  # fmt: skip
        log.info("worker %s consuming %s", cfg.instance_id, ", ".join(cfg.inputs))
        try:
            while not self._stop.is_set():
                for hook in self.hooks:
                    hook()
                messages = consumer.consume(cfg.max_batch, cfg.batch_timeout_s)
                self._transact(producer, consumer, messages)
        finally:
            consumer.close()
            producer.flush(10)

    # -- the transaction -----------------------------------------------------------------

    def _transact(self, producer: Any, consumer: Any, messages: list[Any]) -> None:
        from confluent_kafka import TopicPartition

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
        producer.begin_transaction()
        for out in outputs:
            self._produce(producer, out.topic, out.key, out.value, None, out.headers)
        for partition, key, value in changes:
            self._produce(producer, self.config.changelog, key.encode(),
                          value.encode() if value is not None else None, partition)  # fmt: skip
        if offsets:
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(), 30,
            )  # fmt: skip
        producer.commit_transaction(60)
        self.batches += 1
        self.records += len(messages)

    @staticmethod
    def _produce(producer: Any, topic: str, key: bytes | None, value: bytes | None,
                 partition: int | None, headers: list[tuple[str, str | bytes | None]] | None = None,
                 ) -> None:  # fmt: skip
        kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                producer.poll(0.05)  # the producer queue drains as the broker acknowledges

    # -- rebalancing ---------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions} - set(self.tasks))
        if numbers:
            states = self._restore(numbers)
            for p in numbers:
                self.tasks[p] = self.factory(p, states[p])
            log.info("assigned partitions %s (state restored)", numbers)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.tasks.pop(tp.partition, None)

    def _restore(self, partitions: list[int]) -> dict[int, ChangelogState]:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        cfg = self.config
        states = {p: ChangelogState() for p in partitions}
        restorer = Consumer(client_config(cfg.bootstrap, {
            "group.id": f"{cfg.group_id}-restore", "enable.auto.commit": False,
            "isolation.level": "read_committed", **self.kafka_config,
        }))  # fmt: skip
        try:
            targets = {}
            for p in partitions:
                _low, high = restorer.get_watermark_offsets(TopicPartition(cfg.changelog, p), 10)
                targets[p] = high
            pending = {p for p, high in targets.items() if high > 0}
            restorer.assign([TopicPartition(cfg.changelog, p, OFFSET_BEGINNING) for p in pending])
            deadline = time.monotonic() + cfg.restore_timeout_s
            while pending:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"restoring state of partitions {sorted(pending)} took over "
                        f"{cfg.restore_timeout_s:.0f}s; is a transaction stuck open?"
                    )
                for m in restorer.consume(5000, 0.2):
                    partition = m.partition()
                    if m.error() is None and partition is not None:
                        key, value = m.key(), m.value()
                        states[partition].restore(
                            key.decode() if key else "", value.decode() if value else None
                        )
                for p in list(pending):
                    position = restorer.position([TopicPartition(cfg.changelog, p)])[0].offset
                    if position >= targets[p]:
                        pending.discard(p)
        finally:
            restorer.close()
        return states
