"""Benchmarks: each ``bench/bench_*.py`` has ``run() -> list[Figure]``; ``python -m bench``
runs them all, prints a table and writes ``$TOKENLEDGER_HOME/bench.json``.

Figure names are stable (``area.figure_unit``) so runs compare over time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def sample_us(fn: Callable[[], object], samples: int = 2000, batch: int = 50) -> list[float]:
    """Per-call wall time in microseconds, ``samples`` times, each the mean of ``batch`` calls."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        for _ in range(batch):
            fn()
        out.append((clock() - start) / batch / 1000)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextmanager
def local_broker() -> Iterator[tuple[str, Path]]:
    """A Kafka broker of its own on 127.0.0.1 for one benchmark: (bootstrap, a scratch
    folder that lives as long as the broker); stopped and removed afterwards."""
    from tokenledger.streams.config import Settings
    from tokenledger.streams.local.broker import LocalKafka, free_ports

    with tempfile.TemporaryDirectory() as tmp:
        port, controller = free_ports(2)
        broker = LocalKafka(
            Path(tmp) / "kafka", Settings.from_env().cache, port=port, controller_port=controller
        )
        broker.start()
        try:
            yield broker.bootstrap, Path(tmp)
        finally:
            broker.stop()


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) records as the SDK would (lz4, batched) and wait for them all."""
    from confluent_kafka import Producer

    from tokenledger.kafka_config import client_config

    producer = Producer(client_config(bootstrap, {"linger.ms": 20, "compression.type": "lz4"}))
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
