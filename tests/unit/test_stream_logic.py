"""The stream processors' pure logic: validation reasons, dedup, windows, enrichment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import factories
from tests.helpers.state_keys import scoped, unscoped
from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.price_book import load_price_book
from tokenledger.streams.records import MAX_MESSAGE_BYTES, Rejection
from tokenledger.streams.worker.dedup import Dedup, Verdict
from tokenledger.streams.worker.price import cost_mismatch, enrich
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.usage import UsageTask, UsageTopics
from tokenledger.streams.worker.validate import parse
from tokenledger.streams.worker.windows import SpendWindows, parse_window, window_start

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""The processing clock of these tests: fixed, so no result depends on when they run."""
TOPICS = UsageTopics(enriched="out", dlq="dlq")


def raw(**changes: Any) -> bytes:
    return factories.mutated_json(factories.usage(ts=NOW - timedelta(minutes=1)), **changes)


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"", "malformed_json", "empty message"),
        (b"{oops", "malformed_json", "Invalid JSON"),
        (b"[]", "malformed_json", "Input should be an object"),
        (raw(input_tokens=-1), "negative_tokens", "input_tokens: Input should be greater"),
        (raw(cached_input_tokens=-3), "negative_tokens", "cached_input_tokens"),
        (raw(output_tokens=50_000_000), "absurd_tokens", "output_tokens"),
        (raw(schema_version=4), "unknown_schema_version", "this worker reads versions 1, 2, 3"),
        (raw(tenant_id=None), "missing_tenant", "tenant_id is required"),
        (raw(tenant_id=""), "missing_tenant", "tenant_id is required"),
        (raw(tenant_id="a b"), "invalid_fields", "tenant_id: ' ' cannot be part of a name"),
        (raw(success="yes"), "invalid_fields", "success"),
        (raw(ts="2090-01-01T00:00:00Z"), "absurd_timestamp", "in the future"),
        (raw(ts="2020-01-01T00:00:00Z"), "absurd_timestamp", "in the past"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "oversize", f"the limit is {MAX_MESSAGE_BYTES}"),
    ],
)
def test_every_bad_input_has_a_reason(value: bytes, reason: str, says: str) -> None:
    result = parse(value, UsageEvent, NOW)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert says in result.detail


def test_a_good_event_parses() -> None:
    assert isinstance(parse(raw(), UsageEvent, NOW), UsageEvent)


def test_dedup_decisions_and_bounded_state() -> None:
    state = ChangelogState()
    dedup = Dedup(state, retention=timedelta(hours=1))
    first = dedup.decide("acme", "e1", "k1")
    assert first.verdict is Verdict.FIRST
    dedup.remember(first, 1_000)
    assert dedup.decide("acme", "e1", "k1").verdict is Verdict.REDELIVERY
    retry = dedup.decide("acme", "e2", "k1")
    assert retry.verdict is Verdict.DUPLICATE_GENERATION
    dedup.remember(retry, 2_000)
    assert state.data[scoped("G:", "acme", "k1")] == "1000"  # the first generation stays
    assert all(len(k) == 34 for k in state.data)  # fixed-size keys, whatever the id
    restored = ChangelogState()
    for key, value in state.changes():
        restored.restore(key, value)
    again = Dedup(restored, retention=timedelta(hours=1))
    assert again.decide("acme", "e2", "k9").verdict is Verdict.REDELIVERY and len(again) == 3
    assert again.expire(1_000 + 3_600_000) == 0  # exactly at the horizon: kept
    assert again.expire(2_001 + 3_600_000) == 3
    assert again.decide("acme", "e1", "k1").verdict is Verdict.FIRST and restored.data == {}


def test_an_old_changelog_of_plain_ids_is_rewritten_under_digests() -> None:
    restored = ChangelogState()
    restored.restore("d:e1", "1000")
    restored.restore("i:k1", "e1|1000")
    dedup = Dedup(restored, retention=timedelta(hours=1))
    assert dedup.decide("acme", "e1", "k9").verdict is Verdict.REDELIVERY
    assert dedup.decide("acme", "e2", "k1").verdict is Verdict.DUPLICATE_GENERATION
    # the next commit writes the (unscoped) digest keys and tombstones the old ones
    assert dict(restored.changes()) == {
        "d:e1": None,
        "i:k1": None,
        unscoped("E:", "e1"): "1000",
        unscoped("K:", "k1"): "1000",
    }
    assert dedup.expire(1_001 + 3_600_000) == 2 and not dedup.unscoped


def test_window_assignment_and_lateness() -> None:
    ts = int(datetime(2026, 11, 26, 13, 47, 31, 250_000, tzinfo=UTC).timestamp() * 1000)
    assert window_start(ts, "minute") == ts - 31_250
    assert window_start(ts, "hour") == ts - (47 * 60 + 31) * 1000 - 250
    assert window_start(ts, "day") == int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1000)
    state = ChangelogState()
    windows = SpendWindows(state, allowed_lateness=timedelta(minutes=5))
    minute_end = window_start(ts, "minute") + 60_000
    assert not windows.is_late(ts, minute_end + 300_000)
    assert windows.is_late(ts, minute_end + 300_001)
    windows.add(ts, "acme", "answer", "gpt-4o", 700)
    windows.add(ts, "acme", "search", "gpt-4o", None)
    assert state.data == {}  # written once per batch, by flush()
    windows.flush()
    totals = {k: parse_window(k, v) for k, v in state.data.items()}
    day = window_start(ts, "day")
    assert (totals[f"w:day:t=acme:{day}"].cost_nusd, totals[f"w:day:t=acme:{day}"].events) == (
        700,
        2,
    )
    assert totals[f"w:day:tm=acme|gpt-4o:{day}"].unpriced == 1
    assert totals[f"w:minute:tf=acme|answer:{window_start(ts, 'minute')}"].events == 1
    assert len(totals) == 3 * 4  # 3 grains x (tenant, 2 features, 1 model)


def test_enrich_flags_and_costs() -> None:
    table = load_price_book()
    event = factories.usage(route="classify")
    priced = enrich(event, table, duplicate_generation=True, late=False, now=NOW).as_message()
    assert (priced.cost_nusd, priced.cost_source, priced.duplicate_generation) == (
        11_670_000,
        "table",
        True,
    )
    assert priced.counterfactual_cost_nusd == 3500 * 2500 + 420 * 10_000
    # not a batch call: its unbatched cost is its table cost; nothing trimmed, nothing saved
    assert (priced.unbatched_cost_nusd, priced.context_saved_nusd) == (11_670_000, 0)
    # (event's cost, table's cost): within 0.1% of the table is rounding, beyond is a mismatch
    assert cost_mismatch(11_670_000 + 11_670, 11_670_000) is False
    assert cost_mismatch(11_670_000 + 11_671, 11_670_000) is True
    assert cost_mismatch(1_999, 1_000) is False  # under 1000 nano-USD apart: never flagged


def test_task_drops_redeliveries_and_sends_bad_input_to_the_dlq() -> None:
    task = UsageTask(ChangelogState(), load_price_book(), TOPICS)
    good = factories.usage(ts=NOW - timedelta(minutes=1)).model_dump_json().encode()
    first = task.process("in", 0, 0, b"acme", good, NOW)
    assert [o.topic for o in first] == ["out"]
    assert task.process("in", 0, 1, b"acme", good, NOW) == []
    (dead,) = task.process("in", 0, 2, b"acme", b"nope", NOW)
    assert dead.topic == "dlq" and json.loads(dead.value)["offset"] == 2
    assert task.counters == {"enriched": 1, "redelivered": 1, "dlq.malformed_json": 1}


def test_waterfall_steps_telescope_from_counterfactual_to_cost() -> None:
    table = load_price_book()
    event = factories.usage(
        model="gpt-4o-mini",
        route="rag",
        batch=True,
        cached_input_tokens=1024,
        context_trimmed_tokens=2000,
    )
    e = enrich(event, table, duplicate_generation=False, late=False, now=NOW).as_message()
    # gpt-4o reference: 3500 in x 2500 + 420 out x 10000
    assert e.counterfactual_cost_nusd == 3500 * 2500 + 420 * 10_000
    # own model, list price: 3500 x 150 + 420 x 600
    assert e.list_cost_nusd == 3500 * 150 + 420 * 600
    # provider cache: 2476 x 150 + 1024 x 75 + 420 x 600
    assert e.unbatched_cost_nusd == 2476 * 150 + 1024 * 75 + 420 * 600
    # OpenAI's batch price halves input and output; cached reads keep their rate
    assert e.table_cost_nusd == e.cost_nusd == 2476 * 75 + 1024 * 75 + 420 * 300
    assert e.context_saved_nusd == 2000 * 2500  # trimmed tokens at the reference input rate
