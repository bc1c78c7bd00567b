"""`tokenledger notify`: deliver alerts from the alerts topic to the configured receivers.

At least once: an alert's offset is committed only after every receiver took it or, after
its retries, the failure went to the DLQ (reason ``delivery_failed``, the receiver's error,
the alert's bytes) and the broker acknowledged that record; while it does not, the record
is sent again and nothing is committed. PagerDuty and Alertmanager deduplicate by fingerprint, so a redelivery
after a crash does not page twice. Unreadable alerts go to the DLQ with their reason.

Alertmanager forgets an alert that is not re-sent (at its ``endsAt``, or ``resolve_timeout``
without one). As Prometheus does, the notifier re-sends every firing alert to Alertmanager
receivers every ``resend_s`` (60 s) with ``endsAt`` ``HOLD`` intervals ahead, until the
alert resolves; the resolve carries the resolve time. Which alerts are firing is rebuilt
from the alerts topic when the notifier starts, so a restart keeps them up.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tokenledger.backoff import delays
from tokenledger.contract import topics
from tokenledger.contract.messages import Alert
from tokenledger.kafka_config import (
    assign_from_start,
    client_config,
    committed_reader,
    read_to_end,
)
from tokenledger.streams.alerts.receivers import Delivery, Receiver, Send, deliver, http_send
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError, UserError
from tokenledger.streams.records import Rejection, dlq_record, parse_message

log = logging.getLogger(__name__)
GROUP = "tokenledger-notifier"
COMPONENT = "notifier"
HOLD = 4
"""A firing alert's endsAt is this many re-send intervals ahead (Prometheus uses 4)."""


class Notifier:
    def __init__(
        self,
        settings: Settings,
        receivers: list[Receiver],
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
        send: Send = http_send,
        sleep: Callable[[float], None] | None = None,
        resend_s: float = 60.0,
    ) -> None:
        if not receivers:
            raise UserError(
                "no alert receiver is configured; set TOKENLEDGER_NOTIFY_WEBHOOK_URL, "
                "_SLACK_URL, _PAGERDUTY_KEY, _ALERTMANAGER_URL or _FILE (see docs/alerts.md)"
            )
        if retries < 1:
            raise UserError("--retries must be at least 1")
        if not 0.1 <= resend_s <= 3600:
            raise UserError("--resend-interval must be 0.1 to 3600 seconds")
        self.settings = settings
        self.receivers = receivers
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.send = send
        self._stop = threading.Event()
        self.sleep = sleep or self._interruptible_sleep
        self.topic = settings.topic(topics.ALERTS)
        self.dlq_topic = settings.topic(topics.DLQ)
        self.counters: Counter[str] = Counter()
        self.resend_s = resend_s
        self.firing: dict[str, Alert] = {}
        """Firing alerts by fingerprint: what Alertmanager receivers get again and again."""
        self._refused: list[tuple[bytes, bytes | None, str]] = []
        """DLQ records the broker refused since the last check: value, key, its error."""

    def stop(self) -> None:
        self._stop.set()

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def run(self, *, idle_stop_s: float | None = None) -> None:
        """Consume until ``stop()`` (or, when given, ``idle_stop_s`` without a message once
        partitions are assigned)."""
        import time

        from confluent_kafka import Consumer, Producer

        producer = Producer(client_config(self.settings.kafka, {"enable.idempotence": True}))
        consumer = Consumer(
            client_config(self.settings.kafka, committed_reader(self.settings.topic(GROUP)))
        )
        last_message = float("inf")

        def on_assign(_: Any, partitions: list[Any]) -> None:
            nonlocal last_message
            last_message = time.monotonic()

        self.restore()
        next_resend = time.monotonic()  # at once: a restart must not let them lapse
        consumer.subscribe([self.topic], on_assign=on_assign)
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_resend:
                    self.resend(datetime.now(UTC))
                    next_resend = time.monotonic() + self.resend_s
                m = consumer.poll(min(0.2, self.resend_s))
                if m is None:
                    if idle_stop_s is not None and time.monotonic() - last_message > idle_stop_s:
                        break
                    continue
                if m.error() is not None:
                    log.warning("alerts topic: %s", m.error())
                    continue
                last_message = time.monotonic()
                self.handle(
                    producer,
                    m.topic() or self.topic,
                    m.partition() or 0,
                    m.offset() or 0,
                    m.key(),
                    m.value(),
                )
                if not self._dlq_stored(producer):
                    break  # stopping first: not committed, so the alert is read again
                consumer.commit(message=m, asynchronous=False)
        finally:
            consumer.close()
            producer.flush(30)

    def handle(
        self,
        producer: Any,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> list[Delivery]:
        now = datetime.now(UTC)
        alert = parse_message(value, Alert)
        if isinstance(alert, Rejection):
            self.counters[f"dlq.{alert.reason}"] += 1
            self._dead_letter(producer, alert, topic, partition, offset, key, value, now)
            return []
        self._track(alert)
        results = []
        for receiver in self.receivers:
            result = deliver(
                receiver,
                alert,
                retries=self.retries,
                backoff_s=self.backoff_s,
                timeout_s=self.timeout_s,
                send=self.send,
                sleep=self.sleep,
                valid_until=self._valid_until(now),
            )
            results.append(result)
            if result.ok:
                self.counters[f"delivered.{receiver.name}"] += 1
                log.info(
                    "alert %s (%s, %s) delivered to %s",
                    alert.fingerprint,
                    alert.detector,
                    alert.status,
                    receiver.name,
                )
                continue
            self.counters[f"failed.{receiver.name}"] += 1
            log.error(
                "alert %s not delivered to %s: %s", alert.fingerprint, receiver.name, result.error
            )
            rejection = Rejection("delivery_failed", f"receiver {receiver.name}: {result.error}")
            self._dead_letter(producer, rejection, topic, partition, offset, key, value, now)
        return results

    # -- keeping firing alerts up ----------------------------------------------------------

    def _track(self, alert: Alert) -> None:
        if alert.status == "firing":
            self.firing[alert.fingerprint] = alert
        else:
            self.firing.pop(alert.fingerprint, None)

    def _valid_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=HOLD * self.resend_s)

    def restore(self) -> int:
        """Rebuild which alerts are firing from the alerts topic (its start to its end now);
        the number firing."""
        from confluent_kafka import Consumer

        def apply(m: Any) -> None:
            alert = parse_message(m.value(), Alert)
            if not isinstance(alert, Rejection):
                self._track(alert)

        reader = Consumer(
            client_config(
                self.settings.kafka,
                {
                    "group.id": f"{self.settings.topic(GROUP)}-restore",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                },
            )
        )
        try:
            partitions = assign_from_start(reader, self.topic)
            if not read_to_end(reader, partitions, apply, timeout=60):
                raise ServiceUnavailableError(f"could not read {self.topic} to its end")
        finally:
            reader.close()
        if self.firing:
            log.info("%d alert(s) firing, kept up at Alertmanager", len(self.firing))
        return len(self.firing)

    def resend(self, now: datetime) -> None:
        """Every firing alert, again, to each Alertmanager receiver (one attempt each: the
        next round is the retry)."""
        for receiver in self.receivers:
            if receiver.kind != "alertmanager":
                continue
            for alert in list(self.firing.values()):
                result = deliver(
                    receiver,
                    alert,
                    retries=1,
                    timeout_s=self.timeout_s,
                    send=self.send,
                    valid_until=self._valid_until(now),
                )
                self.counters[
                    f"resent.{receiver.name}" if result.ok else f"resend_failed.{receiver.name}"
                ] += 1

    def _dead_letter(
        self,
        producer: Any,
        rejection: Rejection,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> None:
        record = dlq_record(
            rejection,
            raw=value,
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
            component=COMPONENT,
            now=now,
        )
        producer.produce(
            self.dlq_topic, record.model_dump_json().encode(), key, on_delivery=self._on_dlq
        )

    def _on_dlq(self, error: Any, message: Any) -> None:
        if error is not None:
            self._refused.append((message.value(), message.key(), error.str()))

    def _dlq_stored(self, producer: Any, flush_s: float = 10.0) -> bool:
        """Whether every DLQ record so far is acknowledged (as the sink checks before it
        commits): records the broker refused are sent again, with waits doubling to 30 s,
        until it takes them or the notifier stops (False)."""
        waits = delays(0.5, cap=30.0)
        while True:
            left = producer.flush(flush_s)
            refused, self._refused = self._refused, []
            if not left and not refused:
                return True
            self.counters["dlq_retries"] += 1
            delay = next(waits)
            why = refused[0][2] if refused else f"not acknowledged within {flush_s:g}s"
            log.warning(
                "%d DLQ record(s) not stored (%s); the alert stays uncommitted, retrying in %.1fs",
                left + len(refused),
                why,
                delay,
            )
            if self._stop.is_set():
                return False
            for value, key, _ in refused:
                producer.produce(self.dlq_topic, value, key, on_delivery=self._on_dlq)
            self.sleep(delay)
