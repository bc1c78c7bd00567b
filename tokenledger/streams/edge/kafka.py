"""Faust's aiokafka transport, set for the edge: committed reads, idempotent acks=all writes.

Faust reads ``read_uncommitted`` unless its ``exactly_once`` guarantee is on, and that
guarantee would also make every produce transactional. The signals topic is written in the
workers' transactions, so the edge must not see an aborted signal: its consumer reads
``read_committed`` (aiokafka's own setting, applied before the consumer starts). Its producer
is idempotent with ``acks=all``: an event is accepted only once every in-sync replica has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TransportT


class _CommittedReads(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by its fetcher at start()
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _CommittedReads(self, loop=self.loop, beacon=self.beacon)


class _Producer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class Transport(driver.Transport):
    Consumer = _Consumer
    Producer = _Producer


class EdgeApp(faust.App):
    """A Faust app on the edge's transport."""

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        return Transport(self.conf.broker_producer, self)


def broker_url(bootstrap: str) -> str:
    """Faust's broker URL for a Kafka bootstrap list (``h1:9092,h2:9092``)."""
    return "kafka://" + ";".join(h.strip() for h in bootstrap.split(",") if h.strip())
