"""ClickHouse stores exactly the model's row from the sink's JSONEachRow lines: the same
usage events written once as the lines (worker records passed on as they are, older
records with defaults, rows the full model read) and once as the model's row values
through clickhouse-connect read back identical, column by column."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.helpers import factories
from tokenledger.contract.messages import EnrichedUsage
from tokenledger.contract.rows import UsageRow
from tokenledger.streams.sink import migrations
from tokenledger.streams.sink.columns import SETTINGS, int_ranges, row_line, usage_line
from tokenledger.streams.sink.resume import column_types

BERLIN = timezone(timedelta(hours=1))


def events() -> list[EnrichedUsage]:
    t = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    return [
        factories.enriched(ts=t),
        factories.enriched(ts=t, error="TimeoutError: read", success=False, task_id="t-9"),
        factories.enriched(ts=t, cost_nusd=None, priced=False, table_cost_nusd=None),
        factories.enriched(ts=t, token_budget_violations=("retrieved", "tools"), cache="exact"),
        factories.enriched(
            ts=t,
            cache_write_tokens=600,
            cache_write_1h_tokens=400,
            service_tier="flex",
            batch=True,
            attempt=1000,
        ),
        factories.enriched(ts=t, error='say "hi"\n über ß \\ \u2028 \U0001f600', success=False),
        factories.enriched(ts=t, input_tokens=10_000_000, cost_nusd=2**62),
        factories.enriched(ts=t.replace(microsecond=999999), latency_ms=0),
    ]


def test_lines_store_the_models_rows(ch: Any, ch_factory: Callable[[], Any]) -> None:
    second = ch_factory()
    migrations.migrate(ch)
    migrations.migrate(second)
    ranges = int_ranges(column_types(ch, "usage_events"))
    assert ranges["input_tokens"] == (0, 2**32 - 1, False)
    lines, ways, usage = [], [], events()
    for offset, event in enumerate(usage):
        raw = event.model_dump_json().encode()
        if offset == 2:  # an older record: no version 2 fields
            doc = json.loads(raw)
            doc["schema_version"] = 1
            del doc["cache_write_1h_tokens"], doc["service_tier"]
            raw = json.dumps(doc).encode()
        if offset == 6:  # a time written with another offset
            doc = json.loads(raw)
            doc["ts"] = event.ts.astimezone(BERLIN).isoformat()
            raw = json.dumps(doc).encode()
        line = usage_line(raw, 1, offset, ranges)
        if line is None:  # not UTC as Z: the full model reads it
            row = UsageRow.from_message(EnrichedUsage.model_validate_json(raw)).model_dump()
            line = row_line(row, 1, offset, ranges)
        ways.append(line.startswith(raw[:-1]))
        lines.append(line)
    assert ways == [True, True, False, True, True, True, False, True]
    ch.raw_insert("usage_events", None, b"\n".join(lines), settings=SETTINGS, fmt="JSONEachRow")
    rows = [[*UsageRow.from_message(e).values(), 1, i] for i, e in enumerate(usage)]
    second.insert("usage_events", rows, column_names=UsageRow.insert_columns())
    query = "SELECT * FROM usage_events ORDER BY kafka_offset"
    stored, expected = ch.query(query).result_rows, second.query(query).result_rows
    assert len(stored) == len(usage)
    for got, want in zip(stored, expected, strict=True):
        assert dict(zip(UsageRow.insert_columns(), got, strict=True)) == dict(
            zip(UsageRow.insert_columns(), want, strict=True)
        )
