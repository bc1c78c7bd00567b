"""Hostile input: property-based tests over the raw consumer paths and every message model.

Nothing may crash a processor; everything rejected comes out as a DLQ record with a known
reason and the raw bytes. CI runs a fixed seed and a bounded number of examples
(``TOKENLEDGER_FUZZ_EXAMPLES``, 150); ``make fuzz`` runs many more.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import factories
from tokenledger.contract.messages import (
    Alert,
    Budget,
    DlqReason,
    DlqRecord,
    EnrichedUsage,
    Signal,
    UsageEvent,
)
from tokenledger.contract.price_book import load_price_book
from tokenledger.guard import BudgetGuard
from tokenledger.streams.demo.offline import NAMES
from tokenledger.streams.records import Rejection, parse_message
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budgets import BudgetTracker
from tokenledger.streams.worker.state import ChangelogState
from tokenledger.streams.worker.task import partition_task

EXAMPLES = int(os.environ.get("TOKENLEDGER_FUZZ_EXAMPLES", "150"))
settings.register_profile(
    "tokenledger",
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tokenledger")

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""The processing clock of these tests: fixed, so no example depends on when it runs."""
PRICES = load_price_book()
REASONS = set(get_args(DlqReason))
INJECTIONS = [
    "acme'; DROP TABLE usage_events; --",
    'acme" OR 1=1',
    "{tenant:String}",
    "$__timeFilter(ts)",
    "../../etc/passwd",
    "acme\x00",
    "ａｃｍｅ",
    "acme\u202e",
    "<script>alert(1)</script>",
    "acme\nInjected: header",
    "' UNION SELECT * FROM system.users --",
    "${jndi:ldap://x}",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
GOOD = json.loads(factories.usage(ts=NOW - timedelta(minutes=1)).model_dump_json())


def _task() -> Any:
    return partition_task(ChangelogState(), PRICES, BudgetDefinitions(), NAMES)


def _check_outputs(outputs: list[Any], raw: bytes) -> str:
    """'dlq' (a known reason, a detail and exactly the input's bytes) or 'enriched'. A fresh
    task has seen nothing before, so every input comes out as exactly one record."""
    assert len(outputs) == 1, outputs
    out = outputs[0]
    if out.topic == NAMES["tokenledger.dlq.v1"]:
        record = DlqRecord.model_validate_json(out.value)
        assert record.reason in REASONS and record.detail
        assert base64.b64decode(record.raw_b64, validate=True) == raw
        return "dlq"
    assert out.topic == NAMES["tokenledger.usage.enriched.v1"]
    EnrichedUsage.model_validate_json(out.value)
    return "enriched"


def _process(task: Any, raw: bytes, topic: str = "tokenledger.usage.v1") -> list[Any]:
    outputs = list(task.process(topic, 0, 1, b"k", raw, NOW))
    outputs += [o for o in task.end_batch(NOW) if o.topic == NAMES["tokenledger.dlq.v1"]]
    return outputs


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_and_are_dead_lettered(raw: bytes) -> None:
    for topic in ("tokenledger.usage.v1", "tokenledger.requests.v1"):
        outputs = _process(_task(), raw, topic)
        if topic == "tokenledger.usage.v1":
            assert _check_outputs(outputs, raw) in ("dlq", "enriched")
        else:
            assert [o.topic for o in outputs] == [NAMES["tokenledger.dlq.v1"]]
            assert _check_outputs(outputs, raw) == "dlq"


@given(st.sampled_from(sorted(GOOD)), JSON)
def test_any_field_replaced_by_any_json_value(field: str, value: Any) -> None:
    raw = json.dumps({**GOOD, field: value}, allow_nan=True).encode()
    _check_outputs(_process(_task(), raw), raw)


@given(
    st.sampled_from(
        [
            "tenant_id",
            "feature",
            "route",
            "model",
            "service",
            "prompt_version",
            "user_scope",
            "event_id",
            "idempotency_key",
            "error",
        ]
    ),
    st.text(max_size=300),
)
def test_unicode_in_every_string_field(field: str, text: str) -> None:
    raw = json.dumps({**GOOD, field: text}, ensure_ascii=False).encode()
    _check_outputs(_process(_task(), raw), raw)


@given(
    st.sampled_from(
        [
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "latency_ms",
            "reasoning_tokens",
            "cost_nusd",
            "attempt",
            "schema_version",
        ]
    ),
    st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 2**63]),
    ),
)
def test_overflowing_and_non_finite_numbers(field: str, value: Any) -> None:
    raw = json.dumps({**GOOD, field: value}, allow_nan=True).encode()
    outcome = _check_outputs(_process(_task(), raw), raw)
    if isinstance(value, float) or (isinstance(value, int) and abs(value) > 2**62):
        assert outcome == "dlq"


@given(st.sampled_from(INJECTIONS), st.sampled_from(["tenant_id", "feature", "route", "model"]))
def test_injection_attempts_in_names_are_rejected_with_a_reason(name: str, field: str) -> None:
    raw = json.dumps({**GOOD, field: name}).encode()
    outputs = _process(_task(), raw)
    assert _check_outputs(outputs, raw) == "dlq"
    record = DlqRecord.model_validate_json(outputs[0].value)
    assert record.reason in ("invalid_fields", "missing_tenant"), record


@given(st.integers(min_value=1, max_value=200_000))
def test_deep_or_huge_json_is_dead_lettered(depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    assert _check_outputs(_process(_task(), raw), raw) == "dlq"


@given(st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v, allow_nan=True).encode()))
def test_every_message_model_rejects_garbage_with_a_reason(raw: bytes) -> None:
    for model in (UsageEvent, Budget, Signal, Alert, DlqRecord, EnrichedUsage):
        result = parse_message(raw, model)
        if isinstance(result, Rejection):
            assert result.reason in REASONS and result.detail
    book = BudgetDefinitions()
    book.apply(b"tenant/x", raw)  # the budgets table: an invalid budget is counted, not applied
    assert book.by_scope == {} or all(isinstance(b, Budget) for b in book.by_scope.values())
    guard = BudgetGuard(bootstrap="127.0.0.1:1", public_keys=None)
    guard.apply(b"tenant/x", raw)  # a gateway: a bad signal never stops a tenant
    assert guard.signals_seen + guard.invalid_signals == 1
    BudgetTracker(ChangelogState(), book).end_batch(NOW)
