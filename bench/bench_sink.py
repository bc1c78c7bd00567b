"""Sink throughput next to a bare clickhouse-connect insert of the same rows, and the
latency of every library query over 10 million usage rows (embedded ClickHouse)."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import Figure, local_broker
from tokenledger.contract import topics
from tokenledger.contract.messages import EnrichedUsage
from tokenledger.contract.rows import UsageRow
from tokenledger.contract.topics import TopicSpec
from tokenledger.kafka_config import client_config
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.analytics import queries
from tokenledger.streams.config import Settings
from tokenledger.streams.sink import migrations
from tokenledger.streams.sink.client import get_client
from tokenledger.streams.sink.service import Sink
from tokenledger.streams.sink.writer import INSERT_SETTINGS

SINK_ROWS = 50_000
QUERY_ROWS = 10_000_000
SEED = Path(__file__).parent / "sql" / "seed_usage_events.sql"


def enriched(i: int, now: datetime) -> EnrichedUsage:
    return EnrichedUsage(
        event_id=uuid.uuid4().hex,
        request_id=f"r{i}",
        idempotency_key=f"r{i}",
        ts=now - timedelta(seconds=i % 3600),
        tenant_id=f"t{i % 50}",
        user_scope="u",
        service="bench",
        feature=f"f{i % 8}",
        route="rag",
        prompt_version="v1",
        model="gpt-4o",
        provider="openai",
        input_tokens=3000,
        output_tokens=400,
        latency_ms=900,
        success=True,
        cost_nusd=11_500_000 + i,
        priced=True,
        table_cost_nusd=11_500_000 + i,
        cost_source="table",
        cost_mismatch=False,
        pricing_version="bench",
        reference_model="gpt-4o",
        counterfactual_cost_nusd=12_000_000,
        list_cost_nusd=12_000_000,
        unbatched_cost_nusd=11_500_000,
        context_saved_nusd=0,
        duplicate_generation=False,
        processed_at=now,
    )


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"chdb://{tmp}/ch"
        with local_broker() as (bootstrap, _):
            figures = sink_throughput(bootstrap, dsn)
        return figures + query_latency(dsn)


def sink_throughput(bootstrap: str, dsn: str) -> list[Figure]:
    from confluent_kafka import Producer

    now = datetime.now(UTC)
    events = [enriched(i, now) for i in range(SINK_ROWS)]
    bare = get_client(dsn, "bench_bare", create=True)
    migrations.migrate(bare)
    rows = [[*UsageRow.from_message(e).values(), 0, i] for i, e in enumerate(events)]
    rates = []
    for attempt in range(3):  # the median of three: one round swings with the machine
        started = time.perf_counter()
        for chunk in range(0, SINK_ROWS, 5000):
            token = f"{attempt}-{chunk}"
            bare.insert(
                "usage_events",
                rows[chunk : chunk + 5000],
                column_names=UsageRow.insert_columns(),
                settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
            )
        rates.append(SINK_ROWS / (time.perf_counter() - started))
    bare_rate = statistics.median(rates)

    settings = Settings.from_env(
        {
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": "bench",
            "TOKENLEDGER_PARTITIONS": "3",
        }
    )
    create_topics(
        bootstrap,
        [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
        3,
        1,
    )
    producer = Producer(client_config(bootstrap, {"linger.ms": 20}))
    for e in events:
        producer.produce(
            settings.topic(topics.USAGE_ENRICHED),
            e.model_dump_json().encode(),
            e.tenant_id.encode(),
        )
        producer.poll(0)
    producer.flush(60)
    client = get_client(dsn, "bench_sink", create=True)
    migrations.migrate(client)
    sink = Sink(settings, lambda: client, max_rows=5000, max_wait_s=0.5)
    thread = threading.Thread(target=sink.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    while sink.counters["rows.usage_events"] == 0:  # joining the group, assignment, resume
        time.sleep(0.001)
    first, running = sink.counters["rows.usage_events"], time.perf_counter()
    while sink.counters["rows.usage_events"] < SINK_ROWS:
        if time.perf_counter() - started > 600:
            raise AssertionError("the sink did not store the benchmark rows in 10 minutes")
        time.sleep(0.01)
    done = time.perf_counter()
    sink_rate = (SINK_ROWS - first) / (done - running)
    sink.stop()
    thread.join(30)
    return [
        Figure(
            "sink.rows_per_s",
            sink_rate,
            "rows/s",
            "consume + parse + insert + commit, from the first stored batch to the last",
        ),
        Figure(
            "sink.rows_per_s_with_startup",
            SINK_ROWS / (done - started),
            "rows/s",
            "the same from the sink's start (group join included)",
        ),
        Figure(
            "sink.bare_insert_rows_per_s",
            bare_rate,
            "rows/s",
            "clickhouse-connect insert of the same rows, median of 3 rounds",
        ),
        Figure("sink.ratio_to_bare", sink_rate / bare_rate, "x"),
    ]


def query_latency(dsn: str) -> list[Figure]:
    client = get_client(dsn, "bench_queries", create=True)
    migrations.migrate(client)
    started = time.perf_counter()
    client.command(SEED.read_text(), parameters={"rows": QUERY_ROWS, "days": 30})
    seeded = time.perf_counter() - started
    figures = [Figure("queries.seed_10m_rows_s", seeded, "s", "INSERT ... SELECT numbers()")]
    worst = 0.0
    for name, query in queries.library().items():
        params: dict[str, Any] = query.bind(
            {"start": "-30d"} if any(p.name == "start" for p in query.params) else {}
        )
        times = []
        for _ in range(3):
            t = time.perf_counter()
            client.query(query.sql, parameters=params)
            times.append((time.perf_counter() - t) * 1000)
        ms = statistics.median(times)
        worst = max(worst, ms)
        figures.append(Figure(f"queries.{name}_ms", ms, "ms", "median of 3, 10M rows"))
    figures.append(Figure("queries.max_ms_10m_rows", worst, "ms", "slowest library query"))
    return figures
