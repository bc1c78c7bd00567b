"""Topic creation and broker checks through confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from schemas.topics import TopicSpec
from streams.errors import ServiceUnavailableError, UserError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection; readiness polling expects those."""
    quiet = logging.getLogger("tokenledger.kafka_probe")
    quiet.propagate = False
    quiet.setLevel(logging.CRITICAL)
    return quiet


def admin_client(bootstrap: str) -> AdminClient:
    """An AdminClient whose connection errors stay out of the terminal (they are expected
    while a broker starts; callers report unavailability themselves)."""
    from confluent_kafka.admin import AdminClient

    from tokenledger.kafka_config import client_config

    return AdminClient(
        client_config(bootstrap, {"socket.timeout.ms": 5000}, logger=_quiet_logger())
    )


def metadata_ok(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka import KafkaException

    try:
        admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def require_broker(bootstrap: str, timeout: float = 5.0) -> None:
    if not metadata_ok(bootstrap, timeout=timeout):
        raise ServiceUnavailableError(
            f"no Kafka broker answers at {bootstrap}; start one with `tokenledger kafka start` "
            "or set TOKENLEDGER_KAFKA to your bootstrap servers"
        )


def create_topics(
    bootstrap: str, specs: Iterable[TopicSpec], partitions: int, replication_factor: int
) -> dict[str, str]:
    """Create missing topics; returns topic -> "created" | "exists". Idempotent."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    new = [
        NewTopic(s.name, num_partitions=partitions, replication_factor=replication_factor,
                 config=dict(s.configs))
        for s in specs
    ]  # fmt: skip
    result: dict[str, str] = {}
    for name, future in admin.create_topics(new, request_timeout=30).items():
        try:
            future.result(timeout=60)
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            elif err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                raise UserError(
                    f"cannot create {name}: {err.str()}; lower TOKENLEDGER_REPLICATION"
                ) from None
            else:
                raise ServiceUnavailableError(f"cannot create {name}: {err.str()}") from None
    return result


def describe_topics(bootstrap: str, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Topic -> its non-default configs and partition count (for `topics list` and tests)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    meta = admin.list_topics(timeout=10).topics
    out: dict[str, dict[str, str]] = {}
    wanted = [n for n in names if n in meta]
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in wanted]
    futures = admin.describe_configs(resources, request_timeout=30) if resources else {}
    for res, future in futures.items():
        configs = future.result(timeout=30)
        info = {k: v.value for k, v in configs.items() if not v.is_default and v.value is not None}
        info["partitions"] = str(len(meta[res.name].partitions))
        out[res.name] = info
    return out
