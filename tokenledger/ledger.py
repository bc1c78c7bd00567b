"""The Ledger: emits request, usage and outcome events to Kafka without ever blocking.

``emit()`` appends the event to an in-memory queue and returns (well under a microsecond).
A worker thread serializes events and hands them to a confluent-kafka producer
(idempotence on, acks=all, batched). When the broker is unreachable, a delivery fails
after ``delivery_timeout_ms`` or the queue is full, the event goes to the local spill (see
tokenledger/spill.py); while anything is spilled, new events are spilled too, so the
spill is replayed in order when the broker answers again. ``close()``, and interpreter
exit, flush what can be flushed and spill the rest for the next Ledger on the same
spill_dir.

What can be lost: only events still in memory when the process is killed (SIGKILL, OOM)
or the host crashes: the queue (bounded by ``queue_max``, normally milliseconds of
traffic) and, for host crashes, what the spill's fsync policy allows.

A replay re-sends a whole spill segment when part of it failed, so an event may arrive
twice; both copies share an ``event_id`` and the pipeline counts it once.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tokenledger import tokens
from tokenledger.bad_input import BAD_INPUT, AsGiven, BadInput, as_given, first_refusal
from tokenledger.contract.common import NAME_PATTERN
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.kafka_config import sdk_producer
from tokenledger.paths import home_dir
from tokenledger.spill import FsyncPolicy, Record, Spill
from tokenledger.topic_names import TopicNames

if TYPE_CHECKING:
    from tokenledger.track import Call

log = logging.getLogger(__name__)

Emittable = RequestEvent | UsageEvent | OutcomeEvent
__all__ = ["Ledger", "LedgerClosedError", "TopicNames"]


class LedgerClosedError(RuntimeError):
    """emit() after close(): a programming error, not a broker outage."""


def new_id() -> str:
    return os.urandom(16).hex()


def default_spill_dir() -> Path:
    return home_dir() / "spill"


class Ledger:
    def __init__(
        self,
        service: str,
        *,
        environment: str = "prod",
        bootstrap: str | None = None,
        kafka_config: Mapping[str, Any] | None = None,
        topics: TopicNames | None = None,
        spill_dir: str | Path | None = None,
        fsync: FsyncPolicy = "interval",
        queue_max: int = 100_000,
        delivery_timeout_ms: int = 10_000,
        retry_interval_s: float = 1.0,
        prices: PriceBook | None = None,
        include_prompts: bool = False,
    ) -> None:
        for name, value in (("service", service), ("environment", environment)):
            if not re.match(NAME_PATTERN, value):
                raise ValueError(f"{name} {value!r} is not a valid name ({NAME_PATTERN})")
        self.service = service
        self.environment = environment
        self.include_prompts = include_prompts
        self.topics = topics or TopicNames.in_namespace()  # TOKENLEDGER_TOPIC_NAMESPACE
        self._topic_of: dict[type, str] = {
            RequestEvent: self.topics.requests,
            UsageEvent: self.topics.usage,
            OutcomeEvent: self.topics.outcomes,
        }
        # loaded here, at service start, so no request waits for it (a bad price file is
        # reported now, not inside a metered call)
        self._prices = prices or load_price_book()
        self._queue_max = queue_max
        self._delivery_timeout = delivery_timeout_ms / 1000
        self._retry_interval = retry_interval_s
        self._producer = sdk_producer(bootstrap, delivery_timeout_ms, queue_max, kafka_config)
        self._spill = Spill(Path(spill_dir or default_spill_dir()), fsync=fsync)
        self._degraded = self._spill.sealed_or_current()
        self._pending: deque[Emittable | AsGiven] = deque()
        self._stats = dict.fromkeys(
            ("emitted", "produced", "delivered", "spilled", "replayed", "failed_replays"), 0
        )
        self._overflowed = 0  # spilled by callers when the queue is full (under _overflow_lock)
        self._bad_input = BadInput()
        self._overflow_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._close_timeout = 30.0
        self._wake = threading.Event()
        self._next_replay = 0.0
        self._backoff = retry_interval_s
        self._thread = threading.Thread(target=self._run, name="tokenledger-ledger", daemon=True)
        self._thread.start()
        tokens.warm_up()  # tiktoken's encodings load off the callers' path
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)

    # -- the caller's side ---------------------------------------------------------------

    def emit(self, event: Emittable | AsGiven) -> None:
        """Queue ``event`` for Kafka. Never blocks, never raises on a broker outage."""
        if self._closing:
            raise LedgerClosedError("emit() after close()")
        if len(self._pending) >= self._queue_max:
            self._spill_events([event])
            return
        self._pending.append(event)

    def track(self, **kwargs: Any) -> Call:
        """A context manager and decorator around one LLM call; see tokenledger.track."""
        from tokenledger.track import Call

        return Call(self, **kwargs)

    def outcome(
        self,
        task_id: str,
        success: bool,
        *,
        tenant_id: str,
        feature: str,
        request_id: str | None = None,
        route: str = "",
        user_scope: str = "",
        prompt_version: str = "",
        model: str = "none",
        provider: str = "none",
    ) -> None:
        """Report that a task (one or more calls) finished, for cost per successful task."""
        from datetime import UTC, datetime

        rid = request_id or new_id()
        fields: dict[str, Any] = dict(
            event_id=new_id(),
            request_id=rid,
            idempotency_key=rid,
            ts=datetime.now(UTC),
            tenant_id=tenant_id,
            user_scope=user_scope,
            service=self.service,
            feature=feature,
            route=route,
            prompt_version=prompt_version,
            model=model,
            provider=provider,
            environment=self.environment,
            task_id=task_id,
            success=success,
        )
        try:
            event = OutcomeEvent(**fields)
        except BAD_INPUT as exc:  # never raised into the caller: sent as given
            self.emit_as_given(OutcomeEvent, fields, exc)
        else:
            self.emit(event)

    def emit_as_given(self, model: type[Emittable], fields: dict[str, Any], exc: Exception) -> None:
        """An event ``exc`` kept from being built: counted, its cause logged once, and sent
        as given, for the worker to dead-letter with its raw bytes and reason."""
        if not isinstance(exc, ValidationError):  # e.g. pricing max_output_tokens=None
            exc = first_refusal(model, fields) or exc  # name the field to fix
        self._bad_input.invalid(model.model_fields["kind"].default, exc)
        self.emit(as_given(model, self._topic_of[model], fields))

    @property
    def prices(self) -> PriceBook:
        return self._prices

    def stats(self) -> dict[str, int]:
        """Counters since start; ``queued`` counts events not yet handed to the producer."""
        out = dict(self._stats)  # written by the worker thread only
        with self._overflow_lock:
            out["emitted"] += self._overflowed
            out["spilled"] += self._overflowed
        out["queued"] = len(self._pending)
        out["unreadable_usage"] = self._bad_input.unreadable_usage
        out["invalid_events"] = self._bad_input.invalid_events  # sent as given, for the DLQ
        out["degraded"] = int(self._degraded)
        return out

    def unreadable_usage(self, response: object, error: Exception) -> None:
        """A tracked call's response had no usage this SDK can read: counted, and logged
        once per response type (its usage event goes out estimated)."""
        self._bad_input.unreadable(response, error)

    def spilled_waiting(self) -> int:
        return self._spill.count()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything emitted so far is delivered; False if some is still spilled
        or in flight when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if not self._pending and not self._degraded and len(self._producer) == 0:
                return True
            if self._degraded:
                self._next_replay = 0.0
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then spill whatever Kafka did not take, and stop the worker. Idempotent."""
        if self._closed:
            return
        self._closing = True
        self._close_timeout = timeout
        self._wake.set()
        self._thread.join(timeout + 5)
        self._spill.close()
        self._closed = True

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker's side ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._drain()
            self._producer.poll(0)
            if self._degraded and time.monotonic() >= self._next_replay:
                self._replay()
            self._spill.maybe_sync()
            if self._closing and not self._pending:
                break
            self._wake.wait(0.002)
            self._wake.clear()
        self._shutdown()

    def _drain(self) -> None:
        pending = self._pending
        producer = self._producer
        while pending:
            batch: list[Record] = []
            while pending and len(batch) < 1000:
                batch.append(self._record(pending.popleft()))
            self._stats["emitted"] += len(batch)
            if self._degraded:
                self._stats["spilled"] += self._spill.append(batch)
                continue
            for i, (topic, key, value) in enumerate(batch):
                try:
                    producer.produce(topic, value, key, on_delivery=self._on_delivery)
                except BufferError:
                    self._enter_degraded("the producer queue is full")
                    self._stats["spilled"] += self._spill.append(batch[i:])
                    break
                self._stats["produced"] += 1

    def _record(self, event: Emittable | AsGiven) -> Record:
        """(topic, key, value) of an event: keyed by tenant, the value its JSON."""
        if isinstance(event, AsGiven):
            return event.record
        return (
            self._topic_of[type(event)],
            event.tenant_id.encode(),
            event.model_dump_json().encode(),
        )

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self._stats["delivered"] += 1
            return
        self._enter_degraded(str(err))
        self._stats["spilled"] += self._spill.append([(msg.topic(), msg.key() or b"", msg.value())])

    def _enter_degraded(self, why: str) -> None:
        if not self._degraded:
            log.warning("Kafka unavailable (%s): spilling events to %s", why, self._spill.dir)
            self._degraded = True
            self._backoff = self._retry_interval
            self._next_replay = time.monotonic() + self._backoff

    def _spill_events(self, events: Sequence[Emittable | AsGiven]) -> None:
        """The caller's path when the queue is full (any thread): straight to the spill."""
        records = [self._record(e) for e in events]
        if not self._degraded:
            log.warning("the ledger queue is full: spilling events to %s", self._spill.dir)
            self._degraded = True
        written = self._spill.append(records)
        with self._overflow_lock:
            self._overflowed += written

    def _broker_answers(self) -> bool:
        from confluent_kafka import KafkaException

        try:
            self._producer.list_topics(timeout=0.5)
        except KafkaException:
            return False
        return True

    def _replay(self) -> None:
        """Re-send sealed spill segments in order; leave degraded mode when all are sent."""
        self._producer.flush(self._delivery_timeout + 1)  # let in-flight deliveries settle
        if not self._broker_answers():
            self._backoff = min(self._backoff * 2, 10.0)
            self._next_replay = time.monotonic() + self._backoff
            return
        for segment in self._spill.rotate():
            if not self._replay_segment(segment):
                self._stats["failed_replays"] += 1
                self._backoff = min(self._backoff * 2, 10.0)
                self._next_replay = time.monotonic() + self._backoff
                return
            self._spill.remove(segment)
        if self._spill.current_empty() and not self._spill.sealed_or_current():
            log.info("Kafka is back: spilled events replayed")
            self._degraded = False
            self._backoff = self._retry_interval
        else:
            self._next_replay = 0.0  # events spilled during the replay: go again

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
        self._stats["delivered"] += delivered
        self._stats["replayed"] += delivered
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
        deadline = time.monotonic() + self._close_timeout
        if self._degraded:
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


def _close_at_exit(ref: weakref.ReferenceType[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close(timeout=10)
