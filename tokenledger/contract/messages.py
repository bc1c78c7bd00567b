"""Pydantic models of every message on the tokenledger topics (see tokenledger/streams/topics.py).

Token convention (the OpenAI one, whatever the provider): ``input_tokens`` counts the whole
prompt, including ``cached_input_tokens`` (read from a provider prompt cache) and
``cache_write_tokens`` (written to it); ``output_tokens`` includes ``reasoning_tokens``.
The SDK maps other providers' usage shapes to this convention.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tokenledger.contract.call_control import BreakerSignal, RetryBudget, RetryBudgetSignal
from tokenledger.contract.common import (
    Digest,
    Event,
    Id,
    Message,
    ModelName,
    Name,
    Nusd,
    OptionalName,
    Text,
    Tokens,
    UtcDatetime,
)
from tokenledger.contract.names import budget_scope

CacheKind = Literal["none", "exact", "semantic"]
"""How the response was served: a model call, or a hit in the application's own cache."""

LatencyClass = Literal["interactive", "offline"]
"""Whether somebody waits for the answer (interactive) or it could run as a batch (offline)."""

USAGE_FIELDS_SINCE = {
    2: ("cache_write_1h_tokens", "service_tier"),
    3: ("replay_of", "input_hash", "prefix_hash", "prefix_tokens", "latency_class"),
}
"""The usage fields each schema version added: an earlier version's event leaves them at
their defaults."""


class RequestEvent(Event):
    """A call is starting: the reservation a budget counts until the usage event settles it."""

    kind: Literal["request"] = "request"
    estimated_input_tokens: Tokens
    max_output_tokens: Tokens
    reserved_cost_nusd: Nusd | None = Field(
        description="estimated worst-case cost; null when the model has no known price"
    )
    task_id: Id | None = None
    prompt_text: Annotated[str, StringConstraints(max_length=65_536)] | None = Field(
        default=None, description="only when the caller opted in; never stored by default"
    )


class UsageEvent(Event):
    """A call finished: the money event.

    For a cache hit (``cache`` exact or semantic) no model was called: the token counts are
    those of the cached answer, which the pipeline counts as saved at a cost of zero.
    ``estimated`` marks counts the SDK estimated because the call failed before the provider
    reported usage (a timeout may still be billed).
    """

    kind: Literal["usage"] = "usage"
    input_tokens: Tokens
    output_tokens: Tokens
    cached_input_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    cache_write_1h_tokens: Tokens = Field(
        default=0, description="the part of cache_write_tokens written with a 1-hour TTL (v2)"
    )
    reasoning_tokens: Tokens = 0
    cache: CacheKind = "none"
    batch: bool = False
    service_tier: OptionalName = Field(
        default="",
        description="the provider's service tier (flex, priority, ...); empty is standard (v2)",
    )
    latency_ms: int = Field(ge=0, le=86_400_000)
    success: bool
    error: Text | None = None
    estimated: bool = False
    cost_nusd: Nusd | None = Field(
        default=None,
        description="cost reported by the caller or provider; checked against the price book "
        "and counted only when the book has no price (or the service is trusted for it)",
    )
    task_id: Id | None = None
    token_budget_violations: tuple[Name, ...] = Field(
        default=(), max_length=16, description="context segments that exceeded their budget"
    )
    context_trimmed_tokens: Tokens = Field(
        default=0, description="input tokens a context budget kept out of the prompt"
    )
    replay_of: Id | None = Field(
        default=None,
        description="a retry answered from a claim: the event_id of the first attempt, whose "
        "result was replayed; no model was called, the token counts are the first attempt's "
        "and their price is counted as prevented, at a cost of zero (v3)",
    )
    input_hash: Digest | None = Field(
        default=None,
        description="keyed per tenant: the normalized input (or the caller's cache key) (v3)",
    )
    prefix_hash: Digest | None = Field(
        default=None, description="keyed per tenant: the prompt's stable prefix (v3)"
    )
    prefix_tokens: Tokens = Field(default=0, description="the stable prefix's tokens (v3)")
    latency_class: LatencyClass = Field(
        default="interactive",
        description="interactive: somebody waits; offline: the call could run as a batch (v3)",
    )

    @model_validator(mode="after")
    def _token_parts_fit(self) -> UsageEvent:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_write_tokens exceed input_tokens; "
                "input_tokens must count the whole prompt, cached parts included"
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                "cache_write_1h_tokens exceed cache_write_tokens; cache_write_tokens must count "
                "every cache write, 1-hour ones included"
            )
        for version, names in USAGE_FIELDS_SINCE.items():
            if self.schema_version >= version:  # today's writers: nothing to look at
                continue
            fields = type(self).model_fields
            if any(getattr(self, n) != fields[n].default for n in names):
                listed = ", ".join(names[:-1]) + " and " + names[-1]
                raise ValueError(f"{listed} are fields of schema_version {version}")
        if self.prefix_tokens > self.input_tokens:
            raise ValueError("prefix_tokens exceed input_tokens; the prefix is part of the input")
        if self.replay_of is not None and self.cache != "none":
            raise ValueError("a replayed result is not a cache hit: send cache none with replay_of")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                "reasoning_tokens exceed output_tokens; output_tokens must include reasoning"
            )
        return self


class OutcomeEvent(Event):
    """A task finished: the denominator of cost per successful task."""

    kind: Literal["outcome"] = "outcome"
    task_id: Id
    success: bool


class EnrichedUsage(UsageEvent):
    """A usage event priced and deduplicated: what the sink stores.

    ``cost_nusd`` is the cost counted: the price book's when it prices the call, the event's
    own only when it does not (or the operator trusts the service's figure); it is null when
    nobody prices the model, and ``priced`` is then false: never a silent $0. What the caller
    claimed is kept in ``reported_cost_nusd``.
    """

    kind: Literal["usage.enriched"] = "usage.enriched"  # type: ignore[assignment]
    priced: bool
    table_cost_nusd: Nusd | None
    cost_source: Literal["event", "table", "cache", "replay", "unpriced"] = Field(
        description="event: the caller's cost (a model the table does not price, or a service "
        "trusted for its cost); table: the price table; cache: a cache hit (no model call, "
        "cost 0, table_cost_nusd is what it saved); replay: a retry answered from a claim (no "
        "model call, cost 0, table_cost_nusd is what it prevented); unpriced: unknown model"
    )
    cost_mismatch: bool = Field(description="the event's own cost differs from the table's")
    reported_cost_nusd: Nusd | None = Field(
        default=None,
        description="the event's own cost_nusd as the caller sent it, kept beside "
        "the cost counted; null when it carried none",
    )
    pricing_version: str = Field(max_length=128)
    reference_model: ModelName
    counterfactual_cost_nusd: Nusd | None = Field(
        description="same tokens on the route's reference model, no cache, no batch discount"
    )
    list_cost_nusd: Nusd | None = Field(
        description="same tokens on the event's own model, no cache discount, no batch discount"
    )
    unbatched_cost_nusd: Nusd | None = Field(
        description="the event's own model with its provider cache rates, no batch discount"
    )
    context_saved_nusd: Nusd | None = Field(
        description="the trimmed context tokens at the reference model's input rate"
    )
    duplicate_generation: bool = Field(
        description="another event with this idempotency_key was seen first: retry cost"
    )
    late: bool = Field(default=False, description="arrived after its window's allowed lateness")
    processed_at: UtcDatetime


Window = Literal["hour", "day", "week", "month"]


class Budget(Message):
    """A spending limit for a tenant or a tenant's feature (compacted topic, key = scope)."""

    kind: Literal["budget"] = "budget"
    tenant_id: Name
    feature: Name | None = None
    limit_nusd: Annotated[int, Field(gt=0, le=2**62)]
    window: Window = "day"
    tz: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    warn_pct: tuple[int, ...] = Field(default=(50, 80), max_length=8)
    updated_at: UtcDatetime

    @property
    def scope(self) -> str:
        return budget_scope(self.tenant_id, self.feature)

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @field_validator("warn_pct")
    @classmethod
    def _thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 < p < 100 for p in value) or list(value) != sorted(set(value)):
            raise ValueError("warn thresholds are distinct percentages in 1..99, ascending")
        return value


class Signal(Message):
    """The current budget state of a scope (compacted topic, key = scope): idempotent state."""

    kind: Literal["signal"] = "signal"
    scope: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    tenant_id: Name
    feature: Name | None = None
    state: Literal["allow", "warn", "block"]
    reason: Text
    spend_nusd: Nusd
    limit_nusd: Nusd
    threshold_pct: int | None = Field(default=None, ge=1, le=100)
    window_start: UtcDatetime
    window_end: UtcDatetime
    issued_at: UtcDatetime
    issuer: Name = Field(description="the component that published it")

    @model_validator(mode="after")
    def _scope_is_its_tenants(self) -> Signal:
        if self.scope != budget_scope(self.tenant_id, self.feature):
            of = f"tenant {self.tenant_id!r}" + (
                f" feature {self.feature!r}" if self.feature is not None else ""
            )
            raise ValueError(f"scope {self.scope!r} is not the scope of {of}")
        return self


class AlertEvidence(BaseModel):
    """What an anomaly detector saw. Values are in the detector's unit (e.g. nano-USD/min)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    observed: int
    expected: int
    unit: Annotated[str, StringConstraints(max_length=32)]
    window_start: UtcDatetime
    window_end: UtcDatetime


class Alert(Message):
    """An anomaly alert, firing or resolved; one fingerprint per incident."""

    kind: Literal["alert"] = "alert"
    fingerprint: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,64}$")]
    detector: Name
    severity: Literal["info", "warning", "critical"]
    status: Literal["firing", "resolved"]
    scope: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    tenant_id: Name
    feature: Name | None = None
    summary: Text
    evidence: AlertEvidence
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    issued_at: UtcDatetime


DlqReason = Literal[
    "malformed_json",
    "invalid_fields",
    "negative_tokens",
    "absurd_tokens",
    "unknown_schema_version",
    "absurd_timestamp",
    "oversize",
    "missing_tenant",
    "rejected_by_storage",
    "delivery_failed",
    "unauthorized",
]


class DlqRecord(Message):
    """Anything that failed validation or delivery, with the raw bytes and the reason."""

    kind: Literal["dlq"] = "dlq"
    reason: DlqReason
    detail: Text
    source_topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key_b64: str | None = None
    raw_b64: str = Field(description="the original message bytes, base64")
    component: Name
    failed_at: UtcDatetime
    tenant_id: OptionalName = ""


MESSAGES: dict[str, type[Message]] = {
    "request": RequestEvent,
    "usage": UsageEvent,
    "outcome": OutcomeEvent,
    "usage_enriched": EnrichedUsage,
    "budget": Budget,
    "signal": Signal,
    "alert": Alert,
    "dlq_record": DlqRecord,
    "retry_budget": RetryBudget,
    "retry_budget_signal": RetryBudgetSignal,
    "breaker_signal": BreakerSignal,
}
