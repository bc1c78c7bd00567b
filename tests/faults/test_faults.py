"""Faults end to end (SDK -> Kafka -> worker -> sink -> ClickHouse): after each one, every
event emitted is stored exactly once and the money in ClickHouse equals the money sent, to
the nano-dollar. Outages last TOKENLEDGER_FAULT_OUTAGE_S seconds (60); `make soak` runs the
sustained-load variant."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.helpers import factories
from tests.helpers.clock import recent
from tests.helpers.pipeline import Pipeline
from tests.helpers.waiting import wait_for
from tokenledger.contract import topics
from tokenledger.contract.messages import UsageEvent
from tokenledger.streams.local.broker import LocalKafka, free_ports

OUTAGE_S = float(os.environ.get("TOKENLEDGER_FAULT_OUTAGE_S", "60"))
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash")


def events(n: int, base: datetime, tag: str, *, spread_s: float = 60.0) -> list[UsageEvent]:
    return [
        factories.usage(
            tenant_id=f"tenant-{i % 7}",
            feature=f"f{i % 3}",
            model=MODELS[i % 4],
            provider="x",
            input_tokens=300 + i % 1709,
            cached_input_tokens=0,
            output_tokens=20 + i % 401,
            reasoning_tokens=0,
            ts=base + timedelta(seconds=spread_s * i / n),
            idempotency_key=f"{tag}-{i}",
            event_id=f"{tag}-e{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path)
    yield p
    p.stop_all()


def test_worker_sigkilled_at_random_points_repeatedly(pipeline: Pipeline) -> None:
    rng = random.Random(20261126)
    pipeline.start_worker()
    pipeline.start_sink()
    ledger = pipeline.ledger()
    base = recent()
    progress = pipeline.worker_progress()
    for round_ in range(4):
        before = pipeline.emitted_usage_offsets()
        pipeline.emit(
            ledger, events(2500, base + timedelta(seconds=15 * round_), f"k{round_}", spread_s=15)
        )
        assert ledger.flush(30), ledger.stats()
        after = pipeline.emitted_usage_offsets()
        # The kill lands at a random point of this round, and provably mid-stream: after the
        # worker's first commit of the round and before its last. A transaction carries at
        # most 200 records, so stopping 1,000 short of the end leaves room for the kill.
        target = before + rng.randrange(1, after - before - 1000)
        wait_for(
            lambda t=target: progress.committed() >= t,  # type: ignore[misc]
            60,
            f"round {round_} in progress",
            interval=0.002,
        )
        pipeline.kill("w1")
        at_kill = progress.committed()
        assert before < at_kill < after, (round_, before, at_kill, after)
        pipeline.start_worker()
    progress.consumer.close()
    cleared = time.monotonic()
    ledger.close()
    wait_for(pipeline.stored_all, 180, "every event processed and stored", interval=0.5)
    pipeline.verdict("worker SIGKILL x4 at random points", time.monotonic(), cleared)


def test_duplicate_and_out_of_order_delivery(pipeline: Pipeline) -> None:
    rng = random.Random(7)
    pipeline.start_worker()
    pipeline.start_sink()
    batch = events(6000, recent(), "d", spread_s=120)
    shuffled = batch[:]
    for i in range(0, len(shuffled), 500):  # out of order within two-minute stretches
        chunk = shuffled[i : i + 500]
        rng.shuffle(chunk)
        shuffled[i : i + 500] = chunk
    ledger = pipeline.ledger()
    pipeline.emit(ledger, shuffled)
    ledger.close()
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for e in rng.sample(batch, 2000):  # redelivered by an at-least-once producer
        producer.produce(
            pipeline.topic(topics.USAGE), e.model_dump_json().encode(), e.tenant_id.encode()
        )
    assert producer.flush(30) == 0
    cleared = time.monotonic()
    wait_for(pipeline.stored_all, 180, "every event processed and stored", interval=0.5)
    pipeline.verdict("2,000 redeliveries, shuffled order", time.monotonic(), cleared)


def test_a_producer_replays_yesterdays_spill(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.start_worker()
    pipeline.start_sink()
    yesterday = datetime.now(UTC) - timedelta(hours=20)
    delivered = events(3000, yesterday, "y", spread_s=600)
    never = events(1000, yesterday + timedelta(minutes=11), "n", spread_s=60)
    ledger = pipeline.ledger()
    pipeline.emit(ledger, delivered)
    ledger.close()
    # Yesterday a process could not reach the broker: its spill holds 1,500 events it had
    # already delivered (a lost acknowledgement) and 1,000 it never delivered.
    port = free_ports(1)[0]
    spill = tmp_path / "yesterday-spill"
    cut_off = pipeline.ledger(
        bootstrap=f"127.0.0.1:{port}", spill_dir=spill, delivery_timeout_ms=500, retry_interval_s=60
    )
    for e in delivered[:1500] + never:
        cut_off.emit(e)
    cut_off.close(timeout=5)
    assert cut_off.spilled_waiting() == 2500
    pipeline.sent.update({e.event_id: e for e in never})
    replaying = pipeline.ledger(spill_dir=spill)
    assert replaying.flush(60) and replaying.stats()["replayed"] == 2500
    replaying.close()
    cleared = time.monotonic()
    wait_for(pipeline.stored_all, 180, "every event processed and stored", interval=0.5)
    pipeline.verdict("yesterday's spill replayed (1,500 already in)", time.monotonic(), cleared)


def test_the_sinks_clickhouse_unavailable_for_a_while(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_sink()
    ledger = pipeline.ledger()
    base = recent()
    pipeline.emit(ledger, events(2000, base, "a", spread_s=30))
    assert ledger.flush(30), ledger.stats()
    wait_for(pipeline.stored_all, 120, "the first events stored", interval=0.5)
    pipeline.stop("sink")
    holder = subprocess.Popen(  # another process holds the data path: ClickHouse is away
        [
            sys.executable,
            "-c",
            "import sys; from tokenledger.streams.sink.client import get_client;"
            f"c = get_client('chdb://{pipeline.data}', 'tokenledger'); print('held', flush=True);"
            "sys.stdin.readline()",
        ],
        env=pipeline.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        pipeline.start_sink()
        away_until = time.monotonic() + OUTAGE_S
        i = 0
        while time.monotonic() < away_until:  # traffic keeps flowing meanwhile
            pipeline.emit(
                ledger, events(500, base + timedelta(seconds=30 + i), f"b{i}", spread_s=1)
            )
            i += 1
            time.sleep(1.0)  # pacing: 500 events a second
        assert ledger.flush(30), ledger.stats()
        log = (pipeline.tmp / "sink.log").read_text()
        assert "ClickHouse unavailable" in log
    finally:
        holder.communicate("\n", timeout=30)  # lets go of the data path; closes both pipes
    cleared = time.monotonic()
    ledger.close()
    wait_for(pipeline.stored_all, 240, "every event stored once ClickHouse is back", interval=0.5)
    pipeline.verdict(f"sink's ClickHouse away {OUTAGE_S:.0f}s", time.monotonic(), cleared)


def test_broker_restarted_under_load_and_the_sdk_cut_off_meanwhile(
    own_broker: LocalKafka, tmp_path: Path
) -> None:
    p = Pipeline(own_broker.bootstrap, tmp_path)
    try:
        p.start_worker()
        p.start_sink()
        ledger = p.ledger(delivery_timeout_ms=2000, retry_interval_s=0.5)
        base = recent()
        p.emit(ledger, events(3000, base, "before", spread_s=20))
        progress = p.worker_progress()
        wait_for(lambda: progress.committed() > 0, 60, "the worker's first commit", interval=0.01)
        progress.consumer.close()
        own_broker.stop()  # mid-stream: the broker goes while the worker and sink are busy
        away_until = time.monotonic() + OUTAGE_S
        i = 0
        while time.monotonic() < away_until:  # the SDK keeps emitting: spills, never blocks
            p.emit(ledger, events(200, base + timedelta(seconds=20 + i), f"during{i}", spread_s=1))
            i += 1
            time.sleep(1.0)  # pacing: 200 events a second
        own_broker.start()
        cleared = time.monotonic()
        assert ledger.flush(120), ledger.stats()
        assert ledger.stats()["spilled"] > 0
        for name in ("w1", "sink"):  # both rode the outage out: nothing restarted them
            assert p.procs[name].poll() is None, f"{name} exited; see {p.tmp / name}.log"
        ledger.close()
        wait_for(
            p.stored_all, 300, "every event processed and stored after the restart", interval=0.5
        )
        p.verdict(
            f"broker down {OUTAGE_S:.0f}s under load, SDK spilling", time.monotonic(), cleared
        )
    finally:
        p.stop_all()
