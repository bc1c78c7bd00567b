"""The whole pipeline for fault tests: the SDK in this process; stream workers and the
sink as `tokenledger` subprocesses on their own embedded ClickHouse path; ClickHouse read
by a separate process (one process per data path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.pricing_oracle import expected_cost
from tokenledger.contract import topics
from tokenledger.contract.messages import UsageEvent
from tokenledger.ledger import Ledger, TopicNames
from tokenledger.streams.admin.progress import Probe
from tokenledger.streams.config import Settings
from tokenledger.streams.local.processes import Supervisor

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")
FIGURES: list[dict[str, Any]] = []
"""One row per fault run; printed as a table at the end of the session (conftest.py)."""


@dataclass
class Stored:
    rows: int  # physical rows (no FINAL): a duplicate insert would show here
    unique: int
    cost: int  # FINAL, what the queries read
    rollup_events: int  # spend_by_minute: sums, so a duplicate would count twice
    rollup_cost: int


class Pipeline:
    def __init__(self, bootstrap: str, tmp: Path, *, partitions: int = 3) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.namespace = f"f{uuid.uuid4().hex[:10]}"
        self.data = tmp / "ch"
        self.env = {
            **os.environ,
            "TOKENLEDGER_KAFKA": bootstrap,
            "TOKENLEDGER_TOPIC_NAMESPACE": self.namespace,
            "TOKENLEDGER_PARTITIONS": str(partitions),
            "TOKENLEDGER_CLICKHOUSE": f"chdb://{self.data}",
            "TOKENLEDGER_HOME": str(tmp),
        }
        self.settings = Settings.from_env(self.env)
        self.children = Supervisor(tmp, self.env, grace_s=30)
        self.sent: dict[str, UsageEvent] = {}
        self.started = time.monotonic()
        subprocess.run(
            [TOKENLEDGER, "topics", "create"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [TOKENLEDGER, "migrate"], env=self.env, check=True, capture_output=True, timeout=120
        )

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    # -- processes -------------------------------------------------------------------------

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        """The processes started and not stopped yet, by name."""
        return {name: child.proc for name, child in self.children.children.items()}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``tokenledger *args`` as ``name``, its output appended to ``<tmp>/<name>.log``."""
        return self.children.start(name, [TOKENLEDGER, *args], append=True).proc

    def start_worker(self, instance: str = "w1") -> None:
        self.start(instance, "worker", "--instance", instance, "--max-batch", "200")

    def start_sink(self) -> None:
        self.start("sink", "sink", "--max-rows", "500", "--max-wait", "0.2")

    def kill(self, name: str) -> None:
        self.children.kill(name)

    def stop(self, name: str) -> None:
        code = self.children.stop(name, grace_s=60)[name]
        assert code == 0, f"{name} did not stop cleanly; see {self.tmp / name}.log"

    def stop_all(self) -> dict[str, int]:
        """Stop what still runs (SIGTERM, then SIGKILL after 30 s), the last started first;
        their exit codes. A process that exited by itself before this is a failure (checked
        in ``verdict``), never silently restarted."""
        return self.children.stop()

    # -- traffic ---------------------------------------------------------------------------

    def ledger(self, **options: Any) -> Ledger:
        names = TopicNames(
            requests=self.topic(topics.REQUESTS),
            usage=self.topic(topics.USAGE),
            outcomes=self.topic(topics.OUTCOMES),
        )
        options.setdefault("spill_dir", self.tmp / "spill")
        options.setdefault("bootstrap", self.bootstrap)
        return Ledger("faults", topics=names, **options)

    def emit(self, ledger: Ledger, events: list[UsageEvent]) -> None:
        for e in events:
            ledger.emit(e)
            self.sent[e.event_id] = e

    # -- progress and the verdict ----------------------------------------------------------

    def worker_progress(self) -> Probe:
        """The worker group's committed usage offsets (close its consumer when done)."""
        return Probe(self.settings, self.topic("tokenledger-worker"), self.topic(topics.USAGE))

    def emitted_usage_offsets(self) -> int:
        """The usage topic's end offsets, summed: where the worker's commits will reach."""
        probe = self.worker_progress()
        try:
            return probe.end()
        finally:
            probe.consumer.close()

    def processed(self) -> bool:
        probe = Probe(self.settings, self.topic("tokenledger-worker"), self.topic(topics.USAGE))
        try:
            return probe.caught_up()
        finally:
            probe.consumer.close()

    def stored_all(self) -> bool:
        probe = Probe(
            self.settings, self.topic("tokenledger-sink"), self.topic(topics.USAGE_ENRICHED)
        )
        try:
            return self.processed() and probe.caught_up()
        finally:
            probe.consumer.close()

    def stored(self) -> Stored:
        script = (
            "import json, os; from tokenledger.streams.sink.client import get_client;"
            "c = get_client(os.environ['TOKENLEDGER_CLICKHOUSE'], 'tokenledger');"
            "q = lambda s: int(c.command(s));"
            "print(json.dumps([q('SELECT count() FROM usage_events'),"
            " q('SELECT uniqExact(event_id) FROM usage_events'),"
            " q('SELECT sum(ifNull(cost_nusd, 0)) FROM usage_events FINAL'),"
            " q('SELECT sum(events) FROM spend_by_minute'),"
            " q('SELECT sum(cost_nusd) FROM spend_by_minute')]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return Stored(*json.loads(done.stdout.strip().splitlines()[-1]))

    def verdict(self, fault: str, recovered_at: float, cleared_at: float) -> None:
        """Stop everything, read ClickHouse, record the figures, and check them."""
        died = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert died == {}, f"exited during the run: {died}; logs in {self.tmp}"
        codes = self.stop_all()
        assert set(codes.values()) == {0}, f"unclean stop: {codes}; logs in {self.tmp}"
        s = self.stored()
        sent = len(self.sent)
        cost = sum(0 if e.cache != "none" else expected_cost(e) for e in self.sent.values())
        row = {
            "fault": fault,
            "sent": sent,
            "stored": s.unique,
            "lost": sent - s.unique,
            "double_counted": max(s.rows - s.unique, s.rollup_events - sent, 0),
            "recovery_s": round(recovered_at - cleared_at, 1),
        }
        FIGURES.append(row)
        assert (s.unique, s.rows, s.rollup_events) == (sent, sent, sent), row
        assert (s.cost, s.rollup_cost) == (cost, cost), row
