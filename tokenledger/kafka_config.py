"""librdkafka client settings shared by the SDK, the workers and the CLI.

Security settings pass through unchanged: every ``TOKENLEDGER_KAFKA_OPT_<NAME>`` variable
becomes the librdkafka property ``<name>`` lowercased with ``_`` read as ``.``, e.g.
``TOKENLEDGER_KAFKA_OPT_SECURITY_PROTOCOL=SASL_SSL``, ``..._SASL_MECHANISM=SCRAM-SHA-512``,
``..._SASL_USERNAME``, ``..._SASL_PASSWORD``, ``..._SSL_CA_LOCATION``. Explicit ``overrides``
win over the environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

OPT_PREFIX = "TOKENLEDGER_KAFKA_OPT_"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def bootstrap_servers(env: Mapping[str, str] | None = None) -> str:
    """``TOKENLEDGER_KAFKA``, else the local broker on ``TOKENLEDGER_KAFKA_PORT`` (9092)."""
    env = os.environ if env is None else env
    if env.get("TOKENLEDGER_KAFKA"):
        return env["TOKENLEDGER_KAFKA"]
    port = env.get("TOKENLEDGER_KAFKA_PORT")
    return f"127.0.0.1:{port}" if port else DEFAULT_BOOTSTRAP


def committed_reader(group: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Overrides for a consumer that reads only committed transactions from the earliest
    offset and commits by hand, after its work is done (the sink, the notifier). A 10 s
    session (librdkafka's default is 45 s): partitions of a crashed instance move to the
    others that soon; heartbeats come from librdkafka's own thread, so a long insert does
    not end the session."""
    return {
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        **(extra or {}),
    }


def env_options(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {
        name.removeprefix(OPT_PREFIX).lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(OPT_PREFIX) and value
    }


def client_config(
    bootstrap: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """A librdkafka config: bootstrap, security options from the environment, overrides.

    librdkafka's own log lines (e.g. a refused connection while a broker is away) go to
    ``logger`` (default ``tokenledger.kafka``) instead of straight to stderr.
    """
    config: dict[str, Any] = {"bootstrap.servers": bootstrap or bootstrap_servers()}
    config.update(env_options())
    config["logger"] = logger or logging.getLogger("tokenledger.kafka")
    config.update(overrides or {})
    return config


def sdk_producer(
    bootstrap: str | None,
    delivery_timeout_ms: int,
    queue_max: int,
    kafka_config: Mapping[str, Any] | None,
) -> Any:
    """The SDK's producer: idempotent with acks=all (a retried send is written once),
    batched and lz4-compressed."""
    from confluent_kafka import Producer

    settings = {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": delivery_timeout_ms,
        "queue.buffering.max.messages": queue_max,
    }
    return Producer(client_config(bootstrap, {**settings, **(kafka_config or {})}))


def assign_from_start(consumer: Any, topic: str) -> set[int]:
    """Assign every partition of ``topic`` to ``consumer`` from its first offset (no group
    to join); the partitions (none when the topic does not exist)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    partitions = set(meta.partitions) if meta is not None and meta.error is None else set()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
    return partitions


def read_to_end(
    consumer: Any, partitions: set[int], apply: Callable[[Any], None], timeout: float
) -> bool:
    """Hand every record of the assigned ``partitions`` to ``apply`` until each reports its
    end (the consumer needs ``enable.partition.eof``); False when ``timeout`` passes first."""
    import time

    from confluent_kafka import KafkaError

    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    while at_end != partitions:
        if time.monotonic() > deadline:
            return False
        for m in consumer.consume(1000, 0.2):
            err = m.error()
            if err is None:
                apply(m)
            elif err.code() == KafkaError._PARTITION_EOF and m.partition() is not None:
                at_end.add(m.partition())
    return True
