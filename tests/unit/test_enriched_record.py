"""The worker builds enriched records from the validated event without validating again:
the bytes it writes must be exactly the contract's message, and the sink's fast path must
pass them on unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.helpers import factories
from tokenledger.contract.messages import EnrichedUsage, UsageEvent
from tokenledger.contract.price_book import PriceBook, load_price_book
from tokenledger.streams.sink.columns import int_ranges, usage_line
from tokenledger.streams.worker.price import enrich

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=1))
RANGES = int_ranges({"input_tokens": "UInt32", "cost_nusd": "Nullable(Int64)"})

CASES: list[dict[str, Any]] = [
    {},
    {"model": "gpt-4o-mini", "route": "rag", "batch": True, "context_trimmed_tokens": 2000},
    {"cache": "semantic", "error": "TimeoutError: read", "task_id": "t-9", "success": False},
    {"model": "no-such-model-anywhere", "estimated": True},
    {"cost_nusd": 20_000_000, "token_budget_violations": ("retrieved", "tools")},
    {
        "cache_write_tokens": 600,
        "cache_write_1h_tokens": 400,
        "service_tier": "flex",
        "provider": "openai",
        "model": "gpt-5",
    },
    {"schema_version": 1, "ts": datetime(2026, 11, 26, 12, 30, tzinfo=BERLIN)},
    {"ts": datetime(2026, 11, 26, 11, 0, 0, 5, tzinfo=UTC), "attempt": 3},
]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return load_price_book()


@pytest.mark.parametrize("overrides", CASES)
@pytest.mark.parametrize("flags", [(False, False), (True, True)])
def test_the_record_is_the_contract_message(
    book: PriceBook, overrides: dict[str, Any], flags: tuple[bool, bool]
) -> None:
    event = UsageEvent.model_validate_json(factories.usage(**overrides).model_dump_json())
    record = enrich(event, book, duplicate_generation=flags[0], late=flags[1], now=NOW)
    message = record.as_message()  # validates every field against the contract
    assert message.kind == "usage.enriched" and message.schema_version == 3
    assert json.loads(record.to_json()) == json.loads(message.model_dump_json())
    assert EnrichedUsage.model_validate_json(record.to_json()) == message
    raw = record.to_json()  # the sink's fast path passes the record on as it is
    assert usage_line(raw, 0, 5, RANGES) == raw[:-1] + b',"kafka_partition":0,"kafka_offset":5}'
