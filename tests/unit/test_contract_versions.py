"""Schema version 2 (1-hour cache writes, service tier): version 1 events still validate and
price as before; a version 1 event carrying version 2 fields is refused with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.helpers import factories
from tests.helpers.pricing_oracle import expected_cost
from tokenledger.contract.messages import USAGE_FIELDS_SINCE, UsageEvent
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.usage import UsageTask, UsageTopics

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TOPICS = UsageTopics(enriched="out", dlq="dlq")


def v1_bytes(**changes: object) -> bytes:
    """A usage event as a version 1 producer wrote it: no version 2 fields at all."""
    doc = json.loads(
        factories.usage(
            ts=NOW - timedelta(minutes=1),
            model="claude-sonnet-4-5",
            provider="anthropic",
            cache_write_tokens=600,
            **changes,
        ).model_dump_json()
    )
    doc["schema_version"] = 1
    for name in (*USAGE_FIELDS_SINCE[2], *USAGE_FIELDS_SINCE[3]):
        del doc[name]
    return json.dumps(doc).encode()


def test_a_version_1_event_prices_as_before() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    (out,) = task.process("in", 0, 0, b"acme", v1_bytes(), NOW)
    enriched = json.loads(out.value)
    v1 = UsageEvent.model_validate_json(v1_bytes())
    assert (out.topic, v1.schema_version, enriched["schema_version"]) == ("out", 1, 3)
    # every cache write at the 5-minute rate, standard tier: what version 1 meant
    assert (enriched["cache_write_1h_tokens"], enriched["service_tier"]) == (0, "")
    assert (
        enriched["cost_nusd"]
        == expected_cost(v1)
        == ((3500 - 1024 - 600) * 3000 + 1024 * 300 + 600 * 3750 + 420 * 15000)
    )


def test_version_2_fields_on_a_version_1_event_are_refused() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    doc = json.loads(v1_bytes())
    doc["cache_write_1h_tokens"] = 100
    (dead,) = task.process("in", 0, 0, b"acme", json.dumps(doc).encode(), NOW)
    record = json.loads(dead.value)
    assert (dead.topic, record["reason"]) == ("dlq", "invalid_fields")
    assert "fields of schema_version 2" in record["detail"]


def test_a_version_2_event_with_one_hour_writes_and_a_tier() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    writes = factories.usage(
        ts=NOW - timedelta(minutes=1),
        model="claude-sonnet-4-5",
        provider="anthropic",
        cache_write_tokens=600,
        cache_write_1h_tokens=400,
    )
    priority = factories.usage(ts=NOW - timedelta(minutes=1), service_tier="priority")
    (a,) = task.process("in", 0, 0, b"acme", writes.model_dump_json().encode(), NOW)
    (b,) = task.process("in", 0, 1, b"acme", priority.model_dump_json().encode(), NOW)
    # 400 of the 600 written tokens at the 1-hour rate ($6), 200 at the 5-minute ($3.75)
    assert (
        json.loads(a.value)["cost_nusd"]
        == expected_cost(writes)
        == ((3500 - 1024 - 600) * 3000 + 1024 * 300 + 200 * 3750 + 400 * 6000 + 420 * 15000)
    )
    # OpenAI's priority tier: $4.25 / $2.125 / $17 instead of $2.50 / $1.25 / $10
    assert (
        json.loads(b.value)["cost_nusd"]
        == expected_cost(priority)
        == ((3500 - 1024) * 4250 + 1024 * 2125 + 420 * 17000)
    )


def test_a_replayed_retry_costs_nothing_and_prices_what_it_prevented() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    first = factories.usage(ts=NOW - timedelta(minutes=2), idempotency_key="order-7")
    retry = factories.usage(
        ts=NOW - timedelta(minutes=1),
        idempotency_key="order-7",
        attempt=2,
        replay_of=first.event_id,
        cost_nusd=5,
    )
    paid = factories.usage(ts=NOW - timedelta(minutes=1), idempotency_key="order-7", attempt=3)
    outs = [
        json.loads(task.process("in", 0, n, b"acme", e.model_dump_json().encode(), NOW)[0].value)
        for n, e in enumerate((first, retry, paid))
    ]
    first_cost = (3500 - 1024) * 2500 + 1024 * 1250 + 420 * 10000
    assert [(o["cost_nusd"], o["cost_source"], o["table_cost_nusd"]) for o in outs] == [
        (first_cost, "table", first_cost),
        (0, "replay", first_cost),
        (first_cost, "table", first_cost),
    ]
    # the replay generated nothing: not retry cost, and the caller's figure is no mismatch
    assert [o["duplicate_generation"] for o in outs] == [False, False, True]
    assert [o["cost_mismatch"] for o in outs] == [False, False, False]
    assert (outs[1]["replay_of"], expected_cost(first)) == (first.event_id, first_cost)


def test_version_3_fields_on_a_version_2_event_are_refused() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    doc = json.loads(factories.usage(ts=NOW - timedelta(minutes=1)).model_dump_json())
    doc.update(schema_version=2, latency_class="offline")
    (dead,) = task.process("in", 0, 0, b"acme", json.dumps(doc).encode(), NOW)
    record = json.loads(dead.value)
    assert (dead.topic, record["reason"]) == ("dlq", "invalid_fields")
    assert "are fields of schema_version 3" in record["detail"]
