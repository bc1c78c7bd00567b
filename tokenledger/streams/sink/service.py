"""The ClickHouse sink: every tokenledger topic into its raw table, exactly once.

Batches are bounded by rows and by time. A batch is inserted table by table with a
deterministic deduplication token (topic, partition and offset range), so a retried INSERT
whose answer was lost is dropped by ClickHouse, in the raw table and in the rollups fed by
materialized views. Kafka offsets are committed only after ClickHouse has the rows. Every
row also carries its Kafka partition and offset: when a partition is assigned, the sink
resumes after the largest offset its table holds, so a crash between an INSERT and the
offset commit stores nothing twice. ReplacingMergeTree (event_id in the key) is the
backstop.

While ClickHouse stores one batch (in a thread: the engine works without the GIL), the
sink reads the next; it holds at most these two. When ClickHouse is unavailable the sink
pauses consumption and retries the same batch with bounded exponential backoff. Rows
ClickHouse rejects, and messages that do not parse, go to the DLQ with the reason.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from tokenledger.contract import topics
from tokenledger.contract.call_control import SIGNAL_KINDS, kind_of
from tokenledger.contract.messages import (
    Alert,
    DlqRecord,
    EnrichedUsage,
    OutcomeEvent,
    RequestEvent,
    Signal,
)
from tokenledger.contract.rows import (
    AlertRow,
    DlqRow,
    OutcomeRow,
    RequestRow,
    Row,
    SignalRow,
    UsageRow,
)
from tokenledger.kafka_config import client_config, committed_reader
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError
from tokenledger.streams.records import Rejection, dlq_record
from tokenledger.streams.sink.batch import Batch, Insert
from tokenledger.streams.sink.columns import (
    SETTINGS,
    OutOfRangeError,
    Ranges,
    int_ranges,
    row_line,
    usage_line,
)
from tokenledger.streams.sink.resume import column_types, repair_rollup, stored_offsets

log = logging.getLogger(__name__)

COMPONENT = "clickhouse-sink"
GROUP = "tokenledger-sink"

ROUTES: dict[str, tuple[type[BaseModel], type[Row]]] = {
    topics.USAGE_ENRICHED: (EnrichedUsage, UsageRow),
    topics.REQUESTS: (RequestEvent, RequestRow),
    topics.OUTCOMES: (OutcomeEvent, OutcomeRow),
    topics.SIGNALS: (Signal, SignalRow),
    topics.ALERTS: (Alert, AlertRow),
    topics.DLQ: (DlqRecord, DlqRow),
}
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}
ROW_ERRORS = (ValueError, OverflowError, TypeError, struct.error)
"""A value the client cannot encode for its column (e.g. an integer beyond Int64)."""


class Storing(NamedTuple):
    """A batch handed to the insert thread."""

    batch: Batch
    inserts: list[Insert]
    future: Future[None]
    stored: list[str]  # topics whose INSERT succeeded at the first attempt


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
        self.client_factory = client_factory
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.retry_max_s = retry_max_s
        self.kafka_config = kafka_config or {}
        self.table_of = {settings.topic(t): (model, row) for t, (model, row) in ROUTES.items()}
        self.dlq_topic = settings.topic(topics.DLQ)
        self.usage_topic = settings.topic(topics.USAGE_ENRICHED)
        self.signals_topic = settings.topic(topics.SIGNALS)
        self.counters: Counter[str] = Counter()
        self._client: Any = None
        self._consumer: Any = None  # set by run()
        self._producer: Any = None
        self._stop = threading.Event()
        self._batch = Batch()  # being read
        self._storing: Storing | None = None  # being inserted
        self._ranges: Ranges = {}  # usage_events' integer columns, read when assigned
        self._inserter = ThreadPoolExecutor(1, thread_name_prefix="sink-insert")

    def stop(self) -> None:
        self._stop.set()

    # -- ClickHouse ----------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        self._producer = Producer(
            client_config(self.settings.kafka, {"enable.idempotence": True, **self.kafka_config})
        )
        consumer = Consumer(
            client_config(
                self.settings.kafka, committed_reader(self.settings.topic(GROUP), self.kafka_config)
            )
        )
        self._consumer = consumer
        consumer.subscribe(
            list(self.table_of), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not self._stop.is_set():
                batch = self._batch
                wait = self.max_wait_s
                if batch.ranges:
                    wait = max(0.0, self.max_wait_s - (time.monotonic() - batch.started))
                if self._storing is not None:
                    wait = 0.005  # commit soon after the rows are stored
                messages = consumer.consume(min(1000, self.max_rows), min(wait, 0.2))
                for m in messages:
                    if m.error() is None:
                        self._take(self._batch, m)
                batch = self._batch  # a rebalance may have stored the last one
                full = batch.count >= self.max_rows
                due = batch.ranges and time.monotonic() - batch.started >= self.max_wait_s
                if full or due:
                    self._hand_over()
                elif self._storing is not None and (not messages or self._storing.future.done()):
                    self._finish()
            self._store_everything()
        finally:
            consumer.close()  # revokes: what was read is stored first (_on_revoke)
            self._inserter.shutdown(wait=True)
            self._producer.flush(10)

    # -- two batches at a time: one read while the one before is inserted --------------

    def _hand_over(self) -> None:
        """Start inserting the batch just read (ClickHouse works without the GIL) and read
        the next one meanwhile; the batch before is finished first."""
        batch, self._batch = self._batch, Batch()
        self._finish()
        inserts = batch.sealed()
        stored: list[str] = []
        future = self._inserter.submit(self._insert_once, inserts, stored)
        self._storing = Storing(batch, inserts, future, stored)

    def _insert_once(self, inserts: list[Insert], stored: list[str]) -> None:
        for insert in inserts:
            self._store(insert)
            stored.append(insert.topic)

    def _store(self, insert: Insert) -> None:
        """One attempt at one INSERT."""
        table = self.table_of[insert.topic][1]
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": insert.token}
        if insert.lines:
            self.client().raw_insert(
                table.table,
                None,
                b"\n".join(insert.lines),
                settings={**settings, **SETTINGS},
                fmt="JSONEachRow",
            )
        else:
            self.client().insert(
                table.table, insert.rows, column_names=table.insert_columns(), settings=settings
            )

    def _finish(self) -> None:
        """Wait for the batch being inserted; whatever did not go in at the first attempt
        is inserted again with retries (the deduplication token drops a repeat); then its
        offsets are committed."""
        if self._storing is None:
            return
        batch, inserts, future, stored = self._storing
        self._storing = None
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - retried below, where each kind is handled
            log.debug("the background insert failed (%s); retrying in the loop", exc)
        for insert in inserts:
            if insert.topic in stored:
                table = self.table_of[insert.topic][1].table
                self.counters[f"rows.{table}"] += len(insert.sources)
            else:
                self._insert(insert)
        self._commit(batch)

    def _store_everything(self) -> None:
        self._finish()
        if self._batch.ranges:
            self._hand_over()
            self._finish()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Store and commit what was read before the partitions go: the next owner
        resumes after what ClickHouse holds, so nothing may still be on its way."""
        self._store_everything()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Repair the rollup where a previous run may have died mid-INSERT, then resume
        each partition after what ClickHouse already holds."""
        self._finish()
        usage = [tp for tp in partitions if tp.topic == self.usage_topic]
        if usage:
            committed = consumer.committed(usage, timeout=30)
            checked = self._with_retries(
                lambda: repair_rollup(
                    self.client(), {tp.partition: max(tp.offset, 0) for tp in committed}
                )
            )
            self.counters["rollup_minutes_checked"] += checked
        if not self._ranges:
            self._ranges = self._with_retries(
                lambda: int_ranges(
                    column_types(self.client(), self.table_of[self.usage_topic][1].table)
                )
            )
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            if tp.topic not in stored:
                topic = tp.topic

                def read(topic: str = topic) -> dict[int, int]:
                    return stored_offsets(self.client(), self.table_of[topic][1].table)

                stored[tp.topic] = self._with_retries(read)
            last = stored[tp.topic].get(tp.partition)
            if last is not None:
                tp.offset = last + 1
        consumer.assign(partitions)

    def _take(self, batch: Batch, m: Any) -> None:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        raw = m.value()
        source = (m.key(), raw)
        if topic == self.signals_topic and kind_of(raw) in SIGNAL_KINDS:
            batch.read(topic, partition, offset)  # retry-budget and breaker state: no rows
            self.counters["signals.call_control"] += 1
            return
        try:
            if topic != self.usage_topic:
                batch.add(topic, partition, offset, self._row(topic, raw).values(), source)
                return
            line = usage_line(raw, partition, offset, self._ranges)
            if line is None:
                row = self._row(topic, raw).model_dump()
                line = row_line(row, partition, offset, self._ranges)
            batch.add_line(topic, partition, offset, line, source)
        except ValidationError as exc:
            batch.read(topic, partition, offset)
            self._reject(
                topic, partition, offset, m.key(), raw, "invalid_fields", exc.errors()[0]["msg"]
            )
        except OutOfRangeError as exc:
            batch.read(topic, partition, offset)
            self._reject(topic, partition, offset, m.key(), raw, "rejected_by_storage", str(exc))

    def _row(self, topic: str, raw: bytes | None) -> Row:
        model, row_type = self.table_of[topic]
        return row_type.from_message(model.model_validate_json(raw or b""))  # type: ignore[attr-defined]

    def _commit(self, batch: Batch) -> None:
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in batch.ranges.items()]
        if self._kafka_retries(self._flush_dlq, "delivering DLQ records") and self._kafka_retries(
            lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "committing offsets"
        ):
            self.counters["batches"] += 1

    def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` with consumption paused, serving the group meanwhile; a message
        fetched before the pause is put back (seek) so the next batch reads it: nothing is
        skipped."""
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self._consumer.poll(0) if self._consumer is not None else None
            if m is not None and m.error() is None:
                self._consumer.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
            time.sleep(0.05)

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
        delay = 0.5
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
                    log.warning("%s failed (%s); retrying in %.1fs", what, error.str(), delay)
                    if not paused:  # nothing new is read while this batch is unfinished
                        paused = self._consumer.assignment()
                        self._consumer.pause(paused)
                    self._idle(delay)
                    delay = min(delay * 2, 2.0)  # the broker answers again at once when back
        finally:
            if paused:
                self._consumer.resume(paused)

    def _insert(self, insert: Insert) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        table = self.table_of[insert.topic][1].table
        try:
            self._with_retries(lambda: self._store(insert))
        except (DatabaseError, *ROW_ERRORS) as exc:
            if isinstance(exc, OperationalError):
                raise
            self._insert_one_by_one(insert, table, str(exc))
            return
        self.counters[f"rows.{table}"] += len(insert.sources)

    def _insert_one_by_one(self, insert: Insert, table: str, why: str) -> None:
        """ClickHouse refused the batch: store what it accepts, dead-letter the rest."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        log.warning("%s refused a batch (%s); inserting row by row", table, why[:200])
        for one in insert.alone():
            (key, raw), (partition, offset) = one.sources[0], one.offsets[0]
            try:
                self._with_retries(lambda one=one: self._store(one))  # type: ignore[misc]
                self.counters[f"rows.{table}"] += 1
            except (DatabaseError, *ROW_ERRORS) as exc:
                self._reject(
                    insert.topic,
                    partition,
                    offset,
                    key,
                    raw,
                    "rejected_by_storage",
                    str(exc).strip().splitlines()[0][:500],
                )

    def _with_retries(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; while ClickHouse is unreachable, pause and back off (bounded per
        wait, unbounded in count: losing nothing beats giving up)."""
        from clickhouse_connect.driver.exceptions import OperationalError

        delay = 0.5
        paused = False
        while True:
            try:
                result = action()
            except (OperationalError, ServiceUnavailableError) as exc:
                self.counters["clickhouse_retries"] += 1
                self._client = None  # reconnect on the next attempt
                if not paused and self._consumer is not None:
                    self._consumer.pause(self._consumer.assignment())
                    paused = True
                log.warning(
                    "ClickHouse unavailable (%s); retrying in %.1fs",
                    str(exc).splitlines()[0][:200],
                    delay,
                )
                self._idle(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if paused:
                self._consumer.resume(self._consumer.assignment())
            return result

    def _reject(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        raw: bytes | None,
        reason: str,
        detail: str,
    ) -> None:
        self.counters[f"dlq.{reason}"] += 1
        if topic == self.dlq_topic:
            log.error(
                "a DLQ record at %s[%d]@%d cannot be stored: %s", topic, partition, offset, detail
            )
            return  # never dead-letter the dead letters: counted and logged instead
        record = dlq_record(
            Rejection(reason, detail),  # type: ignore[arg-type]
            raw=raw,
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
            component=COMPONENT,
            now=datetime.now(UTC),
        )
        self._producer.produce(self.dlq_topic, record.model_dump_json().encode(), key)
