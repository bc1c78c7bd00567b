"""The same history gives the same alerts whatever the batches: the worker's processors
(offline) replay one history in batches of 1, 50 and 5,000 events and across a restore of
their state, after a warm-up; the alerts are identical and dated at the planted changes.
(tests/integration/test_alert_replay.py does the same through the worker on the broker.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers.alert_history import History, history, keys, problems
from tokenledger.contract.messages import Alert
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.streams.demo.offline import OfflineWorker
from tokenledger.streams.worker.state import ChangelogState

START = datetime(2026, 11, 20, 6, tzinfo=UTC)


def _offline(h: History, prices: PriceBook, batch: int, *, restart: bool = False) -> list[Alert]:
    """The warm-up in one feed, the rest in another (a backlog): batches of up to ``batch``
    events, however much event time they span; with ``restart``, the rest's second half
    goes to new processors on a copy of the committed state."""
    events: list[tuple[datetime, dict[str, Any]]] = [
        (datetime.fromisoformat(e["ts"]), e) for e in h.events
    ]
    cut = h.warmed_up()
    half = (cut + len(events)) // 2
    worker = OfflineWorker(prices=prices, batch=batch, max_batch_time=timedelta(days=1))
    worker.feed(events[:cut])
    if not restart:
        return worker.feed(events[cut:]).alerts
    alerts = list(worker.feed(events[cut:half]).alerts)
    copy = ChangelogState()
    for key, value in worker.state.data.items():
        copy.restore(key, value)
    again = OfflineWorker(prices=prices, batch=batch, max_batch_time=timedelta(days=1), state=copy)
    return alerts + again.feed(events[half:]).alerts


@pytest.fixture(scope="module")
def prices() -> PriceBook:
    return load_price_book()


def test_batches_and_a_restore_change_no_alert(prices: PriceBook) -> None:
    h = history(START)
    runs = {
        "batch 1": _offline(h, prices, 1),
        "batch 50": _offline(h, prices, 50),
        "batch 5000": _offline(h, prices, 5000),
        "restored": _offline(h, prices, 50, restart=True),
    }
    first = keys(runs["batch 1"])
    for name, alerts in runs.items():
        assert keys(alerts) == first, name
        assert len(alerts) == len(first), f"{name}: an alert published twice"
    for name, alerts in runs.items():
        assert problems(h, alerts) == [], name
    assert len(first) == 5


def test_alerts_carry_event_times_only(prices: PriceBook) -> None:
    """Issue times too: the end of the minute the detector judged, in event time."""
    h = history(START)
    one, many = _offline(h, prices, 1), _offline(h, prices, 5000)
    assert [a.model_dump() for a in one] == [a.model_dump() for a in many]
    assert {a.issued_at.second for a in one} == {0}
