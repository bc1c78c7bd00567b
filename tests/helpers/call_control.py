"""Retry-budget and breaker messages for tests: valid, with overridable fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tokenledger.contract.call_control import (
    BreakerSignal,
    RetryBudget,
    RetryBudgetSignal,
    breaker_scope,
    retry_budget_scope,
)

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def retry_budget(**overrides: Any) -> RetryBudget:
    fields: dict[str, Any] = {"tenant_id": "acme", "route": "chat", "updated_at": T0}
    fields.update(overrides)
    return RetryBudget(**fields)


def retry_signal(**overrides: Any) -> RetryBudgetSignal:
    tenant, route = overrides.get("tenant_id", "acme"), overrides.get("route", "chat")
    fields: dict[str, Any] = {
        "scope": retry_budget_scope(tenant, route),
        "tenant_id": tenant,
        "route": route,
        "state": "block",
        "reason": "retry budget of route 'chat' used",
        "first_attempts": 30,
        "retries": 10,
        "retry_nusd": 116_700_000,
        "allowed_retries": 10,
        "max_retry_nusd": None,
        "window_start": T0 - timedelta(seconds=59),
        "window_end": T0 + timedelta(seconds=1),
        "issued_at": T0,
        "issuer": "retry-budgets-worker",
    }
    fields.update(overrides)
    return RetryBudgetSignal(**fields)


def breaker_signal(**overrides: Any) -> BreakerSignal:
    tenant, route = overrides.get("tenant_id", "acme"), overrides.get("route", "chat")
    provider, model = overrides.get("provider", "openai"), overrides.get("model", "gpt-4o")
    fields: dict[str, Any] = {
        "scope": breaker_scope(tenant, route, provider, model),
        "tenant_id": tenant,
        "route": route,
        "provider": provider,
        "model": model,
        "state": "open",
        "reason": "circuit open for openai gpt-4o on route 'chat'",
        "calls": 20,
        "failures": 12,
        "opened_at": T0,
        "open_until": T0 + timedelta(seconds=30),
        "openings": 1,
        "probe_pct": 10,
        "issued_at": T0,
        "issuer": "breakers-worker",
    }
    fields.update(overrides)
    return BreakerSignal(**fields)
