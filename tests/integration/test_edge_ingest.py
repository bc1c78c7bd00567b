"""The edge end to end: CloudEvents (built with the cloudevents SDK) and spans exported by
OpenTelemetry's own OTLP/HTTP exporters (protobuf with gzip, and JSON) go through
`tokenledger serve`, the worker and the sink into ClickHouse with exact totals; a re-sent
OTLP batch counts once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as ProtobufExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.helpers import factories
from tests.helpers.edge import served
from tests.helpers.pipeline import Pipeline
from tests.helpers.pricing_oracle import expected_cost
from tests.helpers.waiting import wait_for
from tokenledger.contract.messages import UsageEvent
from tokenledger.streams.edge.cloudevents_in import derived_event_id

pytestmark = pytest.mark.integration
USAGE_TYPE = "dev.tokenledger.usage.v1"


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path, partitions=3)
    p.start_worker()
    p.start_sink()
    try:
        yield p
    finally:
        p.stop_all()


def cloud_event(e: UsageEvent, *, keep_ids: bool) -> tuple[CloudEvent, UsageEvent]:
    """A CloudEvent carrying ``e``; without its ids when ``keep_ids`` is false (the edge
    derives them from source and id), and the event the pipeline should then count."""
    data = json.loads(e.model_dump_json())
    source, ce_id = f"tests/{e.feature}", f"ce-{e.event_id}"
    if not keep_ids:
        for name in ("event_id", "request_id", "idempotency_key"):
            del data[name]
        derived = derived_event_id(source, ce_id)
        e = e.model_copy(update={"event_id": derived})
    attrs = {
        "type": USAGE_TYPE,
        "source": source,
        "id": ce_id,
        "time": e.ts,
        "datacontenttype": "application/json",
    }
    return CloudEvent(attrs, data), e


def genai_spans(provider: TracerProvider, end: datetime) -> list[dict[str, Any]]:
    """Record GenAI spans (and one span without usage); their attributes, for the oracle."""
    tracer = provider.get_tracer("tests.edge")
    plans: list[dict[str, Any]] = [
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 310,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "tokenledger.tenant_id": "acme",
            "tokenledger.feature": "search",
        },
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 800,
            "gen_ai.usage.completion_tokens": 90,
            "gen_ai.usage.reasoning.output_tokens": 0,
            "tenant.id": "globex",
        },
        # Anthropic-style: input_tokens without the cached parts
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 700,
            "gen_ai.usage.cache_read.input_tokens": 2000,
            "gen_ai.usage.cache_creation.input_tokens": 500,
            "tokenledger.tenant_id": "acme",
            "tokenledger.feature": "summarize",
            "tokenledger.route": "docs",
        },
    ]
    end_ns = int(end.timestamp() * 1e9)
    for i, attrs in enumerate(plans):
        span = tracer.start_span(f"chat {i}", start_time=end_ns - 250_000_000)
        span.set_attributes(attrs)
        if i == 1:
            span.set_status(Status(StatusCode.ERROR, "rate limited"))
        span.end(end_time=end_ns)
    tracer.start_span("SELECT orders").end(end_time=end_ns)  # no GenAI usage: skipped
    return plans


def expected_from(span: ReadableSpan) -> UsageEvent | None:
    """The usage event a span should count as, written out from its attributes."""
    a: dict[str, Any] = dict(span.attributes or {})
    if "gen_ai.usage.input_tokens" not in a and "gen_ai.usage.prompt_tokens" not in a:
        return None
    read = int(a.get("gen_ai.usage.cache_read.input_tokens", 0))
    write = int(a.get("gen_ai.usage.cache_creation.input_tokens", 0))
    given = int(a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens", 0)))
    ctx = span.get_span_context()
    assert span.end_time is not None and ctx is not None
    return factories.usage(
        event_id=f"otel-{ctx.trace_id:032x}-{ctx.span_id:016x}",
        model=a.get("gen_ai.response.model", a["gen_ai.request.model"]),
        provider=a.get("gen_ai.provider.name", a.get("gen_ai.system")),
        input_tokens=given + read + write if read + write > given else given,
        output_tokens=int(
            a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens", 0))
        ),
        cached_input_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=0,
        ts=datetime.fromtimestamp(span.end_time / 1e9, UTC),
        tenant_id=a.get("tokenledger.tenant_id", a.get("tenant.id")),
    )


def test_cloudevents_and_otlp_spans_reach_clickhouse_exactly_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    with served(pipeline.env, tmp_path) as edge:
        # CloudEvents: one structured event, then a batch of 40 (half without their ids)
        single, counted = cloud_event(factories.usage(ts=base), keep_ids=True)
        message = to_structured(single, JSONFormat())
        answer = edge.call("POST", "/v1/events", message.body, message.headers)
        assert (answer.status, answer.json()) == (200, {"accepted": 1, "rejected": []})
        expected = {counted.event_id: counted}
        made = [
            cloud_event(
                factories.usage(
                    ts=base + timedelta(seconds=i), tenant_id=t, input_tokens=3000 + i, model=m
                ),
                keep_ids=i % 2 == 0,
            )
            for i, (t, m) in enumerate([("acme", "gpt-4o"), ("globex", "gpt-4o-mini")] * 20)
        ]
        body = b"[" + b",".join(JSONFormat().write(ce) for ce, _ in made) + b"]"
        answer = edge.call(
            "POST", "/v1/events", body, {"Content-Type": "application/cloudevents-batch+json"}
        )
        assert (answer.status, answer.json()) == (200, {"accepted": 40, "rejected": []})
        expected.update((e.event_id, e) for _, e in made)

        # OTLP: the protobuf exporter (gzip) sends its batch twice, the JSON one once
        auth = {"authorization": f"Bearer {edge.key}"}
        for exporter, resend in (
            (
                ProtobufExporter(
                    endpoint=f"{edge.url}/v1/traces", headers=auth, compression=Compression.Gzip
                ),
                True,
            ),
            (JsonExporter(endpoint=f"{edge.url}/v1/traces", headers=auth), False),
        ):
            memory = InMemorySpanExporter()
            provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
            provider.add_span_processor(SimpleSpanProcessor(memory))
            genai_spans(provider, base + timedelta(minutes=1))
            spans = memory.get_finished_spans()
            assert len(spans) == 4
            for _ in range(2 if resend else 1):
                assert exporter.export(spans) == SpanExportResult.SUCCESS
            expected.update((e.event_id, e) for e in map(expected_from, spans) if e is not None)
            exporter.shutdown()

        metrics = edge.call("GET", "/metrics", key=None).body.decode()
        assert 'tokenledger_edge_events_accepted_total{type="otlp.span"} 9.0' in metrics
        assert 'tokenledger_edge_spans_skipped_total{reason="no_usage"} 3.0' in metrics

    assert len(expected) == 1 + 40 + 6
    wait_for(pipeline.stored_all, 120, "the worker and sink to store every event")
    assert set(pipeline.stop_all().values()) == {0}  # the sink lets go of its data path
    stored = pipeline.stored()
    cost = sum(expected_cost(e) for e in expected.values())
    assert (stored.unique, stored.rows, stored.rollup_events) == (47, 47, 47)
    assert (stored.cost, stored.rollup_cost) == (cost, cost)
