"""Which Kafka and ClickHouse the integration suite talks to.

By default: Apache Kafka from its jars on 127.0.0.1 and the embedded ClickHouse engine
(chdb). With ``TOKENLEDGER_TEST_CONTAINERS=1`` and a Docker engine that answers: a Kafka
container and a ClickHouse server container (testcontainers), the images docker-compose.yml
pins. Asking for containers without Docker is an error, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

FLAG = "TOKENLEDGER_TEST_CONTAINERS"


class BackendError(Exception):
    """The requested backends cannot be had; the message says what to change."""


@dataclass(frozen=True)
class Backends:
    containers: bool
    description: str


LOCAL = Backends(False, "local Apache Kafka (KRaft) and the embedded ClickHouse engine")
CONTAINERS = Backends(True, "a Kafka container and a ClickHouse server container")


def choose(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> Backends:
    flag = env.get(FLAG, "").strip().lower()
    if flag in ("", "0", "false", "no"):
        return LOCAL
    if flag not in ("1", "true", "yes"):
        raise BackendError(f"{FLAG}={env[FLAG]!r} is neither 1 nor 0")
    if not docker_answers():
        raise BackendError(
            f"{FLAG}=1 but no Docker engine answers (is the daemon running, DOCKER_HOST "
            f"set?); unset {FLAG} to test against the local broker and embedded ClickHouse"
        )
    return CONTAINERS


def docker_answers() -> bool:
    """True when a Docker engine answers a ping (the same client testcontainers uses)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError):
        return False
