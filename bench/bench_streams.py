"""Stream worker throughput next to a bare consume + parse loop, and block latency.

- ``streams.events_per_s``: usage events through validate, dedup, price, windows, budgets
  and the transactional commit, one worker, measured from its first batch to the last.
- ``streams.bare_loop_events_per_s``: a plain confluent-kafka consume + JSON parse loop over
  the same topic, in the same run: the ratio is the figure to watch.
- ``streams.engine_forward_events_per_s`` / ``streams.engine_validate_events_per_s``: the same
  transactional engine with a task that only forwards each record (after validating it as
  a UsageEvent, for the second): the ceiling any worker logic starts from.
- ``streams.block_latency_*``: from the produce of the usage event that crosses a tenant's
  limit to a BudgetGuard reporting that tenant blocked, under steady background traffic.
- ``breaker.open_ms`` / ``breaker.open_p99_ms``: from the produce of a burst of failed calls
  (enough to open a circuit breaker) to every one of several BudgetGuards refusing calls to
  that route x provider x model, under the same background traffic.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import Figure, local_broker, median, p99, produce
from tokenledger import BudgetGuard
from tokenledger.contract import topics
from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.topics import TopicSpec
from tokenledger.kafka_config import client_config
from tokenledger.streams.admin import budgets as budget_admin
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.records import Output, Rejection
from tokenledger.streams.worker import service as worker
from tokenledger.streams.worker.engine import EngineConfig, TransactionalEngine
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.validate import parse

EVENTS = 60_000
BACKGROUND_RATE = 2_000
BLOCK_SAMPLES = 40
BREAKER_SAMPLES = 20
GUARDS = 3


def usage(tenant: str, i: int, model: str | None = None, success: bool = True) -> bytes:
    return (
        UsageEvent(
            event_id=uuid.uuid4().hex,
            request_id=f"r-{i}",
            idempotency_key=f"r-{i}",
            ts=datetime.now(UTC) - timedelta(seconds=1),
            tenant_id=tenant,
            user_scope="u",
            service="bench",
            feature=f"f{i % 4}",
            route="rag",
            prompt_version="v1",
            model=model or ("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5")[i % 3],
            provider="x",
            input_tokens=3000 + i % 500,
            output_tokens=300 + i % 200,
            cached_input_tokens=1024,
            latency_ms=800,
            success=success,
        )
        .model_dump_json()
        .encode()
    )


def run() -> list[Figure]:
    with local_broker() as (bootstrap, _):
        return (
            throughput(bootstrap)
            + two_workers(bootstrap)
            + block_latency(bootstrap)
            + breaker_open(bootstrap)
        )


def _settings(bootstrap: str, partitions: int) -> Settings:
    return Settings.from_env(
        {
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}",
            "TOKENLEDGER_PARTITIONS": str(partitions),
        }
    )


def throughput(bootstrap: str) -> list[Figure]:
    """The worker with its state on disk (the default) and in memory, each over EVENTS
    events of its own topics, and a bare consume + parse loop over the first's."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    with tempfile.TemporaryDirectory() as home:
        settings = _loaded(bootstrap, Path(home))
        rate = _worker_rate(settings, "disk")
    source = settings.topic(topics.USAGE)
    consumer = Consumer(client_config(bootstrap, {"group.id": "bare", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(source, 0, OFFSET_BEGINNING)])
    seen, started = 0, time.perf_counter()
    while seen < EVENTS:
        for m in consumer.consume(2000, 1.0):
            json.loads(m.value() or b"null")
            seen += 1
    bare = EVENTS / (time.perf_counter() - started)
    consumer.close()
    with tempfile.TemporaryDirectory() as home:
        memory = _worker_rate(_loaded(bootstrap, Path(home)), "memory")
    forward, validated = (_engine_rate(bootstrap, settings, check) for check in (False, True))
    return [
        Figure(
            "streams.events_per_s",
            rate,
            "ev/s",
            "one worker, whole chain, exactly once, state in RocksDB",
        ),
        Figure("streams.bare_loop_events_per_s", bare, "ev/s", "consume + json.loads"),
        Figure("streams.ratio_to_bare", rate / bare, "x", "whole chain / bare loop"),
        Figure("streams.memory_state_events_per_s", memory, "ev/s", "the same, --state memory"),
        Figure(
            "streams.engine_forward_events_per_s",
            forward,
            "ev/s",
            "the transactional engine forwarding each record as it is: no task work",
        ),
        Figure(
            "streams.engine_validate_events_per_s",
            validated,
            "ev/s",
            "the same, each record validated as a UsageEvent first",
        ),
    ]


class _Forward:
    """A task that forwards each usage record to the enriched topic unchanged, after
    validating it when ``check``: what the engine costs without the worker's logic."""

    def __init__(self, state: State, topic: str, check: bool) -> None:
        self.state, self.topic, self.check = state, topic, check
        self.counters: Counter[str] = Counter()

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> list[Output]:
        if self.check and isinstance(parse(value, UsageEvent, now), Rejection):
            self.counters["rejected"] += 1
            return []
        return [Output(self.topic, key, value or b"")]

    def end_batch(self, now: datetime) -> list[Output]:
        return []


def _engine_rate(bootstrap: str, settings: Settings, check: bool) -> float:
    """Events per second of the engine with a forwarding task over the usage topic of
    ``settings`` (already loaded), in a group of its own."""
    name = f"forward{int(check)}"
    target = settings.topic(name)
    create_topics(bootstrap, [TopicSpec(target, False, {})], 1, 1)
    config = EngineConfig(
        group_id=target,
        inputs=(settings.topic(topics.USAGE),),
        changelog=settings.topic(topics.WORKER_CHANGELOG),
        instance_id=name,
        bootstrap=bootstrap,
        max_batch=5000,
    )
    engine = TransactionalEngine(config, lambda p, state: _Forward(state, target, check))
    return _timed_run(engine)


def _loaded(bootstrap: str, home: Path) -> Settings:
    """Settings of a fresh namespace whose usage topic holds EVENTS events."""
    from dataclasses import replace

    settings = replace(_settings(bootstrap, 1), home=home)
    create_topics(
        bootstrap,
        [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
        1,
        1,
    )
    produce(
        bootstrap,
        settings.topic(topics.USAGE),
        [(f"t{i % 50}".encode(), usage(f"t{i % 50}", i)) for i in range(EVENTS)],
    )
    return settings


def _worker_rate(settings: Settings, state: str) -> float:
    """Events per second of one worker through the settings' usage topic."""
    return _timed_run(worker.build(settings, "bench", max_batch=5000, state=state))


def _timed_run(engine: TransactionalEngine) -> float:
    """Events per second of ``engine`` from its first committed batch to EVENTS."""
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    deadline = time.perf_counter() + 300
    while engine.records == 0:
        if not thread.is_alive() or time.perf_counter() > deadline:
            raise AssertionError("the worker stopped (or never committed) before its first batch")
        time.sleep(0.001)
    first, started = engine.records, time.perf_counter()
    deadline = started + 600
    while engine.records < EVENTS and time.perf_counter() < deadline:
        time.sleep(0.005)
    rate = (engine.records - first) / (time.perf_counter() - started)
    engine.stop()
    thread.join(30)
    return rate


def two_workers(bootstrap: str) -> list[Figure]:
    """Two `tokenledger worker` processes over six partitions, 2 x EVENTS events: from the
    first committed batch to the last."""
    from bench.processes import Stage, rate_until
    from tokenledger.streams.admin.progress import Probe

    with tempfile.TemporaryDirectory() as home:
        stage = Stage(bootstrap, Path(home), 6)
        settings, total = stage.settings, 2 * EVENTS
        produce(
            bootstrap,
            settings.topic(topics.USAGE),
            [(f"t{i % 60}".encode(), usage(f"t{i % 60}", i)) for i in range(total)],
        )
        probe = Probe(settings, settings.topic(worker.GROUP), settings.topic(topics.USAGE))
        try:
            for name in ("w1", "w2"):
                stage.start("worker", name)
            rate = rate_until(stage, probe, total)
        finally:
            stage.stop()
            probe.consumer.close()
    return [
        Figure(
            "streams.two_worker_events_per_s",
            rate,
            "ev/s",
            "two worker processes, six partitions, state on disk",
        )
    ]


def _background(bootstrap: str, source: str, stop: threading.Event) -> threading.Thread:
    """BACKGROUND_RATE usage events a second to ``source`` until ``stop``."""
    from confluent_kafka import Producer

    def run() -> None:
        producer = Producer(client_config(bootstrap, {"linger.ms": 5}))
        i, started = 0, time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - started) * BACKGROUND_RATE)
            while i < due:
                producer.produce(source, usage(f"bg{i % 40}", i), f"bg{i % 40}".encode())
                i += 1
            producer.poll(0)
            time.sleep(0.002)
        producer.flush(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def breaker_open(bootstrap: str) -> list[Figure]:
    """Per sample a tenant of its own sends 20 failed calls at once (the default breaker
    opens at 50% of at least 20 in a minute); timed until all GUARDS guards refuse."""
    from confluent_kafka import Producer

    settings = _settings(bootstrap, 3)
    engine = worker.build(settings, "breakers")
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    guards = [
        BudgetGuard(bootstrap=bootstrap, topic=settings.topic(topics.SIGNALS)).start()
        for _ in range(GUARDS)
    ]
    for guard in guards:
        guard.wait_ready(60)
    stop = threading.Event()
    source = settings.topic(topics.USAGE)
    traffic = _background(bootstrap, source, stop)
    time.sleep(2)  # let the background rate settle before sampling
    producer = Producer(client_config(bootstrap, {"linger.ms": 0}))
    latencies = []
    for s in range(BREAKER_SAMPLES):
        tenant = f"brk-{s}"
        sent = time.perf_counter()
        for i in range(20):
            producer.produce(source, usage(tenant, i, "gpt-4o", success=False), tenant.encode())
        producer.poll(0)
        waiting = list(guards)
        while waiting:
            waiting = [
                g
                for g in waiting
                if g.check(tenant, route="rag", provider="x", model="gpt-4o").allowed
            ]
            if time.perf_counter() - sent > 30:
                raise AssertionError(f"{tenant}'s breaker was not open at every guard in 30 s")
            time.sleep(0.0005)
        latencies.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.25)
    stop.set()
    traffic.join(30)
    for guard in guards:
        guard.close()
    engine.stop()
    thread.join(30)
    note = f"{BREAKER_SAMPLES} failure bursts to all {GUARDS} guards refusing"
    return [
        Figure("breaker.open_ms", median(latencies), "ms", f"median; {note}"),
        Figure(
            "breaker.open_p99_ms", p99(latencies), "ms", f"{note}, under {BACKGROUND_RATE} ev/s"
        ),
    ]


def block_latency(bootstrap: str) -> list[Figure]:
    from confluent_kafka import Producer

    settings = _settings(bootstrap, 3)
    for i in range(BLOCK_SAMPLES):  # each blocked by its first gpt-4o call (~$0.009 > $0.001)
        budget_admin.put(
            settings, budget_admin.make_budget(f"blk-{i}", None, "0.001", "day", "UTC", "50")
        )
    engine = worker.build(settings, "latency")
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    guard = BudgetGuard(bootstrap=bootstrap, topic=settings.topic(topics.SIGNALS)).start()
    guard.wait_ready(60)
    stop = threading.Event()
    source = settings.topic(topics.USAGE)
    traffic = _background(bootstrap, source, stop)
    time.sleep(2)  # let the background rate settle before sampling
    producer = Producer(client_config(bootstrap, {"linger.ms": 0}))
    latencies = []
    for i in range(BLOCK_SAMPLES):
        tenant = f"blk-{i}"
        sent = time.perf_counter()
        producer.produce(source, usage(tenant, i, model="gpt-4o"), tenant.encode())
        producer.poll(0)
        while guard.check(tenant).allowed:
            if time.perf_counter() - sent > 30:
                raise AssertionError(f"{tenant} was not blocked within 30 s")
            time.sleep(0.0005)
        latencies.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.25)
    stop.set()
    traffic.join(30)
    guard.close()
    engine.stop()
    thread.join(30)
    return [
        Figure(
            "streams.block_latency_p50_ms",
            median(latencies),
            "ms",
            f"{BLOCK_SAMPLES} crossings under {BACKGROUND_RATE} ev/s",
        ),
        Figure("streams.block_latency_p99_ms", p99(latencies), "ms", "target < 1000"),
    ]
