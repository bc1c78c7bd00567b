"""The ClickHouse sink: every tokenledger topic into its raw table, exactly once.

Batches are bounded by rows and by time. A batch is inserted table by table with a
deterministic deduplication token (topic, partition and offset range), so a retried INSERT
whose answer was lost is dropped by ClickHouse, in the raw table and in the rollups fed by
materialized views. Kafka offsets are committed only after ClickHouse has the rows. Every
row also carries its Kafka partition and offset: when a partition is assigned, the sink
resumes after the largest offset its table holds, so a crash between an INSERT and the
offset commit stores nothing twice. ReplacingMergeTree (event_id in the key) is the
backstop.

When ClickHouse is unavailable the sink pauses consumption and retries the same batch with
bounded exponential backoff; it never buffers more than one batch. Rows ClickHouse rejects,
and messages that do not parse, go to the DLQ with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas import topics
from schemas.messages import (
    Alert,
    DlqRecord,
    EnrichedUsage,
    OutcomeEvent,
    RequestEvent,
    Signal,
)
from schemas.rows import AlertRow, DlqRow, OutcomeRow, RequestRow, Row, SignalRow, UsageRow
from streams.config import Settings, sql_root
from streams.errors import ServiceUnavailableError
from streams.records import Rejection, dlq_record
from streams.sink.columns import usage_values
from tokenledger.kafka_config import client_config, committed_reader

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
REPAIR_SQL = sql_root() / "repair" / "spend_by_minute.sql"
ROW_ERRORS = (ValueError, OverflowError, TypeError, struct.error)
"""A value the client cannot encode for its column (e.g. an integer beyond Int64)."""


@dataclass
class Batch:
    rows: dict[str, list[list[Any]]] = field(default_factory=dict)  # topic -> row values
    sources: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=dict)
    """topic -> (key, message bytes) of each row: a row ClickHouse refuses goes to the DLQ
    with the bytes it came from."""
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    started: float = 0.0
    count: int = 0

    def add(self, topic: str, partition: int, offset: int, values: list[Any] | None,
            source: tuple[bytes | None, bytes] = (None, b"")) -> None:  # fmt: skip
        if not self.count and not self.ranges:
            self.started = time.monotonic()
        first, _ = self.ranges.get((topic, partition), (offset, offset))
        self.ranges[(topic, partition)] = (first, offset)
        if values is not None:
            self.rows.setdefault(topic, []).append(values)
            self.sources.setdefault(topic, []).append(source)
            self.count += 1

    def token(self, topic: str) -> str:
        spans = sorted((p, a, b) for (t, p), (a, b) in self.ranges.items() if t == topic)
        return hashlib.sha256(f"{topic}|{spans}".encode()).hexdigest()


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
        self.counters: Counter[str] = Counter()
        self._client: Any = None
        self._consumer: Any = None  # set by run()
        self._producer: Any = None
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    # -- ClickHouse ----------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def repair_rollup(self, committed: dict[int, int]) -> int:
        """Rows stored at or after the committed offset may have lost their rollup part (an
        embedded engine killed between the raw and the materialized view write): correct
        spend_by_minute for their minutes. Returns how many minutes were checked."""
        client = self.client()
        minutes: set[Any] = set()
        for partition, offset in committed.items():
            rows = client.query(
                "SELECT DISTINCT toStartOfMinute(ts) FROM usage_events "
                "WHERE kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64}",
                parameters={"p": partition, "o": offset},
            ).result_rows  # fmt: skip
            minutes.update(r[0] for r in rows)
        if minutes:
            client.command(REPAIR_SQL.read_text(), parameters={"minutes": sorted(minutes)})
            self.counters["rollup_minutes_checked"] += len(minutes)
            log.info("checked the rollup of %d minute(s) after an unclean stop", len(minutes))
        return len(minutes)

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """partition -> largest Kafka offset already stored for ``topic``."""
        table = self.table_of[topic][1].table
        rows = self.client().query(
            "SELECT kafka_partition, max(kafka_offset), count() FROM {t:Identifier} "
            "GROUP BY kafka_partition", parameters={"t": table},
        ).result_rows  # fmt: skip
        return {int(p): int(o) for p, o, n in rows if n}

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        self._producer = Producer(client_config(self.settings.kafka, {
            "enable.idempotence": True, **self.kafka_config}))  # fmt: skip
        consumer = Consumer(client_config(self.settings.kafka, committed_reader(
            self.settings.topic(GROUP), self.kafka_config)))  # fmt: skip
        self._consumer = consumer
        consumer.subscribe(list(self.table_of), on_assign=self._on_assign)
        batch = Batch()
        try:
            while not self._stop.is_set():
                wait = self.max_wait_s
                if batch.ranges:
                    wait = max(0.0, self.max_wait_s - (time.monotonic() - batch.started))
                for m in consumer.consume(min(1000, self.max_rows), min(wait, 0.2)):
                    if m.error() is None:
                        self._take(batch, m)
                full = batch.count >= self.max_rows
                due = batch.ranges and time.monotonic() - batch.started >= self.max_wait_s
                if full or due:
                    self._flush(batch)
                    batch = Batch()
            if batch.ranges:
                self._flush(batch)
        finally:
            consumer.close()
            self._producer.flush(10)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Repair the rollup where a previous run may have died mid-INSERT, then resume
        each partition after what ClickHouse already holds."""
        usage = [tp for tp in partitions if tp.topic == self.usage_topic]
        if usage:
            committed = consumer.committed(usage, timeout=30)
            self._with_retries(lambda: self.repair_rollup(
                {tp.partition: max(tp.offset, 0) for tp in committed}))  # fmt: skip
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            if tp.topic not in stored:
                topic = tp.topic

                def read(topic: str = topic) -> dict[int, int]:
                    return self.stored_offsets(topic)

                stored[tp.topic] = self._with_retries(read)
            last = stored[tp.topic].get(tp.partition)
            if last is not None:
                tp.offset = last + 1
        consumer.assign(partitions)

    def _take(self, batch: Batch, m: Any) -> None:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        model, row_type = self.table_of[topic]
        raw = m.value()
        if topic == self.usage_topic and (values := usage_values(raw)) is not None:
            batch.add(topic, partition, offset, [*values, partition, offset], (m.key(), raw))
            return
        try:
            message = model.model_validate_json(raw or b"")
            row = row_type.from_message(message)  # type: ignore[attr-defined]
        except ValidationError as exc:
            batch.add(topic, partition, offset, None)
            self._reject(topic, partition, offset, m.key(), raw, "invalid_fields",
                         exc.errors()[0]["msg"])  # fmt: skip
            return
        batch.add(topic, partition, offset, [*row.values(), partition, offset], (m.key(), raw))

    def _flush(self, batch: Batch) -> None:
        for topic, rows in batch.rows.items():
            row_type = self.table_of[topic][1]
            self._insert(topic, row_type, rows, batch.token(topic), batch.sources[topic])
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
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            f"{left} DLQ records not yet delivered"))  # fmt: skip

    def _kafka_retries(self, action: Callable[[], Any], what: str) -> bool:
        """Run ``action`` until it succeeds while Kafka is away (bounded waits); False when
        the sink is stopping or its partitions moved meanwhile. Either way the rows are
        stored: whoever consumes next resumes after the largest stored offset."""
        from confluent_kafka import KafkaError, KafkaException

        moved = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                 KafkaError.REBALANCE_IN_PROGRESS, KafkaError.FENCED_INSTANCE_ID}  # fmt: skip
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
                        log.warning("%s failed (%s); the next owner resumes after the stored "
                                    "rows", what, error.str())  # fmt: skip
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

    def _insert(self, topic: str, row_type: type[Row], rows: list[list[Any]], token: str,
                sources: list[tuple[bytes | None, bytes]]) -> None:  # fmt: skip
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        columns = row_type.insert_columns()
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}

        def insert() -> None:
            self.client().insert(row_type.table, rows, column_names=columns, settings=settings)

        try:
            self._with_retries(insert)
        except (DatabaseError, *ROW_ERRORS) as exc:
            if isinstance(exc, OperationalError):
                raise
            self._insert_one_by_one(topic, row_type, rows, sources, token, str(exc))
            return
        self.counters[f"rows.{row_type.table}"] += len(rows)

    def _insert_one_by_one(self, topic: str, row_type: type[Row], rows: list[list[Any]],
                           sources: list[tuple[bytes | None, bytes]], token: str,
                           why: str) -> None:  # fmt: skip
        """ClickHouse refused the batch: store what it accepts, dead-letter the rest."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        log.warning("%s refused a batch (%s); inserting row by row", row_type.table, why[:200])
        columns = row_type.insert_columns()
        for values, (key, raw) in zip(rows, sources, strict=True):
            partition, offset = values[-2], values[-1]
            one = {**INSERT_SETTINGS, "insert_deduplication_token": f"{token}:{offset}"}

            def insert(v: list[Any] = values, s: dict[str, Any] = one) -> None:
                self.client().insert(row_type.table, [v], column_names=columns, settings=s)

            try:
                self._with_retries(insert)
                self.counters[f"rows.{row_type.table}"] += 1
            except (DatabaseError, *ROW_ERRORS) as exc:
                self._reject(topic, partition, offset, key, raw, "rejected_by_storage",
                             str(exc).strip().splitlines()[0][:500])  # fmt: skip

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
                log.warning("ClickHouse unavailable (%s); retrying in %.1fs",
                            str(exc).splitlines()[0][:200], delay)  # fmt: skip
                self._idle(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if paused:
                self._consumer.resume(self._consumer.assignment())
            return result

    def _reject(self, topic: str, partition: int, offset: int, key: bytes | None,
                raw: bytes | None, reason: str, detail: str) -> None:  # fmt: skip
        self.counters[f"dlq.{reason}"] += 1
        if topic == self.dlq_topic:
            log.error("a DLQ record at %s[%d]@%d cannot be stored: %s", topic, partition,
                      offset, detail)  # fmt: skip
            return  # never dead-letter the dead letters: counted and logged instead
        record = dlq_record(Rejection(reason, detail), raw=raw, key=key, topic=topic,  # type: ignore[arg-type]
                            partition=partition, offset=offset, component=COMPONENT,
                            now=datetime.now(UTC))  # fmt: skip
        self._producer.produce(self.dlq_topic, record.model_dump_json().encode(), key)
