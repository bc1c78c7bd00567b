"""The worker's RocksDB state store: a restart replays only the changelog tail; a store
that is missing, unreadable or ahead of the changelog is rebuilt from it, never trusted;
the totals are those of an uninterrupted run either way."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import factories
from tests.helpers.clock import recent
from tests.helpers.kafka_io import produce, wait_visible
from tests.helpers.totals import check_exactly_once
from tests.helpers.workers import Workers
from tokenledger.contract import topics
from tokenledger.contract.messages import UsageEvent
from tokenledger.streams.worker.store import DiskState

pytestmark = pytest.mark.integration
PARTITIONS = 3


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(kafka_bootstrap, PARTITIONS, tmp_path)
    yield pool
    pool.stop_all()


def events(n: int, base: datetime, start: int = 0) -> list[UsageEvent]:
    return [
        factories.usage(
            tenant_id=f"tenant-{i % 9}",
            model=("gpt-4o", "gpt-4o-mini")[i % 2],
            provider="openai",
            input_tokens=400 + i % 991,
            cached_input_tokens=0,
            output_tokens=40 + i % 211,
            reasoning_tokens=0,
            ts=base + timedelta(milliseconds=i),
            idempotency_key=f"k-{i}",
        )
        for i in range(start, start + n)
    ]


def send(workers: Workers, batch: list[UsageEvent]) -> None:
    produce(
        workers.bootstrap,
        workers.topic(topics.USAGE),
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in batch],
    )


def first_run(workers: Workers, sent: list[UsageEvent], visible: int) -> subprocess.Popen[bytes]:
    """Worker w1 started on fresh topics with ``sent``, once ``visible`` are committed."""
    proc = workers.start("w1")
    workers.wait_topics()
    send(workers, sent)
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), visible)
    return proc


def stop(workers: Workers, proc: subprocess.Popen[bytes]) -> dict[str, int]:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    return workers.counters(proc)


def test_a_killed_worker_restarts_from_its_store_replaying_only_the_tail(
    workers: Workers,
) -> None:
    base = recent()
    first = events(4000, base)
    proc = first_run(workers, first, 1500)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    later = events(2000, base, start=4000)
    send(workers, later + first[:300])  # with redeliveries: the store must know their ids
    restarted = workers.start("w1")
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), 6000)
    counters = stop(workers, restarted)
    assert counters["state.reused_partitions"] == PARTITIONS
    assert "state.rebuilt_partitions" not in counters and "state.replayed_records" not in counters
    # the tail: what the killed worker committed after its stores' last applied offset
    # (here at most one transaction per partition), not the changelog
    assert 0 <= counters.get("state.tail_records", 0) < 3 * 50 * 3
    assert counters["redelivered"] == 300
    check_exactly_once(workers, first + later, base)


def test_missing_unreadable_and_ahead_stores_are_rebuilt_with_the_same_totals(
    workers: Workers,
) -> None:
    base = recent()
    first = events(3000, base)
    stop(workers, first_run(workers, first, 3000))
    stores = workers.state_dir("w1")
    assert sorted(p.name for p in stores.iterdir()) == ["0", "1", "2"]
    for p in stores.iterdir():  # a clean stop leaves every store applied
        state = DiskState(p)
        assert state.applied_offset() is not None
        state.close()
    # partition 0: deleted; 1: unreadable; 2: applied past the changelog's end
    import shutil

    shutil.rmtree(stores / "0")
    for f in (stores / "1").iterdir():
        if f.name.startswith(("MANIFEST", "CURRENT")):
            f.write_bytes(b"not a rocksdb manifest")
    ahead = DiskState(stores / "2")
    ahead.finish_restore(10**9)
    ahead.close()
    later = events(1500, base, start=3000)
    send(workers, later + first[:200])
    restarted = workers.start("w1")
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), 4500)
    counters = stop(workers, restarted)
    assert counters["state.rebuilt_partitions"] == PARTITIONS
    assert counters["state.replayed_records"] > 3000  # every key of the changelog again
    assert counters["redelivered"] == 200
    log = workers.logs[restarted.pid].read_text()
    assert "state of partition 1 cannot open the state store" in log
    assert "state of partition 2 ahead of the changelog: rebuilding it" in log
    check_exactly_once(workers, first + later, base)
