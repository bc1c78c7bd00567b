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

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import Figure, local_broker, produce
from bench.bench_sink import enriched
from bench.bench_streams import usage
from bench.processes import Stage, rate_until
from tokenledger.contract import topics
from tokenledger.streams.admin.progress import Probe
from tokenledger.streams.sink.service import GROUP as SINK_GROUP
from tokenledger.streams.worker.service import GROUP as WORKER_GROUP

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
        Figure(
            "sink.one_process_rows_per_s",
            one,
            "rows/s",
            "one `tokenledger sink` process, six partitions",
        ),
        Figure(
            "sink.two_process_rows_per_s",
            two,
            "rows/s",
            "two sink processes, three partitions each, each with its own chdb",
        ),
        Figure("sink.two_process_scaling", two / one, "x", "two sink processes / one"),
        Figure(
            "pipeline.two_workers_two_sinks_events_per_s",
            both,
            "ev/s",
            "usage -> 2 workers -> 2 sinks, until every row is stored",
        ),
    ]


def _stored(outputs: list[str], expected: int) -> None:
    """The sinks' own counts of stored usage rows must add up to ``expected``."""
    counts = [int(m.group(1)) for out in outputs if (m := STORED.search(out))]
    if sum(counts) != expected:
        raise AssertionError(f"sinks stored {counts} rows, expected {expected} in all")


def sinks_alone(bootstrap: str, count: int) -> float:
    """Rows per second of ``count`` sink processes over ROWS pre-loaded enriched rows."""
    now = datetime.now(UTC)  # made before the clock starts: producing them is cheap
    rows = [
        (f"t{i % 60}".encode(), enriched(i, now).model_dump_json().encode()) for i in range(ROWS)
    ]
    with tempfile.TemporaryDirectory() as home:
        stage = Stage(bootstrap, Path(home), PARTITIONS)
        source = stage.settings.topic(topics.USAGE_ENRICHED)
        try:
            for i in range(count):
                stage.start("sink", f"s{i + 1}")
            stage.wait_members(SINK_GROUP, count)
            probe = Probe(stage.settings, stage.settings.topic(SINK_GROUP), source)
            produce(bootstrap, source, rows)
            rate = rate_until(stage, probe, ROWS)
            probe.consumer.close()
        finally:
            outputs = stage.stop()
        _stored(outputs, ROWS)
        return rate


def workers_and_sinks(bootstrap: str) -> float:
    """Events per second through two workers and two sinks, the sinks' counts checked."""
    with tempfile.TemporaryDirectory() as home:
        stage = Stage(bootstrap, Path(home), PARTITIONS)
        settings = stage.settings
        produce(
            bootstrap,
            settings.topic(topics.USAGE),
            ((f"t{i % 60}".encode(), usage(f"t{i % 60}", i)) for i in range(EVENTS)),
        )
        try:
            for name in ("s1", "s2"):
                stage.start("sink", name)
            stage.wait_members(SINK_GROUP, 2)
            workers = Probe(settings, settings.topic(WORKER_GROUP), settings.topic(topics.USAGE))
            sinks = Probe(
                settings, settings.topic(SINK_GROUP), settings.topic(topics.USAGE_ENRICHED)
            )
            for name in ("w1", "w2"):
                stage.start("worker", name)
            rate = rate_until(stage, workers, EVENTS, sinks.caught_up)
            workers.consumer.close()
            sinks.consumer.close()
        finally:
            outputs = stage.stop()
        _stored(outputs[:2], EVENTS)
        return rate
