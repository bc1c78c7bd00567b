"""Anomaly alerts from the stream workers on the real broker: one alert per incident, also
when its partition moves to another worker mid-incident."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.kafka_io import produce, read_committed, wait_visible
from tests.helpers.workers import Workers
from tokenledger.contract import topics
from tokenledger.contract.messages import Alert
from tokenledger.streams.demo.scenario import Incident, Scenario, Tenant, usage_events

pytestmark = pytest.mark.integration


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(kafka_bootstrap, 3, tmp_path)
    yield pool
    pool.stop_all()


def _records(events: list[tuple[datetime, dict[str, Any]]]) -> list[tuple[bytes | None, bytes]]:
    import json

    return [(e["tenant_id"].encode(), json.dumps(e).encode()) for _, e in events]


def _alerts(workers: Workers, at_least: int) -> list[Alert]:
    raw = read_committed(workers.bootstrap, workers.topic(topics.ALERTS), at_least, timeout=20)
    return [Alert.model_validate_json(m.value()) for m in raw]


def test_a_runaway_is_one_incident_across_a_worker_handover(workers: Workers) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=85)
    runaway = Incident(
        "runaway",
        "loop-co",
        start + timedelta(minutes=55, seconds=20),
        start + timedelta(minutes=65),
    )
    tenants = [
        Tenant("loop-co", 20_000, 12.0),
        Tenant("calm-co", 20_000, 12.0),
        Tenant("quiet-co", 5_000, 12.0),
    ]
    scenario = Scenario(tenants, start, 1, [runaway], seed=5, length=timedelta(minutes=80))
    events = list(usage_events(scenario))
    cut = next(i for i, (ts, _) in enumerate(events) if ts > runaway.start + timedelta(minutes=4))

    first = workers.start("a", max_batch=500)
    workers.wait_topics()
    produce(workers.bootstrap, workers.topic(topics.USAGE), _records(events[:cut]))
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), cut, timeout=120)
    fired = _alerts(workers, 1)
    assert [(a.detector, a.status, a.tenant_id) for a in fired] == [
        ("spend_rate", "firing", "loop-co")
    ]

    second = workers.start("b", max_batch=500)  # takes over every partition from "a"
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    produce(workers.bootstrap, workers.topic(topics.USAGE), _records(events[cut:]))
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), len(events), timeout=120)
    deadline = time.monotonic() + 30
    alerts = _alerts(workers, 2)
    while len(alerts) < 2 and time.monotonic() < deadline:
        alerts = _alerts(workers, 2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    # No other alert exists: each worker's own count of what it emitted, over its life.
    emitted = [
        {k: v for k, v in workers.counters(p).items() if k.startswith("alert.")}
        for p in (first, second)
    ]
    assert emitted == [{"alert.firing": 1}, {"alert.resolved": 1}]

    assert Counter((a.fingerprint, a.status) for a in alerts) == {
        (fired[0].fingerprint, "firing"): 1,
        (fired[0].fingerprint, "resolved"): 1,
    }
    resolved = next(a for a in alerts if a.status == "resolved")
    assert resolved.ends_at is not None and resolved.ends_at > runaway.end
    assert runaway.start - timedelta(minutes=1) <= fired[0].starts_at <= runaway.start


def test_a_model_switch_on_a_route_with_a_call_a_minute_is_one_model_mix_alert(
    workers: Workers,
) -> None:
    """Two hours of one call a minute on a small model, then the route moves to a model 20x
    its price for 45 minutes: one firing model_mix alert for that route, nothing else."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=170)
    events = []
    for i in range(165):
        model = "gpt-4.1-nano" if i < 120 else "gpt-4.1"
        e = factories.usage(
            tenant_id="tagger",
            feature="tagging",
            route="classify",
            model=model,
            provider="openai",
            input_tokens=450,
            output_tokens=12,
            cached_input_tokens=0,
            reasoning_tokens=0,
            ts=start + timedelta(minutes=i, seconds=17),
            request_id=f"r{i}",
            idempotency_key=f"k{i}",
        )
        events.append((e.ts, json.loads(e.model_dump_json())))
    proc = workers.start("mix", max_batch=20)
    workers.wait_topics()
    produce(workers.bootstrap, workers.topic(topics.USAGE), _records(events))
    wait_visible(workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), len(events), timeout=120)
    alerts = _alerts(workers, 1)
    assert [(a.detector, a.status, a.scope) for a in alerts] == [
        ("model_mix", "firing", "tenant/tagger/route/classify")
    ]
    fired = alerts[0]
    switched = start + timedelta(minutes=120)
    assert switched < fired.evidence.window_end <= switched + timedelta(minutes=30)
    assert fired.starts_at == switched  # the first minute with the expensive model's calls
    assert "priced calls" in fired.summary, fired.summary
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
