"""`make soak`: sustained load through the whole pipeline for a bounded time.

Emits usage events through the SDK at a fixed rate (TOKENLEDGER_SOAK_RATE, 3,000) for
TOKENLEDGER_SOAK_SECONDS (600) into a local broker it starts on free ports, with one
stream worker and the sink as subprocesses on an embedded ClickHouse. Every 10 seconds it
prints the worker's and the sink's lag and their memory (RSS); at the end: memory of each
over the second half against the midpoint (the worker's must stay within 10%, else the soak
exits 1: its state is on disk and windows expire in event time, so it must not follow the
number of events remembered under the 48 h dedup window) and end-to-end
freshness, event produced to row stored (the sink commits a Kafka offset only after the
rows are in ClickHouse, so a committed offset means queryable), median and p99.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import median, p99
from tokenledger.contract import topics
from tokenledger.ledger import Ledger, TopicNames
from tokenledger.streams.admin.progress import Probe
from tokenledger.streams.config import Settings
from tokenledger.streams.local.broker import LocalKafka, free_ports
from tokenledger.streams.local.processes import Supervisor

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flat(samples: list[float], tolerance: float = 0.10) -> tuple[float, float, float, bool]:
    """Memory over the second half of the soak against its midpoint sample: (midpoint,
    lowest, highest, every later sample within ``tolerance`` of the midpoint)."""
    middle = samples[len(samples) // 2]
    later = samples[len(samples) // 2 :]
    low, high = min(later), max(later)
    return middle, low, high, all(abs(v - middle) <= tolerance * middle for v in later)


def main() -> int:
    rate = int(os.environ.get("TOKENLEDGER_SOAK_RATE") or 3000)
    seconds = float(os.environ.get("TOKENLEDGER_SOAK_SECONDS") or 600)
    tmp = Path(tempfile.mkdtemp(prefix="tokenledger-soak-"))
    port, controller = free_ports(2)
    broker = LocalKafka(
        tmp / "kafka", Settings.from_env().cache, port=port, controller_port=controller
    )
    print(
        f"soak: {rate:,} events/s for {seconds:.0f}s (worker --dedup-hours "
        f"{os.environ.get('TOKENLEDGER_SOAK_DEDUP_HOURS') or '48'}); state in {tmp}",
        file=sys.stderr,
    )
    broker.start()
    env = {
        **os.environ,
        "TOKENLEDGER_KAFKA": broker.bootstrap,
        "TOKENLEDGER_HOME": str(tmp),
        "TOKENLEDGER_CLICKHOUSE": f"chdb://{tmp / 'ch'}",
        "TOKENLEDGER_PARTITIONS": "3",
    }
    settings = Settings.from_env(env)
    children = Supervisor(tmp, env, grace_s=60)
    try:
        for args in (["topics", "create"], ["migrate"]):
            subprocess.run([TOKENLEDGER, *args], env=env, check=True, capture_output=True)  # noqa: S603
        dedup = os.environ.get("TOKENLEDGER_SOAK_DEDUP_HOURS") or "48"
        for name, args in (
            ("worker", ["worker", "--instance", "soak-1", "--dedup-hours", dedup]),
            ("sink", ["sink", "--max-wait", "0.5"]),
        ):
            children.start(name, [TOKENLEDGER, *args])
        names = TopicNames(requests=topics.REQUESTS, usage=topics.USAGE, outcomes=topics.OUTCOMES)
        ledger = Ledger("soak", bootstrap=broker.bootstrap, topics=names, spill_dir=tmp / "spill")
        from tests.helpers import factories

        emitted_at: list[float] = []  # event number -> when emit() was called
        # Where every 100th event landed on the enriched topic: (partition, offset) -> number.
        # The sink commits an offset only after its rows are in ClickHouse: once the sink's
        # committed offset passes it, that event is queryable.
        landed: dict[tuple[int, int], int] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def tail() -> None:
            from confluent_kafka import Consumer

            c = Consumer(
                {
                    "bootstrap.servers": broker.bootstrap,
                    "group.id": "soak-tail",
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                }
            )
            c.subscribe([topics.USAGE_ENRICHED])
            while not stop.is_set():
                for m in c.consume(1000, 0.2):
                    value, partition = m.value(), m.partition()
                    if m.error() is None and value is not None and partition is not None:
                        number = int(json.loads(value)["event_id"][1:])
                        if number % 100 == 0:
                            with lock:
                                landed[(partition, m.offset() or 0)] = number
            c.close()

        tailer = threading.Thread(target=tail, daemon=True)
        tailer.start()

        worker = Probe(settings, "tokenledger-worker", topics.USAGE)
        sink = Probe(settings, "tokenledger-sink", topics.USAGE_ENRICHED)
        memory: dict[str, list[float]] = defaultdict(list)
        fresh: list[float] = []
        began = time.monotonic()
        sent = 0
        next_report = began + 10
        next_check = began + 1
        event_time = datetime.now(UTC) - timedelta(minutes=1)
        while time.monotonic() - began < seconds:
            due = int((time.monotonic() - began) * rate)
            while sent < due:
                emitted_at.append(time.monotonic())
                ledger.emit(
                    factories.usage(
                        tenant_id=f"tenant-{sent % 50}",
                        feature=f"f{sent % 4}",
                        ts=event_time + timedelta(milliseconds=sent * 1000 // rate),
                        idempotency_key=f"s{sent}",
                        event_id=f"s{sent}",
                    )
                )
                sent += 1
            if time.monotonic() >= next_check:
                next_check += 1
                committed = {
                    (tp.partition): tp.offset
                    for tp in sink.consumer.committed(sink.partitions, timeout=5)
                }
                now = time.monotonic()
                with lock:
                    done = [k for k in landed if k[1] < committed.get(k[0], -1)]
                    fresh += [now - emitted_at[landed.pop(k)] for k in done]
            if time.monotonic() >= next_report:
                next_report += 10
                now = time.monotonic()
                for name, child in children.children.items():
                    memory[name].append(rss_mb(child.pid))
                w_lag = worker.end() - max(worker.committed(), 0)
                s_lag = sink.end() - max(sink.committed(), 0)
                print(
                    f"  t={now - began:5.0f}s sent {sent:>9,} | worker lag {w_lag:>8,} | "
                    f"sink lag {s_lag:>8,} | rss worker {memory['worker'][-1]:.0f} MB, "
                    f"sink {memory['sink'][-1]:.0f} MB",
                    file=sys.stderr,
                )
            time.sleep(0.01)
        ledger.close()
        stop.set()
        tailer.join(10)
        print(f"\nsoak over {seconds:.0f}s at {rate:,} events/s: {sent:,} events")
        steady = True
        for name, values in memory.items():
            if len(values) >= 2:
                middle, low, high, ok = flat(values)
                steady = steady and (ok or name != "worker")
                print(
                    f"  {name:<7} rss first {values[0]:.0f} MB, at {seconds / 2:.0f}s "
                    f"{middle:.0f} MB, after that {low:.0f}-{high:.0f} MB "
                    f"({'flat' if ok else 'NOT flat'}: within 10% of the midpoint), "
                    f"last {values[-1]:.0f} MB"
                )
        if fresh:
            print(
                f"  freshness (emitted -> stored, every 100th event, checked each second, "
                f"so up to 1 s high): median "
                f"{median(fresh):.2f}s, p99 {p99(fresh):.2f}s over {len(fresh):,} events"
            )
        print(
            f"  final lag: worker {worker.end() - max(worker.committed(), 0):,}, "
            f"sink {sink.end() - max(sink.committed(), 0):,}"
        )
        if not steady:
            print("soak: the worker's memory kept growing after the midpoint", file=sys.stderr)
        return 0 if steady else 1
    finally:
        children.stop(together=True)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
