"""`tokenledger notify`: deliver alerts from the alerts topic to the configured receivers.

At least once: an alert's offset is committed only after every receiver took it or, after
its retries, the failure went to the DLQ (reason ``delivery_failed``, the receiver's error,
the alert's bytes). PagerDuty and Alertmanager deduplicate by fingerprint, so a redelivery
after a crash does not page twice. Unreadable alerts go to the DLQ with their reason.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas import topics
from schemas.messages import Alert
from streams.alerts.receivers import Delivery, Receiver, Send, deliver, http_send
from streams.config import Settings
from streams.errors import UserError
from streams.records import Rejection, dlq_record, parse_message
from tokenledger.kafka_config import client_config, committed_reader

log = logging.getLogger(__name__)
GROUP = "tokenledger-notifier"
COMPONENT = "notifier"


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
    ) -> None:
        if not receivers:
            raise UserError(
                "no alert receiver is configured; set TOKENLEDGER_NOTIFY_WEBHOOK_URL, "
                "_SLACK_URL, _PAGERDUTY_KEY, _ALERTMANAGER_URL or _FILE (see README: Alerts)"
            )
        if retries < 1:
            raise UserError("--retries must be at least 1")
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
        consumer = Consumer(client_config(self.settings.kafka,
                                          committed_reader(self.settings.topic(GROUP))))  # fmt: skip
        last_message = float("inf")

        def on_assign(_: Any, partitions: list[Any]) -> None:
            nonlocal last_message
            last_message = time.monotonic()

        consumer.subscribe([self.topic], on_assign=on_assign)
        try:
            while not self._stop.is_set():
                m = consumer.poll(0.2)
                if m is None:
                    if idle_stop_s is not None and time.monotonic() - last_message > idle_stop_s:
                        break
                    continue
                if m.error() is not None:
                    log.warning("alerts topic: %s", m.error())
                    continue
                last_message = time.monotonic()
                self.handle(producer, m.topic() or self.topic, m.partition() or 0,
                            m.offset() or 0, m.key(), m.value())  # fmt: skip
                producer.flush(30)
                consumer.commit(message=m, asynchronous=False)
        finally:
            consumer.close()
            producer.flush(30)

    def handle(self, producer: Any, topic: str, partition: int, offset: int,
               key: bytes | None, value: bytes | None) -> list[Delivery]:  # fmt: skip
        now = datetime.now(UTC)
        alert = parse_message(value, Alert)
        if isinstance(alert, Rejection):
            self.counters[f"dlq.{alert.reason}"] += 1
            self._dead_letter(producer, alert, topic, partition, offset, key, value, now)
            return []
        results = []
        for receiver in self.receivers:
            result = deliver(receiver, alert, retries=self.retries, backoff_s=self.backoff_s,
                             timeout_s=self.timeout_s, send=self.send, sleep=self.sleep)  # fmt: skip
            results.append(result)
            if result.ok:
                self.counters[f"delivered.{receiver.name}"] += 1
                log.info("alert %s (%s, %s) delivered to %s", alert.fingerprint, alert.detector,
                         alert.status, receiver.name)  # fmt: skip
                continue
            self.counters[f"failed.{receiver.name}"] += 1
            log.error("alert %s not delivered to %s: %s", alert.fingerprint, receiver.name,
                      result.error)  # fmt: skip
            rejection = Rejection("delivery_failed", f"receiver {receiver.name}: {result.error}")
            self._dead_letter(producer, rejection, topic, partition, offset, key, value, now)
        return results

    def _dead_letter(self, producer: Any, rejection: Rejection, topic: str, partition: int,
                     offset: int, key: bytes | None, value: bytes | None,
                     now: datetime) -> None:  # fmt: skip
        record = dlq_record(rejection, raw=value, key=key, topic=topic, partition=partition,
                            offset=offset, component=COMPONENT, now=now)  # fmt: skip
        producer.produce(self.dlq_topic, record.model_dump_json().encode(), key)
