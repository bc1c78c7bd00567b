"""`tokenledger kafka start|status|stop` and `topics create` on a real broker."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import tl
from tokenledger.contract.topics import (
    BUDGETS,
    CLAIMS,
    SIGNALS,
    TOPICS,
    WORKER_CHANGELOG,
    TopicSpec,
)
from tokenledger.streams.admin.topics import create_topics, describe_topics, metadata_ok

pytestmark = pytest.mark.integration

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


def java_processes(properties: Path) -> list[int]:
    """Live processes whose command line names this broker's server.properties."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(properties).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.fixture
def broker_env(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield cli_env
    tl(cli_env, "kafka", "stop")  # whatever the test did, nothing keeps running


def test_start_twice_status_stop_and_topics(broker_env: dict[str, str]) -> None:
    env = broker_env
    bootstrap = f"127.0.0.1:{env['TOKENLEDGER_KAFKA_PORT']}"
    properties = Path(env["TOKENLEDGER_HOME"]) / "kafka" / "server.properties"

    first = tl(env, "kafka", "start")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"kafka started: {bootstrap}")
    assert metadata_ok(bootstrap)

    second = tl(env, "kafka", "start")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"kafka already running: {bootstrap}")
    assert len(java_processes(properties)) == 1

    status = tl(env, "kafka", "status")
    assert status.returncode == 0 and status.stdout.startswith(f"kafka running: {bootstrap}")

    stop = tl(env, "kafka", "stop")
    assert (stop.returncode, stop.stdout.strip()) == (0, "kafka stopped")
    assert java_processes(properties) == []
    assert not metadata_ok(bootstrap, timeout=1.0)

    stopped = tl(env, "kafka", "status")
    assert stopped.returncode == 1 and stopped.stdout.startswith("kafka is not running")
    again = tl(env, "kafka", "stop")
    assert (again.returncode, again.stdout.strip(), again.stderr) == (0, "kafka is not running", "")

    restart = tl(env, "kafka", "start")  # formatted storage is reused
    assert restart.returncode == 0 and restart.stdout.startswith("kafka started")

    env = {**env, "TOKENLEDGER_PARTITIONS": "2"}
    created = tl(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert [line.split() for line in created.stdout.splitlines()] == [
        ["created", t.name] for t in TOPICS
    ]
    existing = tl(env, "topics", "create")
    assert [line.split()[0] for line in existing.stdout.splitlines()] == ["exists"] * len(TOPICS)
    listing = tl(env, "topics", "list")
    assert f"{SIGNALS}  partitions=2 cleanup.policy=compact" in listing.stdout


def test_topics_are_created_once_with_their_configs(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    specs = [TopicSpec(f"{t.name}.{suffix}", t.compacted, t.configs) for t in TOPICS]
    names = [s.name for s in specs]
    assert create_topics(
        kafka_bootstrap, specs, partitions=4, replication_factor=1
    ) == dict.fromkeys(names, "created")
    assert create_topics(
        kafka_bootstrap, specs, partitions=4, replication_factor=1
    ) == dict.fromkeys(names, "exists")
    described = describe_topics(kafka_bootstrap, names)
    assert {s.name for s in specs if s.compacted} == {
        f"{t}.{suffix}" for t in (BUDGETS, SIGNALS, WORKER_CHANGELOG, CLAIMS)
    }
    for spec in specs:
        info = described[spec.name]
        assert info["partitions"] == "4"
        assert (info.get("cleanup.policy") == "compact") == spec.compacted, spec.name
        if not spec.compacted:
            assert info["retention.ms"] == spec.configs["retention.ms"]
