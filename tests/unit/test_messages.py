"""Message models: strict, actionable errors; money never a float."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.helpers import call_control, factories
from tokenledger.contract.common import check_event_time
from tokenledger.contract.messages import MESSAGES, Budget, UsageEvent, budget_scope


def usage_json(**overrides: Any) -> str:
    doc = json.loads(factories.usage().model_dump_json())
    doc.update(overrides)
    for key in [k for k, v in overrides.items() if v is ...]:
        del doc[key]
    return json.dumps(doc)


def test_usage_round_trips_through_json_unchanged() -> None:
    event = factories.usage(cost_nusd=11_670_000, token_budget_violations=("retrieved",))
    again = UsageEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.ts.tzinfo is not None and again.ts.utcoffset() == timedelta(0)


def test_every_message_round_trips() -> None:
    samples = [
        factories.request(),
        factories.usage(),
        factories.outcome(),
        factories.enriched(),
        factories.signal(),
        factories.alert(),
        factories.dlq(),
        Budget(tenant_id="acme", limit_nusd=5, updated_at=factories.now()),
        call_control.retry_budget(),
        call_control.retry_signal(),
        call_control.breaker_signal(),
    ]
    assert {type(s) for s in samples} == set(MESSAGES.values())
    for sample in samples:
        assert type(sample).model_validate_json(sample.model_dump_json()) == sample


def test_offset_timestamps_are_normalised_to_utc() -> None:
    event = UsageEvent.model_validate_json(usage_json(ts="2026-11-26T10:00:00+02:00"))
    assert event.ts == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "where", "says"),
    [
        ({"input_tokens": -1}, "input_tokens", "greater than or equal to 0"),
        ({"output_tokens": 10_000_001}, "output_tokens", "less than or equal to 10000000"),
        ({"input_tokens": "12"}, "input_tokens", "valid integer"),
        ({"cost_nusd": 1.5}, "cost_nusd", "valid integer"),
        ({"schema_version": 4}, "schema_version", "Input should be 1, 2 or 3"),
        ({"tenant_id": ...}, "tenant_id", "Field required"),
        ({"tenant_id": "acme'; DROP TABLE usage_events; --"}, "tenant_id", "pattern"),
        ({"feature": ""}, "feature", "pattern"),
        ({"ts": "2026-11-26T10:00:00"}, "ts", "needs a timezone"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
        ({"cache": "fuzzy"}, "cache", "'none', 'exact' or 'semantic'"),
        ({"cached_input_tokens": 4000}, "", "exceed input_tokens"),
        ({"reasoning_tokens": 500}, "", "exceed output_tokens"),
    ],
)
def test_bad_usage_is_rejected_with_the_field_and_the_fix(
    overrides: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(ValidationError) as err:
        UsageEvent.model_validate_json(usage_json(**overrides))
    first = err.value.errors()[0]
    assert ".".join(str(p) for p in first["loc"]) == where
    assert says in first["msg"]


def test_event_time_plausibility() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert check_event_time(now - timedelta(days=29), now) is None
    assert check_event_time(now + timedelta(minutes=9), now) is None
    future = check_event_time(now + timedelta(hours=1), now)
    assert future is not None and "in the future" in future
    past = check_event_time(now - timedelta(days=31), now)
    assert past is not None and "30 days in the past" in past


def test_budget_scope_and_validation() -> None:
    b = Budget(
        tenant_id="acme",
        feature="answer",
        limit_nusd=50 * 10**9,
        tz="Europe/Berlin",
        warn_pct=(50, 80),
        updated_at=factories.now(),
    )
    assert b.scope == "tenant/acme/feature/answer" == budget_scope("acme", "answer")
    assert budget_scope("acme", None) == "tenant/acme"
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        Budget(tenant_id="a", limit_nusd=1, tz="Mars/Olympus", updated_at=factories.now())
    with pytest.raises(ValidationError, match="ascending"):
        Budget(tenant_id="a", limit_nusd=1, warn_pct=(80, 50), updated_at=factories.now())
    with pytest.raises(ValidationError, match="greater than 0"):
        Budget(tenant_id="a", limit_nusd=0, updated_at=factories.now())


def test_unknown_cost_is_null_not_zero() -> None:
    e = factories.enriched(
        priced=False,
        cost_nusd=None,
        table_cost_nusd=None,
        cost_source="unpriced",
        counterfactual_cost_nusd=None,
    )
    assert json.loads(e.model_dump_json())["cost_nusd"] is None
