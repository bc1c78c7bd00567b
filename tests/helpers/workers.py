"""Stream workers for tests: `tokenledger worker` subprocesses of one topic namespace, or
an engine running in a thread of the test process."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers.cli import TOKENLEDGER
from tests.helpers.kafka_io import wait_topics
from tokenledger.contract import topics
from tokenledger.streams.config import Settings
from tokenledger.streams.local.processes import Supervisor
from tokenledger.streams.worker import service as worker


class Workers:
    """`tokenledger worker` subprocesses of one namespace, each with a log of its own; all
    stopped together at the end."""

    def __init__(self, bootstrap: str, partitions: int, tmp: Path) -> None:
        self.namespace = f"x{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": self.namespace,
            "TOKENLEDGER_PARTITIONS": str(partitions),
            "TOKENLEDGER_HOME": str(tmp / "home"),
        }
        self.settings = Settings.from_env(self.env)
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.children = Supervisor(tmp, self.env, grace_s=30)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def topic(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def state_dir(self, instance: str) -> Path:
        """Where worker ``instance`` keeps its partitions' RocksDB stores."""
        return self.settings.home / "state" / self.topic("tokenledger-worker") / instance

    def start(
        self, instance: str, max_batch: int = 50, heartbeat_s: float = 3600
    ) -> subprocess.Popen[bytes]:
        """A worker; signal heartbeats an hour apart unless a test is about them, so that
        every signal on the topic is a state change."""
        child = self.children.start(
            f"{instance}-{len(self.procs)}",
            [
                TOKENLEDGER,
                "worker",
                "--instance",
                instance,
                "--max-batch",
                str(max_batch),
                "--signal-heartbeat",
                str(heartbeat_s),
            ],
        )
        self.procs.append(child.proc)
        self.logs[child.pid] = child.log
        return child.proc

    def counters(self, proc: subprocess.Popen[bytes]) -> dict[str, int]:
        """What a stopped worker counted over its life, from the summary line it prints on a
        clean stop ("worker NAME stopped after N records: k=v, ...")."""
        assert proc.poll() is not None, "stop the worker first"
        lines = [x for x in self.logs[proc.pid].read_text().splitlines() if " stopped after " in x]
        assert len(lines) == 1, f"no summary line in {self.logs[proc.pid]}"
        summary = lines[0].split(" records: ", 1)[1]
        if summary == "no events":
            return {}
        return {k: int(v) for k, v in (item.split("=") for item in summary.split(", "))}

    def wait_topics(self) -> None:
        """Until the first worker has created every topic of the namespace."""
        wait_topics(self.bootstrap, {self.topic(t.name) for t in topics.TOPICS})

    def stop_all(self) -> None:
        """Members of one group leave at once, so that no partitions move meanwhile."""
        self.children.stop(together=True)


@contextmanager
def run_worker(
    settings: Settings, instance: str, **options: Any
) -> Iterator[worker.TransactionalEngine]:
    """A worker engine (``worker.build`` with ``options``) running in a thread of this
    process, stopped on the way out."""
    engine = worker.build(settings, instance, **options)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(30)
    assert not thread.is_alive()
