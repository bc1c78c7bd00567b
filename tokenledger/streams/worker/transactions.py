"""One worker instance's Kafka transactions (EOS v2, KIP-447), and the way back to the last
commit.

A batch is ONE transaction: the outputs, the changed state keys to the compacted changelog
(partition = the task's partition) and the input offsets. Either all of it is visible to
``read_committed`` readers or none of it is. The producer's transactional.id is fixed per
instance (group and ``instance_id``), so initialising it fences a previous incarnation and
aborts whatever that one left open; the broker aborts it anyway after
``transaction.timeout.ms``.

Failures inside a transaction are not patched up: the engine goes back to the last commit,
positions and state alike, with a new producer (``recover``); only a fatal error (this
instance fenced by another) ends the worker. A partition's committed state comes back from
its changelog (``restore``): a RocksDB store reused with its tail replayed, or the whole
changelog replayed, on assignment and after every failed transaction.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tokenledger.backoff import delays
from tokenledger.kafka_config import client_config
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.records import Output
from tokenledger.streams.worker import restore
from tokenledger.streams.worker.state import State

if TYPE_CHECKING:
    from tokenledger.streams.worker.engine import EngineConfig

log = logging.getLogger(__name__)

Change = tuple[int, str, str | None]
"""(partition, state key, value or None for a deletion): one changelog record."""


def fail_if_fatal(error: Any) -> None:
    """A fatal Kafka error ends the worker: its transactional.id is someone else's now."""
    if error.fatal():
        raise ServiceUnavailableError(
            f"the worker's transactions failed for good ({error.str()}); is another "
            "worker running with the same --instance name?"
        ) from None


class Transactions:
    def __init__(
        self,
        config: EngineConfig,
        kafka_config: dict[str, Any],
        stop: threading.Event,
        restores: Counter[str],
    ) -> None:
        """``stop`` ends retries early; ``restores`` counts partitions reused or rebuilt and
        changelog records replayed."""
        self.config = config
        self.kafka_config = kafka_config
        self.restores = restores
        self._stop = stop
        self.producer: Any = None
        self._changelog_next: dict[int, int] = {}

    def start(self) -> None:
        """The transactional producer of this instance, its transactions initialised: that
        fences and aborts whatever a previous incarnation (or producer) left open."""
        from confluent_kafka import KafkaException

        try:
            producer = self._new_producer()
            producer.init_transactions(30)
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"cannot start transactions: {exc.args[0].str()}"
            ) from None
        self.producer = producer

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        cfg = self.config
        return Producer(
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

    # -- one transaction per batch -------------------------------------------------------

    def commit(
        self,
        outputs: list[Output],
        changes: list[Change],
        offsets: dict[tuple[str, int], int],
        consumer: Any,
    ) -> dict[int, int]:
        """Produce ``outputs`` and ``changes`` and move the input ``offsets`` of
        ``consumer``'s group in one committed transaction. Returns partition -> the offset
        after its last changelog record (from the delivery reports). A KafkaException
        means the transaction did not commit: ``recover``."""
        from confluent_kafka import TopicPartition

        producer = self.producer
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
        return dict(self._changelog_next)

    def _produce_changes(self, producer: Any, changes: list[Change]) -> None:
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

    def _commit(self, producer: Any) -> None:
        """Commit the open transaction. A retriable failure leaves its outcome unknown, and
        librdkafka's answer is to call commit again (it completes the same transaction);
        anything else goes to recover."""
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

    # -- back to the last commit ---------------------------------------------------------

    def recover(
        self, consumer: Any, exc: Exception, reload: Callable[[], dict[int, State]]
    ) -> dict[int, State] | None:
        """A transaction failed (e.g. the broker went away): go back to the last commit,
        state and positions alike, with a new producer, retrying while the broker is away.
        The new producer's init_transactions fences the old one and aborts its transaction;
        a fresh producer also sheds coordinator state that librdkafka can keep stale after
        an outage (a send_offsets_to_transaction that then never returns). ``reload``
        closes the partitions' states and restores what is committed. Returns the restored
        states, or None when stopping (the next start resumes from the last commit anyway).
        """
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        fail_if_fatal(exc.args[0])
        log.warning("a transaction failed (%s); resuming from the last commit", exc.args[0].str())
        waits = delays(0.5, cap=10.0)
        fresh, ready = self._new_producer(), False
        while not self._stop.is_set():
            try:
                if not ready:  # a timed-out init is resumed by calling it again on the same
                    fresh.init_transactions(30)  # producer; a new one would wait for it
                    ready = True
                positions = consumer.committed(consumer.assignment(), timeout=30)
                states = reload()
                break
            except (KafkaException, ServiceUnavailableError) as again:
                if isinstance(again, KafkaException):
                    fail_if_fatal(again.args[0])
                delay = next(waits)
                log.warning("still recovering (%s); retrying in %.1fs", str(again)[:200], delay)
                self._stop.wait(delay)
        else:
            return None
        for tp in positions:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        self.producer = fresh
        return states

    def restore(self, partitions: list[int]) -> dict[int, State]:
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
