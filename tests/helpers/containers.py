"""Kafka and ClickHouse in containers, for TOKENLEDGER_TEST_CONTAINERS=1 runs (see
backends.py). The images are the ones docker-compose.yml pins: one place names them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from tests.helpers.paths import ROOT
from tokenledger.streams.admin.topics import metadata_ok
from tokenledger.streams.local.broker import free_ports


def compose_image(service: str) -> str:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return str(compose["services"][service]["image"])


@contextmanager
def kafka_container(timeout: float = 120) -> Iterator[str]:
    """A single-node KRaft broker; yields its bootstrap address on 127.0.0.1. The host port
    is bound to the same number inside, so the advertised listener is the one clients use."""
    from testcontainers.core.container import DockerContainer

    (port,) = free_ports(1)
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    container: Any = DockerContainer(compose_image("kafka")).with_bind_ports(port, port)
    for key, value in env.items():
        container = container.with_env(key, value)
    with container:
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not metadata_ok(bootstrap, timeout=1.0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Kafka container did not answer on {bootstrap}")
            time.sleep(0.5)
        yield bootstrap


@contextmanager
def clickhouse_container() -> Iterator[str]:
    """A ClickHouse server; yields an http DSN with its credentials."""
    from testcontainers.community.clickhouse import ClickHouseContainer

    with ClickHouseContainer(compose_image("clickhouse")) as server:
        host = server.get_container_host_ip()
        port = server.get_exposed_port(8123)
        yield f"http://{server.username}:{server.password}@{host}:{port}"
