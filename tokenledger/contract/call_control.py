"""Retry budgets and circuit breakers: their definitions and their signals.

Both are state on the signals topic like budget signals (compacted, key = scope), each
with a ``kind`` of its own: a reader that knows only ``Signal`` (kind ``signal``, no
unknown fields) refuses these as invalid and ignores them, so a guard of an older release
never reads a breaker as a tenant's block. Their scopes sit under a tenant's route and are
never budget scopes (``tenant/<t>`` or ``tenant/<t>/feature/<f>``):

- ``tenant/<t>/route/<r>/retry-budget``: a retry budget's definition (budgets topic) and
  its state (signals topic);
- ``tenant/<t>/route/<r>/breaker/<provider>/<model>``: a breaker's state. The model comes
  last because a model name may hold ``/``.

An empty route is written ``-`` (no name starts with it).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from tokenledger.contract.common import (
    Message,
    ModelName,
    Name,
    Nusd,
    OptionalName,
    Text,
    UtcDatetime,
)
from tokenledger.contract.names import route_scope

Scope = Annotated[str, StringConstraints(min_length=1, max_length=400)]
Count = Annotated[int, Field(ge=0, le=2**62)]

RETRY_BUDGET = "retry_budget"
RETRY_BUDGET_SIGNAL = "retry_budget_signal"
BREAKER_SIGNAL = "breaker_signal"
SIGNAL_KINDS = (RETRY_BUDGET_SIGNAL, BREAKER_SIGNAL)


def retry_budget_scope(tenant_id: str, route: str) -> str:
    return f"{route_scope(tenant_id, route)}/retry-budget"


def breaker_scope(tenant_id: str, route: str, provider: str, model: str) -> str:
    return f"{route_scope(tenant_id, route)}/breaker/{provider}/{model}"


def kind_of(value: bytes | None) -> str | None:
    """The ``kind`` of a JSON record, or None (not an object, no kind): which model reads it."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


class RetryBudget(Message):
    """How many retries (attempt > 1) a tenant's route may make in a sliding minute of event
    time: ``percent`` of its first attempts, never fewer than ``min_per_minute``, and, when
    set, no more than ``max_retry_nusd`` of retry cost (budgets topic, key = scope)."""

    kind: Literal["retry_budget"] = "retry_budget"
    tenant_id: Name
    route: OptionalName = ""
    percent: int = Field(default=20, ge=0, le=1000)
    min_per_minute: int = Field(default=10, ge=0, le=1_000_000)
    max_retry_nusd: Nusd | None = Field(default=None, description="retry cost per minute cap")
    updated_at: UtcDatetime

    @property
    def scope(self) -> str:
        return retry_budget_scope(self.tenant_id, self.route)


class RetryBudgetSignal(Message):
    """A route's retry budget state: ``block`` refuses retries, first attempts pass."""

    kind: Literal["retry_budget_signal"] = "retry_budget_signal"
    scope: Scope
    tenant_id: Name
    route: OptionalName
    state: Literal["allow", "block"]
    reason: Text
    first_attempts: Count
    retries: Count
    retry_nusd: Nusd
    allowed_retries: Count
    max_retry_nusd: Nusd | None
    window_start: UtcDatetime
    window_end: UtcDatetime
    issued_at: UtcDatetime
    issuer: Name

    @model_validator(mode="after")
    def _scope_is_its_routes(self) -> RetryBudgetSignal:
        _same_scope(self.scope, retry_budget_scope(self.tenant_id, self.route))
        return self


class BreakerSignal(Message):
    """A circuit breaker's state for a tenant's route x provider x model.

    ``open``: guards refuse calls until ``open_until`` (event time, which is the callers'
    clock), then let ``probe_pct`` percent through as probes (half-open) until the worker
    publishes ``closed`` (the probes succeeded) or ``open`` again with a later
    ``open_until`` (a probe failed; the cool-down doubles)."""

    kind: Literal["breaker_signal"] = "breaker_signal"
    scope: Scope
    tenant_id: Name
    route: OptionalName
    provider: Name
    model: ModelName
    state: Literal["open", "closed"]
    reason: Text
    calls: Count = Field(description="calls in the window that opened it (or the probes)")
    failures: Count
    opened_at: UtcDatetime
    open_until: UtcDatetime
    openings: int = Field(ge=0, le=1000, description="consecutive openings without a close")
    probe_pct: int = Field(ge=1, le=100)
    issued_at: UtcDatetime
    issuer: Name

    @model_validator(mode="after")
    def _scope_is_its_breakers(self) -> BreakerSignal:
        _same_scope(
            self.scope, breaker_scope(self.tenant_id, self.route, self.provider, self.model)
        )
        return self


def _same_scope(scope: str, expected: str) -> None:
    """A signal's key and its fields name the same thing (readers index by the fields)."""
    if scope != expected:
        raise ValueError(f"scope {scope!r} is not {expected!r}, the scope of its fields")
