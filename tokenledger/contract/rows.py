"""Row models of the ClickHouse tables (clickhouse/migrations), one per table.

Field order is column order. A guard test migrates a database and checks every model here
against ``DESCRIBE TABLE``: names, order and type family.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tokenledger.contract.messages import (
    Alert,
    DlqRecord,
    EnrichedUsage,
    Event,
    OutcomeEvent,
    RequestEvent,
    Signal,
)

SOURCE_COLUMNS = ("kafka_partition", "kafka_offset")
"""Appended to every raw table by the sink: where in Kafka the row came from."""


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: ClassVar[str]

    @classmethod
    def columns(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def insert_columns(cls) -> list[str]:
        """The model's columns and the source offset columns, in table order."""
        return [*cls.model_fields, *SOURCE_COLUMNS]

    def values(self) -> list[Any]:
        return [getattr(self, name) for name in type(self).model_fields]


class EnvelopeRow(Row):
    event_id: str
    request_id: str
    idempotency_key: str
    attempt: int
    ts: datetime
    tenant_id: str
    user_scope: str
    service: str
    feature: str
    route: str
    prompt_version: str
    model: str
    provider: str
    environment: str

    @staticmethod
    def envelope(event: Event) -> dict[str, Any]:
        return {name: getattr(event, name) for name in EnvelopeRow.model_fields}


class UsageRow(EnvelopeRow):
    table: ClassVar[str] = "usage_events"

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cache: str
    batch: bool
    latency_ms: int
    success: bool
    error: str
    estimated: bool
    task_id: str
    token_budget_violations: list[str]
    cost_nusd: int | None
    priced: bool
    table_cost_nusd: int | None
    cost_source: str
    cost_mismatch: bool
    pricing_version: str
    reference_model: str
    counterfactual_cost_nusd: int | None
    duplicate_generation: bool
    late: bool
    processed_at: datetime
    context_trimmed_tokens: int
    list_cost_nusd: int | None
    unbatched_cost_nusd: int | None
    context_saved_nusd: int | None
    cache_write_1h_tokens: int
    service_tier: str
    reported_cost_nusd: int | None
    replay_of: str
    input_hash: str
    prefix_hash: str
    prefix_tokens: int
    latency_class: str

    @classmethod
    def from_message(cls, m: EnrichedUsage) -> UsageRow:
        fields = m.model_dump(exclude={"schema_version", "kind"})
        fields.update(
            error=m.error or "",
            task_id=m.task_id or "",
            replay_of=m.replay_of or "",
            input_hash=m.input_hash or "",
            prefix_hash=m.prefix_hash or "",
            token_budget_violations=list(m.token_budget_violations),
        )
        return cls(**fields)


class RequestRow(EnvelopeRow):
    table: ClassVar[str] = "request_events"

    estimated_input_tokens: int
    max_output_tokens: int
    reserved_cost_nusd: int | None
    task_id: str

    @classmethod
    def from_message(cls, m: RequestEvent) -> RequestRow:
        fields = m.model_dump(exclude={"schema_version", "kind", "prompt_text"})
        fields["task_id"] = m.task_id or ""
        return cls(**fields)


class OutcomeRow(EnvelopeRow):
    table: ClassVar[str] = "outcome_events"

    task_id: str
    success: bool

    @classmethod
    def from_message(cls, m: OutcomeEvent) -> OutcomeRow:
        return cls(**m.model_dump(exclude={"schema_version", "kind"}))


class SignalRow(Row):
    table: ClassVar[str] = "signals"

    scope: str
    tenant_id: str
    feature: str
    state: str
    reason: str
    spend_nusd: int
    limit_nusd: int
    threshold_pct: int | None
    window_start: datetime
    window_end: datetime
    issued_at: datetime
    issuer: str

    @classmethod
    def from_message(cls, m: Signal) -> SignalRow:
        fields = m.model_dump(exclude={"schema_version", "kind"})
        fields["feature"] = m.feature or ""
        return cls(**fields)


class AlertRow(Row):
    table: ClassVar[str] = "alerts"

    fingerprint: str
    detector: str
    severity: str
    status: str
    scope: str
    tenant_id: str
    feature: str
    summary: str
    observed: int
    expected: int
    unit: str
    evidence_window_start: datetime
    evidence_window_end: datetime
    starts_at: datetime
    ends_at: datetime | None
    issued_at: datetime

    @classmethod
    def from_message(cls, m: Alert) -> AlertRow:
        fields = m.model_dump(exclude={"schema_version", "kind", "evidence"})
        ev = m.evidence
        fields.update(
            feature=m.feature or "",
            observed=ev.observed,
            expected=ev.expected,
            unit=ev.unit,
            evidence_window_start=ev.window_start,
            evidence_window_end=ev.window_end,
        )
        return cls(**fields)


class DlqRow(Row):
    table: ClassVar[str] = "dlq_events"

    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    key_b64: str
    raw_b64: str
    component: str
    failed_at: datetime
    tenant_id: str

    @classmethod
    def from_message(cls, m: DlqRecord) -> DlqRow:
        fields = m.model_dump(exclude={"schema_version", "kind"})
        fields["key_b64"] = m.key_b64 or ""
        return cls(**fields)


ROWS: tuple[type[Row], ...] = (UsageRow, RequestRow, OutcomeRow, SignalRow, AlertRow, DlqRow)
