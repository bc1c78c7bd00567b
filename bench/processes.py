"""`tokenledger worker` and `tokenledger sink` processes of one namespace for the scale-out
benchmarks, and the rate at which a consumer group gets through its input."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tokenledger.contract import topics
from tokenledger.contract.topics import TopicSpec
from tokenledger.streams.admin.progress import Probe
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.local.processes import Child, Supervisor


class Stage:
    """Processes of one fresh namespace over ``partitions`` partitions, started with its
    environment (a sink with a ClickHouse data path of its own), each logging to
    ``<home>/<name>.log``; ``stop`` stops them and returns what each printed."""

    def __init__(self, bootstrap: str, home: Path, partitions: int) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_HOME": str(home),
            "TOKENLEDGER_TOPIC_NAMESPACE": f"pipe{uuid.uuid4().hex[:6]}",
            "TOKENLEDGER_PARTITIONS": str(partitions),
        }
        self.settings = Settings.from_env(self.env)
        create_topics(
            bootstrap,
            [TopicSpec(self.settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
            partitions,
            1,
        )
        self.children = Supervisor(home, self.env, grace_s=120)
        self.started: list[Child] = []

    def start(self, stage: str, name: str) -> None:
        """A worker (``--instance name``) or a sink (data path ``ch-<name>``)."""
        env, argv = self.env, [sys.executable, "-m", "tokenledger.streams.cli", stage]
        if stage == "worker":
            argv += ["--instance", name, "--max-batch", "5000"]
        else:
            env = {**env, "TOKENLEDGER_CLICKHOUSE": f"chdb://{self.home / ('ch-' + name)}"}
            argv += ["--max-rows", "5000", "--max-wait", "0.2"]
        self.started.append(self.children.start(name, argv, env=env))

    def wait_members(self, group: str, count: int, timeout_s: float = 120) -> None:
        """Until ``count`` members of ``group`` hold partitions: no rebalance while timed."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        from tokenledger.kafka_config import client_config

        admin = AdminClient(client_config(self.settings.kafka))
        deadline = time.monotonic() + timeout_s
        name = self.settings.topic(group)
        while time.monotonic() < deadline:
            self.check()
            try:
                described = admin.describe_consumer_groups([name])[name].result(15)
                holding = [m for m in described.members if m.assignment.topic_partitions]
                if str(described.state).endswith("STABLE") and len(holding) == count:
                    return
            except (TimeoutError, KafkaException):
                pass  # the coordinator still loading: ask again
            time.sleep(0.1)
        raise AssertionError(f"{count} members of {name} never held partitions")

    def check(self) -> None:
        """Fail when one of the processes has exited (with the end of its log)."""
        self.children.check()

    def stop(self) -> list[str]:
        """Stop them all at once (members of consumer groups); what each wrote, in the
        order they were started."""
        self.children.stop(together=True)
        return [child.output() for child in self.started]


def rate_until(
    stage: Stage, probe: Probe, total: int, finished: Callable[[], bool] = lambda: True
) -> float:
    """Records per second from the probed group's first commit until its committed offsets
    reach ``total`` (records produced without transactions: offsets count records) and
    ``finished()`` holds."""
    while probe.committed() <= 0:
        stage.check()
        time.sleep(0.01)
    first, started = probe.committed(), time.perf_counter()
    while probe.committed() < total or not finished():
        stage.check()
        if time.perf_counter() - started > 600:
            raise AssertionError("the benchmark's processes did not finish in 10 minutes")
        time.sleep(0.02)
    return (total - first) / (time.perf_counter() - started)
