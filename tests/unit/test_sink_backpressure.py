"""The sink's backpressure contract: the writer never waits, it names the wait; the driver
pauses its partitions, serves the group, calls again after that wait and resumes once the
batch is stored. No broker and no ClickHouse: the consumer and the client are scripted."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from tests.helpers import factories
from tokenledger.contract import topics
from tokenledger.streams.config import Settings
from tokenledger.streams.sink.batch import Batch
from tokenledger.streams.sink.service import Sink
from tokenledger.streams.sink.writer import Backpressure, ClickHouseWriter

SETTINGS = Settings.from_env(
    {"TOKENLEDGER_KAFKA": "127.0.0.1:9", "TOKENLEDGER_TOPIC_NAMESPACE": "bp"}
)
OUTCOMES = SETTINGS.topic(topics.OUTCOMES)


class Message:
    def __init__(self, offset: int, partition: int = 0) -> None:
        self._offset, self._partition = offset, partition
        self._value = factories.outcome(task_id=f"task-{offset}").model_dump_json().encode()

    def topic(self) -> str:
        return OUTCOMES

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"tenant"

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None


class ClickHouse:
    """Inserts that fail as scripted: ``down`` more attempts raise OperationalError;
    ``refuse`` (a set of offsets) makes any insert holding one of them a DatabaseError."""

    def __init__(self, down: int = 0, refuse: frozenset[int] = frozenset()) -> None:
        self.down, self.refuse = down, refuse
        self.attempts = 0
        self.stored: list[list[int]] = []  # the Kafka offsets of each accepted insert
        self.connects = 0

    def connect(self) -> ClickHouse:
        self.connects += 1
        return self

    def insert(self, table: str, rows: list[list[Any]], **_: Any) -> None:
        assert table == "outcome_events"
        self.attempts += 1
        if self.down:
            self.down -= 1
            raise OperationalError("Connection refused")
        offsets = [row[-1] for row in rows]
        if self.refuse & set(offsets):
            raise DatabaseError("Code: 53. Type mismatch")
        self.stored.append(offsets)


class Consumer:
    """One partition holding offsets 0..3. Offsets 0..2 are readable at first; the first
    poll while paused hands out offset 3 (fetched before the pause), and from then on it is
    readable too. Every call is recorded with the time of the pause and of the resume."""

    def __init__(self, sink: Sink, commits: int) -> None:
        self.sink, self.commits_left = sink, commits
        self.messages = [Message(o) for o in range(4)]
        self.position, self.readable, self.paused = 0, 3, False
        self.events: list[tuple[Any, ...]] = []
        self.times: dict[str, float] = {}
        self.deadline = time.monotonic() + 5

    def _step(self, event: tuple[Any, ...]) -> None:
        if time.monotonic() > self.deadline:
            raise AssertionError(f"the sink never finished: {self.events}")
        if not self.events or self.events[-1] != event or event[0] == "commit":
            self.events.append(event)

    def subscribe(self, names: list[str], **_: Any) -> None:
        assert OUTCOMES in names

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(OUTCOMES, 0)]

    def consume(self, n: int, timeout: float) -> list[Message]:
        assert not self.paused, "consume() while paused"
        out = self.messages[self.position : min(self.position + n, self.readable)]
        self.position += len(out)
        self._step(("consume", len(out)))
        return out

    def poll(self, timeout: float) -> Message | None:
        out = None
        if self.paused and self.readable == 3:
            out, self.position, self.readable = self.messages[3], 4, 4
        self._step(("poll", None if out is None else out.offset()))
        return out

    def seek(self, tp: Any) -> None:
        self.position = tp.offset
        self._step(("seek", tp.partition, tp.offset))

    def pause(self, tps: list[Any]) -> None:
        self.paused = True
        self.times.setdefault("pause", time.monotonic())
        self._step(("pause", [(tp.topic, tp.partition) for tp in tps]))

    def resume(self, tps: list[Any]) -> None:
        self.paused = False
        self.times.setdefault("resume", time.monotonic())
        self._step(("resume", [(tp.topic, tp.partition) for tp in tps]))

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        self._step(("commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))
        self.commits_left -= 1
        if not self.commits_left:
            self.sink.stop()

    def close(self) -> None:
        self._step(("close",))


class Producer:
    def flush(self, timeout: float) -> int:
        return 0


def test_the_driver_pauses_while_the_writer_signals_and_resumes_after_the_batch_is_in() -> None:
    clickhouse = ClickHouse(down=3)  # the first attempt (in the thread) and two retries
    sink = Sink(SETTINGS, clickhouse.connect, max_rows=3, max_wait_s=0.05, retry_max_s=0.05)
    consumer = Consumer(sink, commits=2)
    sink.drive(consumer, Producer())

    assert consumer.events == [
        ("consume", 3),  # a full batch, handed to the writer
        ("consume", 0),
        ("pause", [(OUTCOMES, 0)]),  # its first attempt failed: backpressure
        ("poll", 3),  # the group is served meanwhile; what was fetched is put back
        ("seek", 0, 3),
        ("poll", None),
        ("commit", [(OUTCOMES, 0, 3)]),  # stored at the third attempt, then committed
        ("resume", [(OUTCOMES, 0)]),
        ("consume", 1),  # the message put back, read again
        ("consume", 0),
        ("commit", [(OUTCOMES, 0, 4)]),
        ("close",),
    ]
    # Two waits of retry_max_s each before the third attempt; every row stored once.
    assert consumer.times["resume"] - consumer.times["pause"] >= 0.1
    assert clickhouse.stored == [[0, 1, 2], [3]]
    assert clickhouse.connects == 3  # a new client after each failed retry
    assert sink.counters == Counter(
        {"clickhouse_retries": 2, "rows.outcome_events": 4, "batches": 2}
    )


def _batch(offsets: range) -> Batch:
    batch = Batch()
    writer = ClickHouseWriter(SETTINGS, lambda: None, Counter(), lambda v, k: None)
    for o in offsets:
        writer.add(batch, Message(o))
    return batch


def test_the_writer_names_a_doubling_wait_and_starts_over_after_a_success() -> None:
    clickhouse = ClickHouse(down=4)
    writer = ClickHouseWriter(
        SETTINGS, clickhouse.connect, Counter(), lambda v, k: None, retry_max_s=1.5
    )
    job = writer.start(_batch(range(2)))
    waits = []
    for _ in range(3):
        with pytest.raises(Backpressure) as signal:
            writer.finish(job)
        waits.append(signal.value.retry_after)
    writer.finish(job)
    assert waits == [0.5, 1.0, 1.5] and clickhouse.stored == [[0, 1]]
    clickhouse.down = 2
    again = writer.start(_batch(range(2, 3)))
    with pytest.raises(Backpressure) as signal:
        writer.finish(again)
    assert signal.value.retry_after == 0.5
    writer.finish(again)
    assert clickhouse.stored == [[0, 1], [2]]
    assert writer.counters == Counter({"clickhouse_retries": 4, "rows.outcome_events": 3})
    writer.close()


def test_a_refused_batch_goes_on_row_by_row_where_the_backpressure_left_it() -> None:
    """The table refuses the batch (offset 1 is bad); ClickHouse goes away after the first
    row went in alone. Calling again resumes at offset 1: nothing stored or dead-lettered
    twice."""
    clickhouse = ClickHouse(refuse=frozenset({1}))
    letters: list[bytes | None] = []
    writer = ClickHouseWriter(
        SETTINGS, clickhouse.connect, Counter(), lambda v, k: letters.append(k)
    )
    real_insert = clickhouse.insert

    def insert_then_go_away(table: str, rows: list[list[Any]], **kw: Any) -> None:
        real_insert(table, rows, **kw)
        if [row[-1] for row in rows] == [0]:
            clickhouse.down = 1

    clickhouse.insert = insert_then_go_away  # type: ignore[method-assign]
    job = writer.start(_batch(range(3)))  # its first attempt, the whole batch, is refused
    with pytest.raises(Backpressure):
        writer.finish(job)
    assert clickhouse.stored == [[0]] and letters == []
    writer.finish(job)
    assert clickhouse.stored == [[0], [2]]
    assert letters == [b"tenant"]  # offset 1, once
    assert writer.counters == Counter(
        {"rows.outcome_events": 2, "dlq.rejected_by_storage": 1, "clickhouse_retries": 1}
    )
    writer.close()
