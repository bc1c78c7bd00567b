"""Valid messages with overridable fields, timestamps relative to now."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tokenledger.contract.days import start_of_day
from tokenledger.contract.messages import (
    Alert,
    AlertEvidence,
    DlqRecord,
    EnrichedUsage,
    OutcomeEvent,
    RequestEvent,
    Signal,
    UsageEvent,
)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def envelope(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "request_id": "req-1",
        "idempotency_key": "idem-1",
        "attempt": 1,
        "ts": now() - timedelta(minutes=1),
        "tenant_id": "acme",
        "user_scope": "u-42",
        "service": "support-bot",
        "feature": "answer",
        "route": "rag",
        "prompt_version": "v3",
        "model": "gpt-4o",
        "provider": "openai",
        "environment": "prod",
    }
    fields.update(overrides)
    return fields


def usage(**overrides: Any) -> UsageEvent:
    fields = envelope(
        input_tokens=3500,
        output_tokens=420,
        cached_input_tokens=1024,
        reasoning_tokens=128,
        latency_ms=812,
        success=True,
    )
    fields.update(overrides)
    return UsageEvent(**fields)


def request(**overrides: Any) -> RequestEvent:
    fields = envelope(
        estimated_input_tokens=3400, max_output_tokens=800, reserved_cost_nusd=16_500_000
    )
    fields.update(overrides)
    return RequestEvent(**fields)


def outcome(**overrides: Any) -> OutcomeEvent:
    fields = envelope(task_id="task-9", success=True)
    fields.update(overrides)
    return OutcomeEvent(**fields)


def enriched(**overrides: Any) -> EnrichedUsage:
    base = usage().model_dump(exclude={"kind"})
    base.update(
        priced=True,
        cost_nusd=11_670_000,
        table_cost_nusd=11_670_000,
        cost_source="table",
        cost_mismatch=False,
        pricing_version="2026-11-01:gpt-4o@2024-10-01",
        reference_model="gpt-4o",
        counterfactual_cost_nusd=12_950_000,
        list_cost_nusd=12_950_000,
        unbatched_cost_nusd=11_670_000,
        context_saved_nusd=0,
        duplicate_generation=False,
        processed_at=now(),
        task_id="task-9",
        token_budget_violations=("retrieved",),
    )
    base.update(overrides)
    return EnrichedUsage(**base)


def signal(**overrides: Any) -> Signal:
    start = start_of_day(now())
    fields: dict[str, Any] = {
        "scope": "tenant/acme",
        "tenant_id": "acme",
        "state": "block",
        "reason": "daily limit $50.00 reached",
        "spend_nusd": 50_000_000_000,
        "limit_nusd": 50_000_000_000,
        "threshold_pct": 100,
        "window_start": start,
        "window_end": start + timedelta(days=1),
        "issued_at": now(),
        "issuer": "budgets-worker",
    }
    fields.update(overrides)
    return Signal(**fields)


def alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "fingerprint": "0123456789abcdef",
        "detector": "spend_rate",
        "severity": "critical",
        "status": "firing",
        "scope": "tenant/acme/feature/answer",
        "tenant_id": "acme",
        "feature": "answer",
        "summary": "spend 9x baseline",
        "evidence": AlertEvidence(
            observed=900_000_000,
            expected=100_000_000,
            unit="nusd/min",
            window_start=now() - timedelta(minutes=5),
            window_end=now(),
        ),
        "starts_at": now() - timedelta(minutes=5),
        "issued_at": now(),
    }
    fields.update(overrides)
    return Alert(**fields)


def dlq(**overrides: Any) -> DlqRecord:
    fields: dict[str, Any] = {
        "reason": "malformed_json",
        "detail": "Expecting value: line 1 column 1 (char 0)",
        "source_topic": "tokenledger.usage.v1",
        "partition": 2,
        "offset": 41,
        "raw_b64": "bm90IGpzb24=",
        "component": "usage-validator",
        "failed_at": now(),
    }
    fields.update(overrides)
    return DlqRecord(**fields)


def mutated_json(event: UsageEvent, **changes: Any) -> bytes:
    """``event`` as JSON with fields changed (None removes one): bad input, byte for byte."""
    doc = json.loads(event.model_dump_json())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()
