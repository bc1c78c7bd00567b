"""Exactly-once stream processing on Kafka transactions (EOS v2, KIP-447).

Each loop: consume a batch; hand every record to the task of its partition number (input
topics are co-partitioned by tenant, so one task sees all of a tenant's events); then, in
ONE transaction, produce the outputs, the changed state keys to the compacted changelog
(partition = the task's partition), and the input offsets. Either all of it is visible to
``read_committed`` readers or none of it is.

On assignment a task's state comes back from its changelog partition: from the start into
memory, or (with ``state_dir``) into a RocksDB store that keeps what was committed, so only
the changelog tail after the store's last applied offset is replayed. A worker killed
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tokenledger.kafka_config import client_config
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.records import Output
from tokenledger.streams.worker import restore
from tokenledger.streams.worker.state import State

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
        self._changelog_next: dict[int, int] = {}
        self.hooks: list[Callable[[], None]] = []
        """Called before every batch, on the engine's thread (e.g. to follow budgets)."""
        self._stop = threading.Event()

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
        try:
            producer = self._producer()
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"cannot start transactions: {exc.args[0].str()}"
            ) from None
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
                    self._transact(producer, consumer, messages)
                except KafkaException as exc:
                    producer = self._recover(producer, consumer, exc)
        finally:
            consumer.close()
            producer.flush(10)
            for task in self.tasks.values():
                task.state.close()

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
            if out.headers:
                self._produce(producer, out.topic, out.key, out.value, headers=out.headers)
            else:
                self._produce(producer, out.topic, out.key, out.value)
        self._changelog_next.clear()
        self._produce_changes(producer, changes)
        if offsets:
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(),
                30,
            )
        self._commit(producer)
        producer.poll(0)  # delivery reports: where this transaction's changelog records are
        for partition, task in self.tasks.items():
            task.state.applied(self._changelog_next.get(partition))
        self.batches += 1
        self.records += len(messages)
        self._at_commit = self.counters()

    def _produce_changes(self, producer: Any, changes: list[tuple[int, str, str | None]]) -> None:
        """The changed state keys to their changelog partitions. Records of one partition
        are delivered in order (idempotent producer), so the last one's delivery report
        tells how far the changelog reaches: only it carries a callback."""
        last = {partition: i for i, (partition, _, _) in enumerate(changes)}
        changelog, produce = self.config.changelog, self._produce
        for i, (partition, key, value) in enumerate(changes):
            raw = value.encode() if value is not None else None
            if last[partition] == i:
                produce(
                    producer,
                    changelog,
                    key.encode(),
                    raw,
                    partition=partition,
                    on_delivery=self._delivered,
                )
            else:
                produce(producer, changelog, key.encode(), raw, partition=partition)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            p = msg.partition()
            self._changelog_next[p] = max(self._changelog_next.get(p, 0), msg.offset() + 1)

    def _producer(self) -> Any:
        """The transactional producer of this instance, its transactions initialised: that
        fences and aborts whatever a previous incarnation (or producer) left open."""
        producer = self._new_producer()
        producer.init_transactions(30)
        return producer

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        cfg = self.config
        producer = Producer(
            client_config(
                cfg.bootstrap,
                {
                    "transactional.id": f"{cfg.group_id}-{cfg.instance_id}",
                    "enable.idempotence": True,
                    "transaction.timeout.ms": cfg.transaction_timeout_ms,
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    **self.kafka_config,
                },
            )
        )
        return producer

    def _commit(self, producer: Any) -> None:
        """Commit the open transaction. A retriable failure leaves its outcome unknown, and
        librdkafka's answer is to call commit again (it completes the same transaction);
        anything else goes to _recover."""
        from confluent_kafka import KafkaException

        while True:
            try:
                producer.commit_transaction(60)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.txn_requires_abort() or self._stop.is_set():
                    raise
                log.warning("committing the transaction again (%s)", error.str())

    def _recover(self, producer: Any, consumer: Any, exc: Exception) -> Any:
        """A transaction failed (e.g. the broker went away): go back to the last commit,
        state and positions alike, with a new producer, retrying while the broker is away.
        The new producer's init_transactions fences the old one and aborts its transaction;
        a fresh producer also sheds coordinator state that librdkafka can keep stale after
        an outage (a send_offsets_to_transaction that then never returns). Only a fatal
        error (this instance was fenced by another) ends the worker. Returns the producer."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        def fatal(error: Any) -> None:
            if error.fatal():
                raise ServiceUnavailableError(
                    f"the worker's transactions failed for good ({error.str()}); is another "
                    "worker running with the same --instance name?"
                ) from None

        fatal(exc.args[0])
        log.warning("a transaction failed (%s); resuming from the last commit", exc.args[0].str())
        delay = 0.5
        fresh, ready = self._new_producer(), False
        while not self._stop.is_set():
            try:
                if not ready:  # a timed-out init is resumed by calling it again on the same
                    fresh.init_transactions(30)  # producer; a new one would wait for it
                    ready = True
                positions = consumer.committed(consumer.assignment(), timeout=30)
                for task in self.tasks.values():
                    task.state.close()  # back to what is committed: the store, or nothing
                states = self._restore(sorted(self.tasks))
                break
            except (KafkaException, ServiceUnavailableError) as again:
                if isinstance(again, KafkaException):
                    fatal(again.args[0])
                log.warning("still recovering (%s); retrying in %.1fs", str(again)[:200], delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        else:
            return producer  # stopping: the next start resumes from the last commit anyway
        for tp in positions:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        self._retired = Counter(self._at_commit)
        self.tasks = {p: self.factory(p, states[p]) for p in states}
        self.recoveries += 1
        log.warning("recovered: partitions %s back at their last commit", sorted(states))
        return fresh

    @staticmethod
    def _produce(
        producer: Any, topic: str, key: bytes | None, value: bytes | None, **kwargs: Any
    ) -> None:
        """produce, waiting for room in the producer's queue (kwargs: partition, headers,
        on_delivery)."""
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
            task = self.tasks.pop(tp.partition, None)
            if task is not None:
                self._retired.update(task.counters)
                task.state.close()

    def _restore(self, partitions: list[int]) -> dict[int, State]:
        """Each partition's committed state: a store reused and its changelog tail
        replayed, or the whole changelog replayed into a new store (or into memory)."""
        from confluent_kafka import Consumer, TopicPartition

        cfg = self.config
        restorer = Consumer(
            client_config(
                cfg.bootstrap,
                {
                    "group.id": f"{cfg.group_id}-restore",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    **self.kafka_config,
                },
            )
        )
        try:
            ends = {}
            for p in partitions:
                ends[p] = restorer.get_watermark_offsets(TopicPartition(cfg.changelog, p), 10)
            states, starts = restore.open_states(cfg.state_dir, ends, self.restores)
            targets = {p: high for p, (_, high) in ends.items()}
            restore.replay(
                restorer,
                cfg.changelog,
                states,
                starts,
                targets,
                cfg.restore_timeout_s,
                self.restores,
            )
        finally:
            restorer.close()
        return states
