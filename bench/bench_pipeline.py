"""The pipeline scaled out on this machine: `tokenledger sink` and `tokenledger worker`
processes sharing six partitions.

- ``sink.one_process_rows_per_s`` / ``sink.two_process_rows_per_s``: enriched usage rows
  stored by one sink process, then by two (same consumer group, three partitions each),
  from the first committed batch to the last; each sink has its own embedded ClickHouse
  (chdb is one process per data path; against a server both would insert into one).
- ``pipeline.two_workers_two_sinks_events_per_s``: usage events through two workers and
  two sinks, from the first committed worker batch until the sinks have stored every
  enriched row.

Every run checks its count: the rows the sinks report stored must equal the events sent,
or the benchmark fails rather than print a rate of lost or doubled work.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import Figure, local_broker, produce
from bench.bench_sink import enriched
from bench.bench_streams import usage
from schemas import topics
from schemas.topics import TopicSpec
from streams.admin.progress import Probe
from streams.admin.topics import create_topics
from streams.config import Settings
from streams.sink.service import GROUP as SINK_GROUP
from streams.worker.service import GROUP as WORKER_GROUP

PARTITIONS = 6
ROWS = 200_000
EVENTS = 100_000
STORED = re.compile(r"rows\.usage_events=(\d+)")


def run() -> list[Figure]:
    with local_broker() as (bootstrap, _):
        one = sinks_alone(bootstrap, 1)
        two = sinks_alone(bootstrap, 2)
        both = workers_and_sinks(bootstrap)
    return [
        Figure("sink.one_process_rows_per_s", one, "rows/s",
               "one `tokenledger sink` process, six partitions"),
        Figure("sink.two_process_rows_per_s", two, "rows/s",
               "two sink processes, three partitions each, each with its own chdb"),
        Figure("sink.two_process_scaling", two / one, "x", "two sink processes / one"),
        Figure("pipeline.two_workers_two_sinks_events_per_s", both, "ev/s",
               "usage -> 2 workers -> 2 sinks, until every row is stored"),
    ]  # fmt: skip


class Stage:
    """Processes of one namespace: started with the namespace's environment, each with its
    own ClickHouse data path; ``stop`` terminates them and returns what they printed."""

    def __init__(self, bootstrap: str, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "TOKENLEDGER_KAFKA": bootstrap, "TOKENLEDGER_HOME": str(home),
                    "TOKENLEDGER_TOPIC_NAMESPACE": f"pipe{uuid.uuid4().hex[:6]}",
                    "TOKENLEDGER_PARTITIONS": str(PARTITIONS)}  # fmt: skip
        self.settings = Settings.from_env(self.env)
        create_topics(bootstrap, [TopicSpec(self.settings.topic(t.name), t.compacted, t.configs)
                                  for t in topics.TOPICS], PARTITIONS, 1)  # fmt: skip
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, stage: str, name: str) -> None:
        env = {**self.env, "TOKENLEDGER_CLICKHOUSE": f"chdb://{self.home / ('ch-' + name)}"}
        argv = [sys.executable, "-m", "streams.cli", stage]
        argv += ["--instance", name] if stage == "worker" else []
        argv += (
            ["--max-batch", "5000"]
            if stage == "worker"
            else ["--max-rows", "5000", "--max-wait", "0.2"]
        )
        self.procs.append(subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,  # noqa: S603
                                           stderr=subprocess.DEVNULL))  # fmt: skip

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
            except (TimeoutError, KafkaException):  # the coordinator still loading
                continue
            holding = [m for m in described.members if m.assignment.topic_partitions]
            if str(described.state).endswith("STABLE") and len(holding) == count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{count} members of {name} never held partitions")

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")

    def stop(self) -> list[str]:
        out = []
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            out.append(proc.communicate(timeout=120)[0])
        return out


def _stored(outputs: list[str], expected: int) -> None:
    """The sinks' own counts of stored usage rows must add up to ``expected``."""
    counts = [int(m.group(1)) for out in outputs if (m := STORED.search(out))]
    if sum(counts) != expected:
        raise AssertionError(f"sinks stored {counts} rows, expected {expected} in all")


def _timed(stage: Stage, probe: Probe, total: int) -> float:
    """Records per second from the group's first commit until its committed offsets reach
    ``total`` (records produced without transactions: offsets count records)."""
    while probe.committed() <= 0:
        stage.check()
        time.sleep(0.01)
    first, started = probe.committed(), time.perf_counter()
    while probe.committed() < total:
        stage.check()
        if time.perf_counter() - started > 600:
            raise AssertionError("the pipeline did not finish in 10 minutes")
        time.sleep(0.02)
    return (total - first) / (time.perf_counter() - started)


def sinks_alone(bootstrap: str, count: int) -> float:
    """Rows per second of ``count`` sink processes over ROWS pre-loaded enriched rows."""
    now = datetime.now(UTC)  # made before the clock starts: producing them is cheap
    rows = [(f"t{i % 60}".encode(), enriched(i, now).model_dump_json().encode())
            for i in range(ROWS)]  # fmt: skip
    with tempfile.TemporaryDirectory() as home:
        stage = Stage(bootstrap, Path(home))
        source = stage.settings.topic(topics.USAGE_ENRICHED)
        try:
            for i in range(count):
                stage.start("sink", f"s{i + 1}")
            stage.wait_members(SINK_GROUP, count)
            probe = Probe(stage.settings, stage.settings.topic(SINK_GROUP), source)
            produce(bootstrap, source, rows)
            rate = _timed(stage, probe, ROWS)
            probe.consumer.close()
        finally:
            outputs = stage.stop()
        _stored(outputs, ROWS)
        return rate


def workers_and_sinks(bootstrap: str) -> float:
    """Events per second through two workers and two sinks, the sinks' counts checked."""
    with tempfile.TemporaryDirectory() as home:
        stage = Stage(bootstrap, Path(home))
        settings = stage.settings
        produce(bootstrap, settings.topic(topics.USAGE),
                ((f"t{i % 60}".encode(), usage(f"t{i % 60}", i)) for i in range(EVENTS)))  # fmt: skip
        try:
            for name in ("s1", "s2"):
                stage.start("sink", name)
            stage.wait_members(SINK_GROUP, 2)
            workers = Probe(settings, settings.topic(WORKER_GROUP), settings.topic(topics.USAGE))
            sinks = Probe(settings, settings.topic(SINK_GROUP),
                          settings.topic(topics.USAGE_ENRICHED))  # fmt: skip
            for name in ("w1", "w2"):
                stage.start("worker", name)
            while workers.committed() <= 0:
                stage.check()
                time.sleep(0.01)
            first, started = workers.committed(), time.perf_counter()
            while workers.committed() < EVENTS or not sinks.caught_up():
                stage.check()
                if time.perf_counter() - started > 600:
                    raise AssertionError("the pipeline did not finish in 10 minutes")
                time.sleep(0.05)
            rate = (EVENTS - first) / (time.perf_counter() - started)
            workers.consumer.close()
            sinks.consumer.close()
        finally:
            outputs = stage.stop()
        _stored(outputs[:2], EVENTS)
        return rate
