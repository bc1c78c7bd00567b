"""Topic creation and broker checks through confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from tokenledger.contract.topics import TopicSpec
from tokenledger.streams.errors import ServiceUnavailableError, UserError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection; readiness polling expects those."""
    quiet = logging.getLogger("tokenledger.kafka_probe")
    quiet.propagate = False
    quiet.setLevel(logging.CRITICAL)
    return quiet


def admin_client(bootstrap: str, options: Mapping[str, str] | None = None) -> AdminClient:
    """An AdminClient whose connection errors stay out of the terminal (they are expected
    while a broker starts; callers report unavailability themselves). ``options`` win over
    the environment's (e.g. the credentials of a broker's own admin)."""
    from confluent_kafka.admin import AdminClient

    from tokenledger.kafka_config import client_config

    overrides = {"socket.timeout.ms": 5000, **(options or {})}
    return AdminClient(client_config(bootstrap, overrides, logger=_quiet_logger()))


def metadata_ok(
    bootstrap: str, timeout: float = 2.0, options: Mapping[str, str] | None = None
) -> bool:
    """True when the broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka import KafkaException

    try:
        admin_client(bootstrap, options).list_topics(timeout=timeout)
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
    bootstrap: str,
    specs: Iterable[TopicSpec],
    partitions: int,
    replication_factor: int,
    may_refuse: Collection[str] = (),
) -> dict[str, str]:
    """Create missing topics; returns topic -> "created" | "exists" | "refused". Idempotent.

    Topics the client already sees are not asked for again, so a component whose principal
    may not create topics starts once an admin has created them. Creating one of
    ``may_refuse`` without the right is "refused" (the worker offers to create every topic,
    but only needs its own); any other refusal is an error saying who should create it."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    specs = list(specs)
    seen = set(admin.list_topics(timeout=10).topics)
    result = {s.name: "exists" for s in specs if s.name in seen}
    new = [
        NewTopic(
            s.name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(s.configs),
        )
        for s in specs
        if s.name not in seen
    ]
    futures = admin.create_topics(new, request_timeout=30) if new else {}
    for name, future in futures.items():
        try:
            future.result(timeout=60)
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            elif err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED and name in may_refuse:
                result[name] = "refused"
            elif err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise UserError(
                    f"{name} is missing and this principal may not create it; create the "
                    "topics with `tokenledger topics create` as an admin (see `kafka acls`)"
                ) from None
            elif err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                raise UserError(
                    f"cannot create {name}: {err.str()}; lower TOKENLEDGER_REPLICATION"
                ) from None
            else:
                raise ServiceUnavailableError(f"cannot create {name}: {err.str()}") from None
    return {s.name: result[s.name] for s in specs}


def partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Partitions of each topic the client sees (metadata only: no DescribeConfigs right
    needed)."""
    require_broker(bootstrap)
    meta = admin_client(bootstrap).list_topics(timeout=10).topics
    return {n: len(meta[n].partitions) for n in names if n in meta}


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
