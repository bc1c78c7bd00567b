"""A Ledger's background thread: its queue to the confluent-kafka producer, and the spill.

The thread drains the Ledger's queue in batches, serializes each event and hands it to the
producer (idempotence on, acks=all, batched; tokenledger/kafka_config.py). Delivery reports
come back on this thread (``poll``/``flush``); a failed one, or a full producer queue, sends
events to the spill, and the spill is replayed segment by segment when the broker answers.
When to spill and when to replay is decided by a ``SpillReplay`` (tokenledger/spill_replay.py);
this module does the I/O.

A replay re-sends a whole spill segment when part of it failed, so an event may arrive
twice; both copies share an ``event_id`` and the pipeline counts it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenledger.bad_input import AsGiven
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.spill import Record, Spill
from tokenledger.spill_replay import SpillReplay

log = logging.getLogger(__name__)

Emittable = RequestEvent | UsageEvent | OutcomeEvent
STAT_NAMES = ("emitted", "produced", "delivered", "spilled", "replayed", "failed_replays")
_BATCH = 1000


def to_record(event: Emittable | AsGiven, topic_of: Mapping[type, str]) -> Record:
    """(topic, key, value) of an event: keyed by tenant, the value its JSON."""
    if isinstance(event, AsGiven):
        return event.record
    return (
        topic_of[type(event)],
        event.tenant_id.encode(),
        event.model_dump_json().encode(),
    )


class ProducerThread:
    """Moves events from ``pending`` to Kafka, or to ``spill`` as ``states`` decides."""

    def __init__(
        self,
        pending: deque[Emittable | AsGiven],
        producer: Any,
        spill: Spill,
        states: SpillReplay,
        topic_of: Mapping[type, str],
        delivery_timeout: float,
    ) -> None:
        self._pending = pending
        self._producer = producer
        self._spill = spill
        self._states = states
        self._topic_of = topic_of
        self._delivery_timeout = delivery_timeout
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        """Counters written by this thread only."""
        self._overflowed = 0  # spilled by callers when the queue is full (under _overflow_lock)
        self._overflow_lock = threading.Lock()
        self._stopping = False
        self._stop_timeout = 30.0
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenledger-ledger", daemon=True)

    # -- the Ledger's side (any thread) --------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def counts(self) -> dict[str, int]:
        """The counters, with what callers spilled themselves counted as emitted and spilled."""
        out = dict(self.stats)
        with self._overflow_lock:
            out["emitted"] += self._overflowed
            out["spilled"] += self._overflowed
        return out

    def spill_now(self, events: Sequence[Emittable | AsGiven]) -> None:
        """The caller's path when the queue is full (any thread): straight to the spill."""
        records = [to_record(e, self._topic_of) for e in events]
        if self._states.queue_full():
            log.warning("the ledger queue is full: spilling events to %s", self._spill.dir)
        written = self._spill.append(records)
        with self._overflow_lock:
            self._overflowed += written

    def flush(self, timeout: float) -> bool:
        """Wait until the queue, the spill and the producer are empty; False at ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if not self._pending and not self._states.spilling and len(self._producer) == 0:
                return True
            self._states.hurry()
            time.sleep(0.01)
        return False

    def stop(self, timeout: float) -> None:
        """Drain the queue, flush for up to ``timeout`` s, spill the rest, end the thread."""
        self._stopping = True
        self._stop_timeout = timeout
        self._wake.set()
        self._thread.join(timeout + 5)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._drain()
            self._producer.poll(0)
            if self._states.replay_due(time.monotonic()):
                self._replay()
            self._spill.maybe_sync()
            if self._stopping and not self._pending:
                break
            self._wake.wait(0.002)
            self._wake.clear()
        self._shutdown()

    def _drain(self) -> None:
        pending = self._pending
        producer = self._producer
        while pending:
            batch: list[Record] = []
            while pending and len(batch) < _BATCH:
                batch.append(to_record(pending.popleft(), self._topic_of))
            self.stats["emitted"] += len(batch)
            if self._states.spilling:
                self.stats["spilled"] += self._spill.append(batch)
                continue
            for i, (topic, key, value) in enumerate(batch):
                try:
                    producer.produce(topic, value, key, on_delivery=self._on_delivery)
                except BufferError:
                    self._kafka_failed("the producer queue is full")
                    self.stats["spilled"] += self._spill.append(batch[i:])
                    break
                self.stats["produced"] += 1

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats["delivered"] += 1
            return
        self._kafka_failed(str(err))
        self.stats["spilled"] += self._spill.append([(msg.topic(), msg.key() or b"", msg.value())])

    def _kafka_failed(self, why: str) -> None:
        if self._states.kafka_failed(time.monotonic()):
            log.warning("Kafka unavailable (%s): spilling events to %s", why, self._spill.dir)

    def _broker_answers(self) -> bool:
        from confluent_kafka import KafkaException

        try:
            self._producer.list_topics(timeout=0.5)
        except KafkaException:
            return False
        return True

    def _replay(self) -> None:
        """Re-send sealed spill segments in order; back to direct when all are sent."""
        self._producer.flush(self._delivery_timeout + 1)  # let in-flight deliveries settle
        if not self._broker_answers():
            self._states.replay_failed(time.monotonic())
            return
        for segment in self._spill.rotate():
            if not self._replay_segment(segment):
                self.stats["failed_replays"] += 1
                self._states.replay_failed(time.monotonic())
                return
            self._spill.remove(segment)
        empty = self._spill.current_empty() and not self._spill.sealed_or_current()
        if self._states.replayed(empty):
            log.info("Kafka is back: spilled events replayed")

    def _replay_segment(self, segment: Path) -> bool:
        failures = 0
        delivered = 0

        def on_delivery(err: Any, msg: Any) -> None:
            nonlocal failures, delivered
            if err is None:
                delivered += 1
            else:
                failures += 1

        sent = 0
        for topic, key, value in self._spill.read(segment):
            if not self._produce_replayed(topic, key, value, on_delivery):
                return False
            sent += 1
        left = self._producer.flush(self._delivery_timeout + 1)
        self.stats["delivered"] += delivered
        self.stats["replayed"] += delivered
        return failures == 0 and left == 0 and delivered == sent

    def _produce_replayed(
        self, topic: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> bool:
        for _ in range(100):
            try:
                self._producer.produce(topic, value, key or None, on_delivery=on_delivery)
                return True
            except BufferError:
                self._producer.poll(0.05)
        return False

    def _shutdown(self) -> None:
        """One last replay, a bounded flush; what Kafka did not take stays spilled."""
        deadline = time.monotonic() + self._stop_timeout
        if self._states.spilling:
            self._replay()
        left = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if left:
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.poll(0)  # purged messages come back as failed deliveries: spilled
        waiting = self._spill.count()
        if waiting:
            log.warning(
                "closing with %d event(s) in the spill %s; the next Ledger on this spill_dir "
                "replays them",
                waiting,
                self._spill.dir,
            )
