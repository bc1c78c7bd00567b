"""Python apps instrumented as teams run them (tests/interop/python_app.py, one process per
instrumentation: OpenLLMetry, OpenInference, OpenTelemetry's own GenAI instrumentations),
the OpenAI and Anthropic SDKs against a local HTTP stand-in for the providers, export OTLP
to `tokenledger serve`, through the worker and the sink: ClickHouse holds one row per call
with every token class and the cost the price source gives for it. An export request with
an agent span repeating its calls' usage is told, in its partial success, that the span was
skipped as an aggregate."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers.edge import served
from tests.helpers.interop import Call, accepted_spans, check_rows, skipped, stored_rows
from tests.helpers.pipeline import Pipeline
from tests.helpers.provider_standin import Usage, provider_standin
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration
INSTRUMENTATIONS = ("openllmetry", "openinference", "opentelemetry")
CLAUDE, GPT = "claude-sonnet-4-5", "gpt-4o-mini"
# per instrumentation: (sdk, model, usage); Anthropic's reply leaves the cached parts out of
# input_tokens, OpenAI's counts the cached part in prompt_tokens
CALLS = [
    ("anthropic", CLAUDE, Usage(5000, 300, cache_read=1000)),
    ("anthropic", CLAUDE, Usage(4000, 120, cache_write=3000)),
    ("openai", GPT, Usage(1500, 380, cache_read=1024, reasoning=256)),
    ("openai", GPT, Usage(900, 45)),
]
PROVIDERS = {"anthropic": "anthropic", "openai": "openai"}


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path, partitions=3)
    p.start_worker()
    p.start_sink()
    try:
        yield p
    finally:
        p.stop_all()


def agent_span_request() -> bytes:
    """An OTLP request with one agent span carrying its run's summed usage."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agents"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("agents").start_span("invoke_agent planner")
    span.set_attributes(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": GPT,
            "gen_ai.usage.input_tokens": 4000,
            "gen_ai.usage.output_tokens": 200,
            "tokenledger.tenant_id": "acme",
        }
    )
    span.end()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def test_python_instrumentations_count_each_model_call_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    usages = {
        f"{name[:5]}{i}": usage
        for name in INSTRUMENTATIONS
        for i, (_, _, usage) in enumerate(CALLS)
    }
    expected: list[Call] = []
    with served(pipeline.env, tmp_path) as edge, provider_standin(usages) as standin:
        for name in INSTRUMENTATIONS:
            calls = [
                {"call": f"{name[:5]}{i}", "sdk": sdk, "model": model}
                for i, (sdk, model, _) in enumerate(CALLS)
            ]
            plan = {
                "endpoint": f"{edge.url}/v1/traces",
                "key": edge.key,
                "provider_url": standin.url,
                "calls": calls,
            }
            path = tmp_path / f"plan-{name}.json"
            path.write_text(json.dumps(plan))
            done = subprocess.run(
                [sys.executable, "-m", "tests.interop.python_app", name, str(path)],
                capture_output=True,
                text=True,
                timeout=120,
                env=pipeline.env,
            )
            assert (done.returncode, done.stdout.strip()) == (0, "exported 4 calls"), done.stderr
            expected += [
                Call(f"interop-{name}", name, model, PROVIDERS[sdk], usage)
                for sdk, model, usage in CALLS
            ]
        assert sorted(standin.served) == sorted(usages)

        answer = edge.call(
            "POST", "/v1/traces", agent_span_request(), {"Content-Type": "application/x-protobuf"}
        )
        reply = ExportTraceServiceResponse.FromString(answer.body)
        assert answer.status == 200
        assert reply.partial_success.rejected_spans == 0
        assert reply.partial_success.error_message == (
            "1 span skipped as an aggregate of model calls (agent, workflow or operation "
            "spans; each call is counted from its own span)"
        )
        metrics = edge.call("GET", "/metrics", key=None).body.decode()

    assert accepted_spans(metrics) == len(expected) == 12
    assert skipped(metrics) == {"aggregate_operation": 1.0}
    wait_for(pipeline.stored_all, 120, "the worker and sink to store every event")
    assert set(pipeline.stop_all().values()) == {0}
    total = check_rows(stored_rows(pipeline.env), expected)
    assert total == pipeline.stored().cost
