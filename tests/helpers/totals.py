"""What a run of the workers must have produced: every event enriched exactly once, at its
price, and each tenant's day window equal to the sum of its events."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from tests.helpers.kafka_io import changelog_windows, read_committed
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.workers import Workers
from tokenledger.contract import topics
from tokenledger.contract.messages import EnrichedUsage, UsageEvent
from tokenledger.streams.worker.windows import window_start


def check_exactly_once(workers: Workers, events: list[UsageEvent], base: datetime) -> None:
    """``events`` (all at ``base``'s day, none late) are in the enriched topic once each,
    costs and day windows exact."""
    out = [
        EnrichedUsage.model_validate_json(m.value())
        for m in read_committed(
            workers.bootstrap, workers.topic(topics.USAGE_ENRICHED), len(events)
        )
    ]
    ids = Counter(e.event_id for e in out)
    assert len(out) == len(events), f"{len(out)} stored for {len(events)} sent"
    assert set(ids) == {e.event_id for e in events} and max(ids.values()) == 1
    assert sum(e.cost_nusd or 0 for e in out) == sum(map(expected_cost, events))
    windows = changelog_windows(workers.bootstrap, workers.topic(topics.WORKER_CHANGELOG))
    day = window_start(int(base.timestamp() * 1000), "day")
    for tenant in sorted({e.tenant_id for e in events}):
        mine = [e for e in events if e.tenant_id == tenant]
        assert windows[f"w:day:t={tenant}:{day}"] == (sum(map(expected_cost, mine)), len(mine), 0)
