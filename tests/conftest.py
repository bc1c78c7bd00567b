"""Fixtures: a real Kafka broker per test session, a real ClickHouse per test process.

The broker is `TOKENLEDGER_KAFKA` when set, else a local Apache Kafka started on free ports
for this session and stopped at its end; ClickHouse is the embedded engine on a path of this
process. With TOKENLEDGER_TEST_CONTAINERS=1 (and Docker) both are containers instead (see
tests/helpers/backends.py). A backend that cannot start fails the tests that need it:
nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.backends import BackendError, Backends, choose, docker_answers
from tests.helpers.containers import clickhouse_container, kafka_container
from tests.helpers.secure import SecureKafka, secure_kafka
from tokenledger.streams.config import Settings
from tokenledger.streams.local.broker import LocalKafka, free_ports
from tokenledger.streams.sink.client import get_client

BACKENDS = pytest.StashKey[Backends]()


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[BACKENDS] = choose(os.environ, docker_answers)
    except BackendError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    return f"backends: {config.stash[BACKENDS].description}"


@pytest.fixture(scope="session")
def backends(request: pytest.FixtureRequest) -> Backends:
    return request.config.stash[BACKENDS]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[str]:
    external = os.environ.get("TOKENLEDGER_KAFKA")
    if external:
        yield external
        return
    if backends.containers:
        with kafka_container() as bootstrap:
            yield bootstrap
        return
    port, controller = free_ports(2)
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka"),
        Settings.from_env().cache,
        port=port,
        controller_port=controller,
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A second local broker for the security tests only (the one above stays plain):
    SASL/SCRAM, Kafka's standard authorizer, a SCRAM user per component."""
    with secure_kafka(tmp_path_factory.mktemp("sasl-kafka"), Settings.from_env().cache) as kafka:
        yield kafka


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Creates uniquely named topics; deletes them after the test."""
    from confluent_kafka.admin import NewTopic

    from tokenledger.streams.admin.topics import admin_client

    admin = admin_client(kafka_bootstrap)
    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[str]:
    """One embedded ClickHouse data path for this test process (chdb allows one), or the
    ClickHouse server container."""
    if backends.containers:
        with clickhouse_container() as dsn:
            yield dsn
        return
    yield f"chdb://{tmp_path_factory.mktemp('chdb')}"


@contextmanager
def fresh_database(dsn: str) -> Iterator[Any]:
    """A client on a fresh database of its own, dropped afterwards."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = get_client(dsn, database, create=True)
    try:
        yield client
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture
def ch(clickhouse_dsn: str) -> Iterator[Any]:
    """A client on a fresh database of its own, dropped after the test."""
    with fresh_database(clickhouse_dsn) as client:
        yield client


@pytest.fixture
def ch_factory(clickhouse_dsn: str) -> Iterator[Callable[[], Any]]:
    """More fresh databases for one test, each dropped after it."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(fresh_database(clickhouse_dsn))


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[Any]]]:
    """subprocess.Popen for a test; whatever is still running at teardown is killed, so a
    failing test never leaves a sink or worker behind. ``log=PATH`` appends the process's
    stdout and stderr to that file, with no handle left open in the test."""
    started: list[subprocess.Popen[Any]] = []

    def start(*args: Any, log: Path | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        with ExitStack() as stack:
            if log is not None:
                out = stack.enter_context(log.open("ab"))
                kwargs.update(stdout=out, stderr=out)
            proc = subprocess.Popen(*args, **kwargs)  # noqa: S603 - the test's own commands
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `tokenledger` subprocess with its own home, sharing the jar cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLEDGER_")}
    env["TOKENLEDGER_HOME"] = str(tmp_path / "home")
    env["TOKENLEDGER_CACHE"] = str(Settings.from_env().cache)
    port, controller = free_ports(2)
    env["TOKENLEDGER_KAFKA_PORT"] = str(port)
    env["TOKENLEDGER_KAFKA_CONTROLLER_PORT"] = str(controller)
    return env


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker this test may stop and restart."""
    port, controller = free_ports(2)
    broker = LocalKafka(
        tmp_path_factory.mktemp("own-kafka"),
        Settings.from_env().cache,
        port=port,
        controller_port=controller,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
