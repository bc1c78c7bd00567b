"""The signal_history query shows state changes, not the heartbeats that re-assert them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import factories
from tokenledger.contract.days import start_of_day
from tokenledger.contract.rows import SignalRow
from tokenledger.streams.analytics import queries
from tokenledger.streams.sink import migrations

pytestmark = pytest.mark.integration


def test_heartbeats_are_not_listed_as_changes(ch: Any) -> None:
    migrations.migrate(ch)
    now = datetime.now(UTC).replace(microsecond=0)
    day = start_of_day(now)
    beat = timedelta(seconds=10)
    history = [  # (issued, scope, state, pct, window start)
        (now - 30 * beat, "tenant/a", "warn", 50, day),
        (now - 29 * beat, "tenant/a", "warn", 50, day),  # heartbeat
        (now - 28 * beat, "tenant/a", "warn", 80, day),
        (now - 27 * beat, "tenant/a", "block", 100, day),
        (now - 26 * beat, "tenant/a", "block", 100, day),  # heartbeat
        (now - 25 * beat, "tenant/b", "block", 100, day),
        (now - 24 * beat, "tenant/a", "block", 100, day),  # heartbeat
        (now - 23 * beat, "tenant/a", "block", 100, day + timedelta(days=1)),  # next window
        (now - 22 * beat, "tenant/b", "block", 100, day),  # heartbeat
        (now - 21 * beat, "tenant/a", "allow", None, day + timedelta(days=1)),
    ]
    rows = [
        SignalRow.from_message(
            factories.signal(
                scope=scope,
                tenant_id=scope.split("/")[1],
                state=state,
                threshold_pct=pct,
                window_start=start,
                window_end=start + timedelta(days=1),
                issued_at=at,
            )
        )
        for at, scope, state, pct, start in history
    ]
    ch.insert(
        SignalRow.table, [[*r.values()] for r in rows], column_names=list(SignalRow.model_fields)
    )
    query = queries.get("signal_history")
    columns, result = queries.run(ch, query, query.bind({"start": "-1d"}))
    got = [(r[columns.index("scope")], r[columns.index("state")]) for r in result]
    assert got == [
        ("tenant/a", "warn"),
        ("tenant/a", "warn"),
        ("tenant/a", "block"),
        ("tenant/b", "block"),
        ("tenant/a", "block"),
        ("tenant/a", "allow"),
    ]
