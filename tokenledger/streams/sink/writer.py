"""The sink's ClickHouse writer: Kafka messages into rows, a batch into one INSERT per table,
rejections into the DLQ.

A batch is inserted table by table with a deterministic deduplication token (topic,
partition and offset range), so a retried INSERT whose answer was lost is dropped by
ClickHouse, in the raw table and in the rollups fed by materialized views. The first
attempt runs in a thread (the engine works without the GIL) while the driver reads the
next batch. A table that refuses a batch gets its rows one by one: what it accepts is
stored, the rest goes to the DLQ with the reason, as do messages that do not parse.

The writer never waits. When ClickHouse is unavailable it raises ``Backpressure`` with how
long to wait (bounded exponential backoff, reset by a success); the driver (service.py)
pauses consumption and calls again. A ``Job`` keeps how far it got, so the call after a
``Backpressure`` goes on where the last one stopped: no row is counted or dead-lettered
twice.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tokenledger.backoff import delays
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
FIRST_RETRY_S = 0.5

T = TypeVar("T")


class Backpressure(Exception):  # noqa: N818 - a signal to the driver, not a failure
    """ClickHouse cannot take rows now: pause consumption and call again after
    ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"ClickHouse unavailable ({reason}); retry after {retry_after:.1f}s")
        self.retry_after = retry_after
        self.reason = reason


@dataclass
class Job:
    """A batch being stored, and how far it got."""

    batch: Batch
    inserts: list[Insert]
    future: Future[None] | None
    """The first attempt in the insert thread; None once its outcome is counted."""
    stored: list[str] = field(default_factory=list)
    """Topics whose INSERT went in."""
    one_by_one: dict[str, int] = field(default_factory=dict)
    """Topics whose table refused the batch -> how many of its rows are done."""

    def ready(self) -> bool:
        """Whether finishing it would not wait for the insert thread."""
        return self.future is None or self.future.done()


class ClickHouseWriter:
    def __init__(
        self,
        settings: Settings,
        client_factory: Callable[[], Any],
        counters: Counter[str],
        dead_letter: Callable[[bytes, bytes | None], None],
        *,
        retry_max_s: float = 30.0,
    ) -> None:
        """``dead_letter(value, key)`` sends one DLQ record; ``counters`` is shared with
        the driver."""
        self.client_factory = client_factory
        self.counters = counters
        self.dead_letter = dead_letter
        self.retry_max_s = retry_max_s
        self.table_of = {settings.topic(t): (model, row) for t, (model, row) in ROUTES.items()}
        self.dlq_topic = settings.topic(topics.DLQ)
        self.usage_topic = settings.topic(topics.USAGE_ENRICHED)
        self.signals_topic = settings.topic(topics.SIGNALS)
        self._client: Any = None
        self._ranges: Ranges = {}  # usage_events' integer columns, read when assigned
        self._waits = delays(FIRST_RETRY_S, cap=retry_max_s)  # the Backpressures' retry_after
        self._inserter = ThreadPoolExecutor(1, thread_name_prefix="sink-insert")

    @property
    def topics(self) -> list[str]:
        return list(self.table_of)

    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def close(self) -> None:
        self._inserter.shutdown(wait=True)

    # -- messages into rows --------------------------------------------------------------

    def add(self, batch: Batch, m: Any) -> None:
        """One Kafka message into ``batch``: a row, a usage line, or only its offset (call
        control state, which has no rows; a rejection, sent to the DLQ)."""
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

    # -- a batch into ClickHouse ---------------------------------------------------------

    def start(self, batch: Batch) -> Job:
        """Seal ``batch`` and make the first attempt at its inserts in the insert thread."""
        inserts = batch.sealed()
        job = Job(batch, inserts, None)
        job.future = self._inserter.submit(self._insert_once, inserts, job.stored)
        return job

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

    def finish(self, job: Job) -> None:
        """Wait for the first attempt; insert again whatever it did not store (the
        deduplication token drops a repeat). Returns once every row of the job is stored or
        dead-lettered; raises Backpressure while ClickHouse is unavailable."""
        if job.future is not None:
            try:
                job.future.result()
            except Exception as exc:  # noqa: BLE001 - retried below, where each kind is handled
                log.debug("the background insert failed (%s); retrying in the loop", exc)
            job.future = None
            for insert in job.inserts:
                if insert.topic in job.stored:
                    table = self.table_of[insert.topic][1].table
                    self.counters[f"rows.{table}"] += len(insert.sources)
        for insert in job.inserts:
            if insert.topic not in job.stored:
                self._insert(insert, job)
                job.stored.append(insert.topic)

    def _insert(self, insert: Insert, job: Job) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        table = self.table_of[insert.topic][1].table
        if insert.topic not in job.one_by_one:
            try:
                self._attempt(lambda: self._store(insert))
            except (DatabaseError, *ROW_ERRORS) as exc:
                if isinstance(exc, OperationalError):
                    raise
                log.warning("%s refused a batch (%s); inserting row by row", table, str(exc)[:200])
                job.one_by_one[insert.topic] = 0
            else:
                self.counters[f"rows.{table}"] += len(insert.sources)
                return
        self._insert_one_by_one(insert, table, job)

    def _insert_one_by_one(self, insert: Insert, table: str, job: Job) -> None:
        """ClickHouse refused the batch: store what it accepts, dead-letter the rest."""
        from clickhouse_connect.driver.exceptions import DatabaseError

        rows = list(insert.alone())
        for i in range(job.one_by_one[insert.topic], len(rows)):
            one = rows[i]
            (key, raw), (partition, offset) = one.sources[0], one.offsets[0]
            try:
                self._attempt(lambda one=one: self._store(one))  # type: ignore[misc]
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
            job.one_by_one[insert.topic] = i + 1

    def _attempt(self, action: Callable[[], T]) -> T:
        """Run ``action`` once; while ClickHouse is unreachable, Backpressure with the next
        wait (doubling up to retry_max_s, unbounded in count: losing nothing beats giving
        up) and a new client on the next attempt."""
        from clickhouse_connect.driver.exceptions import OperationalError

        try:
            result = action()
        except (OperationalError, ServiceUnavailableError) as exc:
            self.counters["clickhouse_retries"] += 1
            self._client = None
            raise Backpressure(next(self._waits), str(exc).splitlines()[0][:200]) from exc
        self._waits = delays(FIRST_RETRY_S, cap=self.retry_max_s)
        return result

    # -- where to resume, when partitions are assigned ---------------------------------

    def repair(self, committed: dict[int, int]) -> None:
        """Correct the rollup where a previous run may have died mid-INSERT (usage
        partition -> its committed offset)."""
        checked = self._attempt(lambda: repair_rollup(self.client(), committed))
        self.counters["rollup_minutes_checked"] += checked

    def learn_ranges(self) -> None:
        """Read the integer ranges of usage_events' columns, once."""
        if not self._ranges:
            table = self.table_of[self.usage_topic][1].table
            self._ranges = self._attempt(lambda: int_ranges(column_types(self.client(), table)))

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """partition -> the largest offset of ``topic`` its table holds."""
        table = self.table_of[topic][1].table
        return self._attempt(lambda: stored_offsets(self.client(), table))

    # -- the DLQ -------------------------------------------------------------------------

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
        self.dead_letter(record.model_dump_json().encode(), key)
