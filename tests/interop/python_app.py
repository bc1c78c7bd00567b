"""A Python app instrumented as teams run it: one instrumentation of the OpenAI and Anthropic
SDKs (OpenLLMetry, OpenInference or OpenTelemetry's own), the SDKs talking to the test's
HTTP stand-in for the providers, spans exported by OpenTelemetry's OTLP/HTTP exporter.

    python -m tests.interop.python_app INSTRUMENTATION PLAN.json

PLAN: {"endpoint", "key", "provider_url", "calls": [{"call", "sdk", "model"}]}. One process
per instrumentation: instrumentors patch the SDKs process-wide. Prints "exported N calls".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def instrumentors(name: str) -> list[Any]:
    if name == "openllmetry":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        return [OpenAIInstrumentor(), AnthropicInstrumentor()]
    if name == "openinference":
        from openinference.instrumentation.anthropic import (
            AnthropicInstrumentor as OIAnthropicInstrumentor,
        )
        from openinference.instrumentation.openai import (
            OpenAIInstrumentor as OIOpenAIInstrumentor,
        )

        return [OIOpenAIInstrumentor(), OIAnthropicInstrumentor()]
    if name == "opentelemetry":
        from opentelemetry.instrumentation.genai.anthropic import (
            AnthropicInstrumentor as OtelAnthropicInstrumentor,
        )
        from opentelemetry.instrumentation.genai.openai import (
            OpenAIInstrumentor as OtelOpenAIInstrumentor,
        )

        return [OtelOpenAIInstrumentor(), OtelAnthropicInstrumentor()]
    raise SystemExit(f"unknown instrumentation {name!r}")


def main() -> int:
    name, plan = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    resource = Resource.create(
        {
            "service.name": f"interop-{name}",
            "tokenledger.tenant_id": "acme",
            "tokenledger.feature": name,
        }
    )
    provider = TracerProvider(resource=resource)
    auth = {"authorization": f"Bearer {plan['key']}"}
    exporter = OTLPSpanExporter(endpoint=plan["endpoint"], headers=auth)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    for instrumentor in instrumentors(name):
        instrumentor.instrument(tracer_provider=provider)
    url = plan["provider_url"]
    oai = openai.OpenAI(api_key="test-key", base_url=f"{url}/v1", max_retries=0)
    claude = anthropic.Anthropic(api_key="test-key", base_url=url, max_retries=0)
    for call in plan["calls"]:
        text = f"call {call['call']}"
        if call["sdk"] == "anthropic":
            claude.messages.create(
                model=call["model"], max_tokens=64, messages=[{"role": "user", "content": text}]
            )
        else:
            oai.chat.completions.create(
                model=call["model"], messages=[{"role": "user", "content": text}]
            )
    provider.shutdown()
    print(f"exported {len(plan['calls'])} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
