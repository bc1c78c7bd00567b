"""The worker's state on disk: its size, the memory it takes, and how long a worker needs
to be back after a SIGKILL (changelog tail) or with its store deleted (whole changelog).

- ``streams.state_bytes_per_event``: RocksDB size per remembered event after compaction
  (event id + idempotency key digests and their expiry index), 5M events of dedup state
  written in batches of 5000, as the worker commits them (in a process of its own).
- ``streams.rss_mb_after_5m_events`` / ``streams.rss_mb_after_1m_events``: that process's
  resident memory after 1M and after 5M events: flat, it does not follow the state.
- ``streams.memory_state_bytes_per_event``: the same in ``--state memory`` (a dict), from
  its resident growth over 500k events: what a 48 h window cost before.
- ``streams.rebuild_s``: a `tokenledger worker` started without a store over a changelog
  holding RESTART_EVENTS (5M) events of dedup state (the whole changelog replayed): seconds
  from the start until 1,000 new events are committed.
- ``streams.restart_s``: that worker SIGKILLed and restarted (its store reused, the tail
  replayed): the same seconds. ``streams.memory_restart_s``: the same with ``--state memory``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import Figure, local_broker, produce
from tokenledger.contract import topics
from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.topics import TopicSpec
from tokenledger.streams.admin.progress import Probe
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.local.processes import Supervisor

RESTART_EVENTS = 5_000_000
PARTITIONS = 3


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_disk(events: int, folder: str) -> dict[str, float]:
    """In this process: ``events`` ids through Dedup on a DiskState, committed per 5000."""
    from tokenledger.streams.worker.dedup import Dedup
    from tokenledger.streams.worker.store import DiskState

    state = DiskState(Path(folder) / "p")
    dedup = Dedup(state)
    base = int(time.time() * 1000)
    out = {}
    for start in range(0, events, 5000):
        for i in range(start, start + 5000):
            ident = f"{i:032x}"
            dedup.remember(dedup.decide("bench", ident, ident), base + i)
        state.changes()
        state.applied(start)
        if start + 5000 == 1_000_000:
            out["rss_1m"] = _rss_mb()
    out["rss"] = _rss_mb()
    state.db.compact_range(None, None)
    state.close()
    size = sum(f.stat().st_size for f in (Path(folder) / "p").rglob("*") if f.is_file())
    out["bytes_per_event"] = size / events
    return out


def measure_memory(events: int) -> dict[str, float]:
    from tokenledger.streams.worker.dedup import Dedup
    from tokenledger.streams.worker.state import ChangelogState

    state = ChangelogState()
    dedup = Dedup(state)
    before = _rss_mb()
    for i in range(events):
        ident = f"{i:032x}"
        dedup.remember(dedup.decide("bench", ident, ident), i)
    state.changes()
    return {"bytes_per_event": (_rss_mb() - before) * 1024 * 1024 / events}


def _in_child(kind: str, events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_state",
                kind,
                str(events),  # noqa: S603
                folder,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout)


def _usage(i: int, base: datetime) -> bytes:
    return (
        UsageEvent(
            event_id=uuid.uuid4().hex,
            request_id=f"r{i}",
            idempotency_key=uuid.uuid4().hex,
            ts=base + timedelta(milliseconds=i % 60_000),
            tenant_id=f"t{i % 40}",
            service="bench",
            feature=f"f{i % 4}",
            model="gpt-4o-mini",
            provider="openai",
            input_tokens=900,
            output_tokens=90,
            latency_ms=500,
            success=True,
        )
        .model_dump_json()
        .encode()
    )


def _events(n: int) -> Iterator[tuple[bytes, bytes]]:
    base = datetime.now(UTC) - timedelta(minutes=2)
    return ((f"t{i % 40}".encode(), _usage(i, base)) for i in range(n))


def _back_after(
    settings: Settings,
    env: dict[str, str],
    state: str,
    probe: Probe,
    stop: signal.Signals = signal.SIGTERM,
) -> float:
    """Seconds from starting the worker until 1,000 new events are committed; then the
    worker is stopped with ``stop``. Its output goes to ``$TOKENLEDGER_HOME/worker.log``."""
    produce(settings.kafka, settings.topic(topics.USAGE), _events(1000))
    with Supervisor(Path(env["TOKENLEDGER_HOME"]), env, grace_s=60) as children:
        started = time.monotonic()
        children.start(
            "worker", _worker_argv(state), append=True, ready=probe.caught_up, timeout_s=900
        )
        back = time.monotonic() - started
        if stop == signal.SIGKILL:
            children.kill("worker")
        else:
            children.stop("worker")
    return back


def _worker_argv(state: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tokenledger.streams.cli",
        "worker",
        "--instance",
        "b1",
        "--max-batch",
        "5000",
        "--state",
        state,
    ]


def seed_changelog(settings: Settings, events: int) -> None:
    """The changelog records ``events`` remembered events leave behind (an event-id and an
    idempotency-key digest each, seen an hour ago), spread over the partitions by key:
    state to restore without running that many events through a worker first."""
    from tokenledger.streams.worker.state_keys import EVENT_ID, GENERATION, scoped_key

    ts = str(int(time.time() * 1000) - 3_600_000).encode()
    records = (
        (scoped_key(kind, f"t{i % 40}", f"{kind.prefix}{i}").encode(), ts)
        for i in range(events)
        for kind in (EVENT_ID, GENERATION)
    )
    produce(settings.kafka, settings.topic(topics.WORKER_CHANGELOG), records)


def restarts(bootstrap: str, home: Path) -> list[Figure]:
    env = {
        **os.environ,
        "TOKENLEDGER_KAFKA": bootstrap,
        "TOKENLEDGER_HOME": str(home),
        "TOKENLEDGER_TOPIC_NAMESPACE": f"st{uuid.uuid4().hex[:6]}",
        "TOKENLEDGER_PARTITIONS": str(PARTITIONS),
    }
    settings = Settings.from_env(env)
    create_topics(
        bootstrap,
        [TopicSpec(settings.topic(t.name), t.compacted, t.configs) for t in topics.TOPICS],
        PARTITIONS,
        1,
    )
    seed_changelog(settings, RESTART_EVENTS)
    probe = Probe(settings, settings.topic("tokenledger-worker"), settings.topic(topics.USAGE))
    rebuild = _back_after(settings, env, "disk", probe, signal.SIGKILL)  # no store yet
    restart = _back_after(settings, env, "disk", probe, signal.SIGKILL)
    memory = _back_after(settings, env, "memory", probe)
    probe.consumer.close()
    note = f"SIGKILL with {RESTART_EVENTS:,} events of state, back to processing"
    return [
        Figure("streams.restart_s", restart, "s", note + " (changelog tail)"),
        Figure("streams.rebuild_s", rebuild, "s", "the same, no store (whole changelog)"),
        Figure("streams.memory_restart_s", memory, "s", "the same, --state memory"),
    ]


def run() -> list[Figure]:
    disk = _in_child("disk", 5_000_000)
    memory = _in_child("memory", 500_000)
    figures = [
        Figure(
            "streams.state_bytes_per_event",
            disk["bytes_per_event"],
            "B",
            "RocksDB after compaction, 5M events of dedup state",
        ),
        Figure("streams.rss_mb_after_1m_events", disk["rss_1m"], "MB", "state process"),
        Figure("streams.rss_mb_after_5m_events", disk["rss"], "MB", "the same after 5M"),
        Figure(
            "streams.memory_state_bytes_per_event",
            memory["bytes_per_event"],
            "B",
            "--state memory: resident growth per event",
        ),
    ]
    with local_broker() as (bootstrap, tmp):
        figures += restarts(bootstrap, tmp / "home")
    return figures


if __name__ == "__main__":
    kind, count, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    result = measure_disk(count, where) if kind == "disk" else measure_memory(count)
    print(json.dumps(result))
