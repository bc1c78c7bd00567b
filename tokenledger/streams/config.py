"""Settings from the environment, read in one place. Every name is documented in docs/operations.md."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokenledger.contract.files import shipped
from tokenledger.paths import cache_dir, home_dir
from tokenledger.streams.errors import UserError
from tokenledger.topic_names import topic_namespace

GRAFANA_PASSWORD_ENV = "TOKENLEDGER_GRAFANA_PASSWORD"  # noqa: S105 - the name, not a value
"""The password of Grafana's read-only ClickHouse user (`tokenledger access grafana`)."""


def sql_root() -> Path:
    """clickhouse/ in a source checkout, or its copy inside an installed wheel."""
    return shipped("streams/_sql", "clickhouse")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a whole number; unset it or give one") from None
    if not low <= value <= high:
        raise UserError(f"{name}={value} is out of range; use {low}..{high}")
    return value


def _namespace(env: Mapping[str, str]) -> str:
    """The SDK reads the namespace the same way (tokenledger/topic_names.py)."""
    try:
        return topic_namespace(env)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _services(value: str) -> frozenset[str]:
    from tokenledger.contract.common import NAME_PATTERN

    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if not re.fullmatch(NAME_PATTERN, name):
            raise UserError(
                f"TOKENLEDGER_TRUSTED_COST_SERVICES: {name!r} is not a service name; give "
                "service names separated by commas"
            )
    return frozenset(names)


@dataclass(frozen=True)
class Settings:
    home: Path
    """TOKENLEDGER_HOME: local state (broker data, logs, embedded ClickHouse). ./.tokenledger"""
    cache: Path
    """TOKENLEDGER_CACHE: downloaded Kafka jars and tiktoken ranks. <home>/cache"""
    kafka: str
    """TOKENLEDGER_KAFKA: bootstrap servers. Default: the local broker, 127.0.0.1:<port>"""
    kafka_is_local: bool
    kafka_port: int
    """TOKENLEDGER_KAFKA_PORT: the local broker's client port. 9092"""
    kafka_controller_port: int
    """TOKENLEDGER_KAFKA_CONTROLLER_PORT: the local broker's KRaft controller port. 9093"""
    clickhouse: str
    """TOKENLEDGER_CLICKHOUSE: chdb:///path (embedded engine) or http(s)://host:port."""
    clickhouse_database: str
    """TOKENLEDGER_CLICKHOUSE_DATABASE: the database tokenledger's tables live in. tokenledger"""
    partitions: int
    """TOKENLEDGER_PARTITIONS: partitions per topic when topics are created. 3"""
    replication_factor: int
    """TOKENLEDGER_REPLICATION: replication factor when topics are created. 1"""
    topic_namespace: str
    """TOKENLEDGER_TOPIC_NAMESPACE: prefix of every topic and consumer group name. empty"""
    trusted_cost_services: frozenset[str]
    """TOKENLEDGER_TRUSTED_COST_SERVICES: services whose own cost_nusd the worker counts
    instead of the price book's (e.g. a gateway reporting the provider's bill). none"""
    clickhouse_database_chosen: bool = False
    """Whether TOKENLEDGER_CLICKHOUSE_DATABASE was set (else the default is in use)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = home_dir(env).resolve()
        cache = cache_dir(env).resolve()
        port = _int(env, "TOKENLEDGER_KAFKA_PORT", 9092, 1024, 65535)
        controller = _int(env, "TOKENLEDGER_KAFKA_CONTROLLER_PORT", 9093, 1024, 65535)
        kafka = env.get("TOKENLEDGER_KAFKA") or ""
        return cls(
            home=home,
            cache=cache,
            kafka=kafka or f"127.0.0.1:{port}",
            kafka_is_local=not kafka,
            kafka_port=port,
            kafka_controller_port=controller,
            clickhouse=env.get("TOKENLEDGER_CLICKHOUSE") or f"chdb://{home / 'clickhouse'}",
            clickhouse_database=env.get("TOKENLEDGER_CLICKHOUSE_DATABASE") or "tokenledger",
            partitions=_int(env, "TOKENLEDGER_PARTITIONS", 3, 1, 1000),
            replication_factor=_int(env, "TOKENLEDGER_REPLICATION", 1, 1, 10),
            topic_namespace=_namespace(env),
            trusted_cost_services=_services(env.get("TOKENLEDGER_TRUSTED_COST_SERVICES") or ""),
            clickhouse_database_chosen=bool(env.get("TOKENLEDGER_CLICKHOUSE_DATABASE")),
        )

    @property
    def demo_database(self) -> str:
        """The database `tokenledger demo` recreates and fills, beside the configured one."""
        return f"{self.clickhouse_database}_demo"

    def topic(self, name: str) -> str:
        from tokenledger.contract.topics import namespaced

        return namespaced(name, self.topic_namespace)
