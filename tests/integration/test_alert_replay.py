"""The same history gives the same alerts: replayed through the stream worker on the real
broker in batches of 1, 50 and 5,000 records, and with the worker killed and restarted in
the middle, the alerts are identical, and each dates its incident at the planted change."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.alert_history import History, history, keys, problems
from tests.helpers.kafka_io import produce, read_all_committed, wait_visible
from tests.helpers.workers import Workers
from tokenledger.contract import topics
from tokenledger.contract.messages import Alert

pytestmark = pytest.mark.integration


def _replay(
    bootstrap: str, tmp: Path, h: History, max_batch: int, *, restart: bool = False
) -> list[Alert]:
    """Every alert the worker publishes for ``h``: the warm-up's events first, the rest once
    those are processed (a backlog); with ``restart``, the worker is killed (SIGKILL) half-way
    through the rest and started again."""
    tmp.mkdir()
    pool = Workers(bootstrap, 3, tmp)
    try:
        proc = pool.start("w", max_batch=max_batch)
        pool.wait_topics()
        records = [(e["tenant_id"].encode(), json.dumps(e).encode()) for e in h.events]
        cut = h.warmed_up()
        enriched = pool.topic(topics.USAGE_ENRICHED)
        produce(bootstrap, pool.topic(topics.USAGE), records[:cut])
        wait_visible(bootstrap, enriched, cut, timeout=120)
        produce(bootstrap, pool.topic(topics.USAGE), records[cut:])
        if restart:
            wait_visible(bootstrap, enriched, (cut + len(records)) // 2, timeout=120)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc = pool.start("w", max_batch=max_batch)
        wait_visible(bootstrap, enriched, len(records), timeout=180)
        raw = read_all_committed(bootstrap, pool.topic(topics.ALERTS))
        return [Alert.model_validate_json(m.value()) for m in raw]
    finally:
        pool.stop_all()


def test_one_history_gives_the_same_alerts_at_any_batch_size_and_across_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    h = history(start)
    runs = {
        "max_batch 1": _replay(kafka_bootstrap, tmp_path / "b1", h, 1),
        "max_batch 50": _replay(kafka_bootstrap, tmp_path / "b50", h, 50),
        "max_batch 5000": _replay(kafka_bootstrap, tmp_path / "b5000", h, 5000),
        "restarted": _replay(kafka_bootstrap, tmp_path / "restart", h, 50, restart=True),
    }
    first = keys(runs["max_batch 1"])
    for name, alerts in runs.items():
        assert keys(alerts) == first, name
        assert len(alerts) == len(first), f"{name}: an alert published twice"
    for name, alerts in runs.items():
        assert problems(h, alerts) == [], name
    assert len(first) == 5  # three incidents, two of them resolved
