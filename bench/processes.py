"""`tokenledger worker` and `tokenledger sink` processes of one namespace for the scale-out
benchmarks, and the rate at which a consumer group gets through its input."""

from __future__ import annotations

import os
import subprocess
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


class Stage:
    """Processes of one fresh namespace over ``partitions`` partitions, started with its
    environment (a sink with a ClickHouse data path of its own); ``stop`` terminates them
    and returns what each printed."""

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
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, stage: str, name: str) -> None:
        """A worker (``--instance name``) or a sink (data path ``ch-<name>``)."""
        env, argv = self.env, [sys.executable, "-m", "tokenledger.streams.cli", stage]
        if stage == "worker":
            argv += ["--instance", name, "--max-batch", "5000"]
        else:
            env = {**env, "TOKENLEDGER_CLICKHOUSE": f"chdb://{self.home / ('ch-' + name)}"}
            argv += ["--max-rows", "5000", "--max-wait", "0.2"]
        self.procs.append(
            subprocess.Popen(
                argv,
                env=env,
                text=True,
                stdout=subprocess.PIPE,  # noqa: S603
                stderr=subprocess.DEVNULL,
            )
        )

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
        """Fail when one of the processes has exited."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")

    def stop(self) -> list[str]:
        for proc in self.procs:
            proc.terminate()
        return [proc.communicate(timeout=120)[0] for proc in self.procs]


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
