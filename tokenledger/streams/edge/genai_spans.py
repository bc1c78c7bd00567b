"""Spans with OpenTelemetry GenAI usage attributes to usage events.

A span counts as an LLM call when it carries usage (``gen_ai.usage.input_tokens`` /
``output_tokens`` or another instrumentation's spelling, tokenledger.streams.edge.genai_conventions) and
is not an aggregate of calls (an agent run, a workflow, the AI SDK's ``ai.generateText``):
those are skipped by reason, like spans without usage. Token classes, model and provider
come from the conventions' spellings (first found wins); tenant, feature, route, prompt
version, user scope and environment come from span attributes, then resource attributes,
through a ``SpanMapping`` (defaults below, or a JSON file: ``--otlp-mapping``), which also
holds the rules that name model-call and aggregate spans.

The event's ``event_id`` is ``otel-<trace id>-<span id>``: an exporter that re-sends a batch
sends the same ids, and the worker counts each once. ``ts`` is the span's end (when the
call's usage was known), ``latency_ms`` its duration, ``success`` false when its status is
ERROR. The other dimensions' values are made into names (tokenledger.contract.names.as_name:
``/users/{id}`` becomes ``users._id_``); a tenant that is not a valid name rejects the span.

Cached parts: the contract counts them in ``input_tokens``; genai_conventions.token_counts
adds them once where an instrumentation reports them outside its input count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tokenledger.contract.common import check_event_time
from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.names import as_name
from tokenledger.streams.edge import genai_conventions as conventions
from tokenledger.streams.edge.otlp_decode import Span
from tokenledger.streams.errors import UserError
from tokenledger.streams.records import first_error

_RULES = ("call_spans", "aggregate_spans", "cached_outside_input")


@dataclass(frozen=True)
class SpanMapping:
    """Where each dimension of a usage event is read: attribute names, span first, then
    resource; the first present wins. A missing tenant rejects the span; other missing
    dimensions take the defaults."""

    tenant_id: tuple[str, ...] = (
        "tokenledger.tenant_id",
        "tenant.id",
        "traceloop.association.properties.tenant_id",
    )
    feature: tuple[str, ...] = (
        "tokenledger.feature",
        "feature",
        "traceloop.association.properties.feature",
    )
    route: tuple[str, ...] = ("tokenledger.route", "http.route")
    prompt_version: tuple[str, ...] = ("tokenledger.prompt_version", "gen_ai.prompt.version")
    user_scope: tuple[str, ...] = ("tokenledger.user_scope",)
    environment: tuple[str, ...] = ("deployment.environment.name", "deployment.environment")
    service: tuple[str, ...] = ("service.name",)
    default_feature: str = "unattributed"
    default_environment: str = "prod"
    call_spans: tuple[str, ...] = ()
    """Span names (globs) always read as model calls, before any other rule."""
    aggregate_spans: tuple[str, ...] = ()
    """Span names (globs) never read as model calls: an app's own span summing its calls."""
    cached_outside_input: tuple[str, ...] = conventions.CACHED_OUTSIDE_INPUT
    """Instrumentation scope names whose input count leaves cached tokens out."""
    rules: conventions.Rules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = conventions.Rules(
            conventions.globs(self.call_spans),
            conventions.globs(self.aggregate_spans),
            frozenset(self.cached_outside_input),
        )
        object.__setattr__(self, "rules", rules)

    @classmethod
    def from_file(cls, path: Path) -> SpanMapping:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read the OTLP mapping {path}: {exc}") from None
        known = {f.name for f in fields(cls) if f.init}
        if not isinstance(doc, dict) or set(doc) - known:
            raise UserError(
                f"{path}: the OTLP mapping is an object with keys among {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name, value in doc.items():
            if name.startswith("default_"):
                if not isinstance(value, str) or not value:
                    raise UserError(f"{path}: {name} is a non-empty string")
                values[name] = value
            elif (
                isinstance(value, list)
                and (value or name in _RULES)
                and all(isinstance(v, str) and v for v in value)
            ):
                values[name] = tuple(value)
            else:
                what = (
                    "a list of names" if name in _RULES else "a non-empty list of attribute names"
                )
                raise UserError(f"{path}: {name} is {what}")
        return cls(**values)


@dataclass
class Outcome:
    events: list[UsageEvent] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    rejected: dict[str, int] = field(default_factory=dict)  # reason code -> count
    messages: list[str] = field(default_factory=list)  # the first few, for the reply

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def reject(self, code: str, message: str) -> None:
        self.rejected[code] = self.rejected.get(code, 0) + 1
        if len(self.messages) < 5:
            self.messages.append(message)

    def reply_message(self) -> str:
        """The partial-success message: the first rejections, then how many spans were
        skipped as aggregates (their calls are counted from the calls' own spans)."""
        aggregates = sum(n for r, n in self.skipped.items() if r.startswith("aggregate"))
        parts = list(self.messages)
        if aggregates:
            spans, what = (
                ("1 span", "an aggregate")
                if aggregates == 1
                else (f"{aggregates} spans", "aggregates")
            )
            parts.append(
                f"{spans} skipped as {what} of model calls (agent, workflow or "
                "operation spans; each call is counted from its own span)"
            )
        return "; ".join(parts)


def _first(keys: tuple[str, ...], *scopes: Mapping[str, Any]) -> Any:
    for scope in scopes:
        for key in keys:
            if key in scope:
                return scope[key]
    return None


def skip_reason(span: Span, mapping: SpanMapping) -> str | None:
    """Why the span is not a model call to count, or None when it is one."""
    return conventions.skip_reason(span.name, span.attributes, mapping.rules)


def to_usage(span: Span, mapping: SpanMapping, now: datetime) -> UsageEvent | tuple[str, str]:
    """The usage event of a GenAI span, or (reason code, message) why it cannot be one."""
    where = f"span {span.span_id.hex() or '?'} of trace {span.trace_id.hex() or '?'}"
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        return "bad_ids", f"{where}: trace id must be 16 bytes and span id 8"
    counts = conventions.token_counts(span.attributes, span.scope, mapping.rules)
    if isinstance(counts, str):
        return "bad_tokens", f"{where}: {counts}"
    attrs, res = span.attributes, span.resource
    tenant = _first(mapping.tenant_id, attrs, res)
    if tenant is None:
        return (
            "no_tenant",
            f"{where}: no tenant attribute (looked for {', '.join(mapping.tenant_id)})",
        )
    model, provider = conventions.model_of(attrs), conventions.provider_of(attrs, res)
    if model is None or provider is None:
        return "no_model", f"{where}: needs gen_ai.request.model and gen_ai.provider.name"
    start, end = span.start_ns, span.end_ns
    event_id = f"otel-{span.trace_id.hex()}-{span.span_id.hex()}"
    fields_ = {
        "event_id": event_id,
        "request_id": event_id,
        "idempotency_key": event_id,
        "ts": datetime.fromtimestamp(end / 1e9, UTC) if end else now,
        "tenant_id": tenant,
        "service": as_name(_first(mapping.service, res, attrs)) or "unknown_service",
        "feature": as_name(_first(mapping.feature, attrs, res)) or mapping.default_feature,
        "route": as_name(_first(mapping.route, attrs, res)),
        "prompt_version": as_name(_first(mapping.prompt_version, attrs, res)),
        "user_scope": as_name(_first(mapping.user_scope, attrs, res)),
        "environment": as_name(_first(mapping.environment, res, attrs))
        or mapping.default_environment,
        "model": as_name(model, model=True),
        "provider": as_name(provider),
        "latency_ms": max(0, (end - start) // 1_000_000) if start and end else 0,
        "success": span.error is None,
        "error": span.error[:2048] if span.error else None,
        **counts,
    }
    try:
        event = UsageEvent.model_validate(fields_, strict=False)
    except ValidationError as exc:
        loc, msg = first_error(exc)
        return "invalid_fields", f"{where}: {loc}: {msg}"
    too_far = check_event_time(event.ts, now)
    if too_far is not None:
        return "implausible_time", f"{where}: {too_far}"
    return event
