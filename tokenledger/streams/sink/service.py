"""The ClickHouse sink: every tokenledger topic into its raw table, exactly once.

This module is the consume/commit driver; writer.py turns messages into rows and stores
them. Batches are bounded by rows and by time. Kafka offsets are committed only after
ClickHouse has the rows (and the DLQ the rejections). Every row also carries its Kafka
partition and offset: when a partition is assigned, the sink resumes after the largest
offset its table holds, so a crash between an INSERT and the offset commit stores nothing
twice. ReplacingMergeTree (event_id in the key) is the backstop.

While ClickHouse stores one batch the driver reads the next; it holds at most these two.
When the writer signals backpressure (ClickHouse unavailable) the driver pauses its
partitions, keeps serving the group, and calls the writer again after the wait it named;
the partitions resume once the batch is stored. In a rebalance callback and at shutdown,
where it cannot return to its loop, it waits the same way in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from tokenledger.backoff import delays
from tokenledger.kafka_config import client_config, committed_reader
from tokenledger.streams.config import Settings
from tokenledger.streams.sink.batch import Batch
from tokenledger.streams.sink.writer import Backpressure, ClickHouseWriter, Job

log = logging.getLogger(__name__)

GROUP = "tokenledger-sink"
SERVE_S = 0.05
"""How long one poll of a paused consumer waits: the group is served meanwhile."""

T = TypeVar("T")


class Sink:
    def __init__(
        self,
        settings: Settings,
        client_factory: Callable[[], Any],
        *,
        max_rows: int = 5000,
        max_wait_s: float = 1.0,
        retry_max_s: float = 30.0,
        kafka_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.kafka_config = kafka_config or {}
        self.counters: Counter[str] = Counter()
        self.writer = ClickHouseWriter(
            settings, client_factory, self.counters, self._dead_letter, retry_max_s=retry_max_s
        )
        self._consumer: Any = None  # set by drive()
        self._producer: Any = None
        self._stop = threading.Event()
        self._batch = Batch()  # being read
        self._storing: Job | None = None  # being inserted
        self._paused = False  # by a backpressure signal in the loop
        self._retry_at = 0.0  # when to call the writer again

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        producer = Producer(
            client_config(self.settings.kafka, {"enable.idempotence": True, **self.kafka_config})
        )
        consumer = Consumer(
            client_config(
                self.settings.kafka, committed_reader(self.settings.topic(GROUP), self.kafka_config)
            )
        )
        self.drive(consumer, producer)

    def drive(self, consumer: Any, producer: Any) -> None:
        """Consume, store and commit with these clients until stopped (the consumer's
        group reader settings, the producer's DLQ delivery), then close them."""
        self._consumer, self._producer = consumer, producer
        consumer.subscribe(self.writer.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                try:
                    if self._paused:
                        self._wait_out()
                    else:
                        self._read()
                except Backpressure as signal:
                    self._pause(signal)
            self._store_everything()
        finally:
            consumer.close()  # revokes: what was read is stored first (_on_revoke)
            self.writer.close()
            producer.flush(10)

    def _read(self) -> None:
        """One poll: messages into the batch being read, batches to the writer when full
        or due, the batch being stored finished and committed when it is done."""
        batch = self._batch
        wait = self.max_wait_s
        if batch.ranges:
            wait = max(0.0, self.max_wait_s - (time.monotonic() - batch.started))
        if self._storing is not None:
            wait = 0.005  # commit soon after the rows are stored
        messages = self._consumer.consume(min(1000, self.max_rows), min(wait, 0.2))
        for m in messages:
            if m.error() is None:
                self.writer.add(self._batch, m)
        self._advance(bool(messages))

    def _advance(self, read: bool) -> None:
        batch = self._batch  # a rebalance may have stored the last one
        full = batch.count >= self.max_rows
        due = batch.ranges and time.monotonic() - batch.started >= self.max_wait_s
        if full or due:
            self._hand_over()
        elif self._storing is not None and (not read or self._storing.ready()):
            self._finish()

    # -- backpressure: paused partitions, the same batch again later -------------------

    def _pause(self, signal: Backpressure) -> None:
        log.warning(
            "ClickHouse unavailable (%s); retrying in %.1fs", signal.reason, signal.retry_after
        )
        if not self._paused:  # nothing new is read while this batch is unfinished
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        self._retry_at = time.monotonic() + signal.retry_after

    def _wait_out(self) -> None:
        """Serve the group until the writer's wait is over, then try again; resume the
        partitions once it went in."""
        left = self._retry_at - time.monotonic()
        if left > 0:
            self._serve(min(left, SERVE_S))
            return
        self._advance(False)  # the batch being stored, then the one read meanwhile
        self._consumer.resume(self._consumer.assignment())
        self._paused = False

    def _serve(self, seconds: float) -> None:
        """One poll of the paused consumer (it keeps the group membership); a message
        fetched before the pause is put back (seek) so the next batch reads it: nothing is
        skipped."""
        from confluent_kafka import TopicPartition

        m = self._consumer.poll(seconds)
        if m is not None and m.error() is None:
            self._consumer.seek(TopicPartition(m.topic(), m.partition(), m.offset()))

    def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` serving the group (the caller paused consumption)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._serve(min(left, SERVE_S))

    def _until_done(self, action: Callable[[], T]) -> T:
        """Run ``action`` (a writer call) to the end, waiting out each backpressure signal
        in place, consumption paused: for where the loop cannot be returned to."""
        paused = False
        while True:
            try:
                result = action()
            except Backpressure as signal:
                log.warning(
                    "ClickHouse unavailable (%s); retrying in %.1fs",
                    signal.reason,
                    signal.retry_after,
                )
                if not paused and not self._paused:
                    self._consumer.pause(self._consumer.assignment())
                    paused = True
                self._idle(signal.retry_after)
                continue
            if paused:
                self._consumer.resume(self._consumer.assignment())
            return result

    # -- two batches at a time: one read while the one before is inserted --------------

    def _hand_over(self) -> None:
        """Finish the batch before, then start inserting the batch just read (ClickHouse
        works without the GIL) and read the next one meanwhile."""
        self._finish()
        if not self._batch.ranges:  # a rebalance stored it meanwhile
            return
        batch, self._batch = self._batch, Batch()
        self._storing = self.writer.start(batch)

    def _finish(self) -> None:
        """Wait for the batch being inserted to be stored, then commit its offsets."""
        job = self._storing
        if job is None:
            return
        self.writer.finish(job)  # a Backpressure leaves the job to finish later
        self._storing = None
        self._commit(job.batch)

    def _store_everything(self) -> None:
        self._until_done(self._finish)
        if self._batch.ranges:
            self._hand_over()
            self._until_done(self._finish)

    # -- rebalancing ---------------------------------------------------------------------

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Store and commit what was read before the partitions go: the next owner
        resumes after what ClickHouse holds, so nothing may still be on its way."""
        self._store_everything()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Repair the rollup where a previous run may have died mid-INSERT, then resume
        each partition after what ClickHouse already holds."""
        self._until_done(self._finish)
        usage = [tp for tp in partitions if tp.topic == self.writer.usage_topic]
        if usage:
            committed = consumer.committed(usage, timeout=30)
            marks = {tp.partition: max(tp.offset, 0) for tp in committed}
            self._until_done(lambda: self.writer.repair(marks))
        self._until_done(self.writer.learn_ranges)
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            if tp.topic not in stored:
                topic = tp.topic

                def read(topic: str = topic) -> dict[int, int]:
                    return self.writer.stored_offsets(topic)

                stored[topic] = self._until_done(read)
            last = stored[tp.topic].get(tp.partition)
            if last is not None:
                tp.offset = last + 1
        consumer.assign(partitions)

    # -- Kafka: the DLQ and the offsets --------------------------------------------------

    def _dead_letter(self, value: bytes, key: bytes | None) -> None:
        self._producer.produce(self.writer.dlq_topic, value, key)

    def _commit(self, batch: Batch) -> None:
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in batch.ranges.items()]
        if self._kafka_retries(self._flush_dlq, "delivering DLQ records") and self._kafka_retries(
            lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "committing offsets"
        ):
            self.counters["batches"] += 1

    def _flush_dlq(self) -> None:
        """Rejections are in the DLQ before the offsets move past them."""
        from confluent_kafka import KafkaError, KafkaException

        left = self._producer.flush(10)
        if left:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} DLQ records not yet delivered")
            )

    def _kafka_retries(self, action: Callable[[], Any], what: str) -> bool:
        """Run ``action`` until it succeeds while Kafka is away (bounded waits); False when
        the sink is stopping or its partitions moved meanwhile. Either way the rows are
        stored: whoever consumes next resumes after the largest stored offset."""
        from confluent_kafka import KafkaError, KafkaException

        moved = {
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.UNKNOWN_MEMBER_ID,
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.FENCED_INSTANCE_ID,
        }
        waits = delays(0.5, cap=2.0)  # the broker answers again at once when back
        paused: list[Any] = []
        try:
            while True:
                try:
                    action()
                    return True
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.code() in moved or self._stop.is_set():
                        log.warning(
                            "%s failed (%s); the next owner resumes after the stored rows",
                            what,
                            error.str(),
                        )
                        return False
                    if error.fatal():
                        raise
                    self.counters["kafka_retries"] += 1
                    delay = next(waits)
                    log.warning("%s failed (%s); retrying in %.1fs", what, error.str(), delay)
                    if not paused and not self._paused:  # nothing new is read meanwhile
                        paused = self._consumer.assignment()
                        self._consumer.pause(paused)
                    self._idle(delay)
        finally:
            if paused:
                self._consumer.resume(paused)
