"""A Node app instrumented as teams run it (tests/interop/node/app.mjs, packages installed
by `make test` from its lockfile) exports OTLP through each integration's own exporter to
`tokenledger serve`, through the worker and the sink: ClickHouse holds one row per model
call with every token class and the cost the price source gives for it.

- `ai` 7 with `@ai-sdk/otel`'s recommended integration: the `invoke_agent` span repeating
  the run's summed usage is an aggregate, its `chat` spans are the calls;
- the same with `LegacyOpenTelemetry`: `ai.generateText` / `ai.streamText` are aggregates,
  `ai.generateText.doGenerate` / `ai.streamText.doStream` the calls, cache reads read from
  `ai.usage.*`;
- OpenLLMetry's `@traceloop/instrumentation-anthropic` over the Anthropic SDK: input without
  the cached parts, which are added once (also when they are smaller than the rest);
- OpenInference's OpenAI instrumentation over the OpenAI SDK: `llm.token_count.*`;
- an app's own span summing its calls, named aggregate by the mapping file's rule.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.edge import served
from tests.helpers.interop import Call, accepted_spans, check_rows, skipped, stored_rows
from tests.helpers.pipeline import Pipeline
from tests.helpers.provider_standin import Usage, provider_standin
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration
APP = Path(__file__).parents[1] / "interop" / "node"
MODEL = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"

# (integration, streamed, feature, the usage of each model call of the run)
AI_SDK_RUNS: list[tuple[str, bool, str, list[Usage]]] = [
    ("otel", False, "search", [Usage(1200, 80, cache_read=1024)]),
    (
        "otel",
        False,
        "planner",
        [
            Usage(2100, 40, cache_read=1920),
            Usage(2600, 55, 2048, 300),
            Usage(3100, 300, 2560, reasoning=120),
        ],
    ),
    ("otel", True, "chat", [Usage(900, 150)]),
    ("otel", True, "planner", [Usage(1500, 30, cache_read=1024), Usage(1700, 90, 1536)]),
    ("otel", False, "triage", [Usage(640, 12, cache_write=512), Usage(700, 20, 512)]),
    ("legacy", False, "search", [Usage(1300, 70, cache_read=1152)]),
    (
        "legacy",
        False,
        "planner",
        [Usage(2200, 45, 1920), Usage(2500, 60, 2304, 100), Usage(2900, 210, 2432, reasoning=64)],
    ),
    ("legacy", True, "chat", [Usage(800, 140, cache_read=256)]),
    ("legacy", True, "planner", [Usage(1400, 25, 1280), Usage(1650, 85, 1408)]),
]
PROVIDER_CALLS: dict[str, tuple[str, Usage]] = {
    # OpenLLMetry / Anthropic: the stand-in reports input_tokens without the cached parts
    "a1": ("traceloop", Usage(5000, 300, cache_read=1000)),
    "a2": ("traceloop", Usage(4000, 120, cache_read=0, cache_write=3000)),
    "a3": ("traceloop", Usage(1800, 60)),
    # OpenInference / OpenAI: prompt_tokens with the cached part inside
    "o1": ("openinference", Usage(1500, 80, cache_read=1024)),
    "o2": ("openinference", Usage(3000, 400, cache_read=2048, reasoning=256)),
    "o3": ("openinference", Usage(700, 35)),
}
SERVICES = {
    "otel": "interop-ai-otel",
    "legacy": "interop-ai-legacy",
    "traceloop": "interop-traceloop-anthropic",
    "openinference": "interop-openinference-openai",
}


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path, partitions=3)
    p.start_worker()
    p.start_sink()
    try:
        yield p
    finally:
        p.stop_all()


def planned() -> tuple[list[dict[str, Any]], list[Call]]:
    """The app's runs, and the model calls they make (the oracle's side)."""
    runs: list[dict[str, Any]] = []
    calls: list[Call] = []
    for integration, stream, feature, usages in AI_SDK_RUNS:
        runs.append(
            {
                "integration": integration,
                "stream": stream,
                "feature": feature,
                "calls": [u.as_json() for u in usages],
            }
        )
        calls += [Call(SERVICES[integration], feature, MODEL, "openai", u) for u in usages]
    runs.append({"integration": "app", "feature": "checkout", "total": Usage(9999, 999).as_json()})
    for call, (integration, usage) in PROVIDER_CALLS.items():
        model, provider = (CLAUDE, "anthropic") if integration == "traceloop" else (MODEL, "openai")
        runs.append({"integration": integration, "model": model, "call": call})
        feature = SERVICES[integration].removeprefix("interop-")
        calls.append(Call(SERVICES[integration], feature, model, provider, usage))
    return runs, calls


def test_node_instrumentations_count_each_model_call_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the Node interop app"
    assert (APP / "node_modules" / ".package-lock.json").exists(), (
        f"the interop app's packages are not installed: `make interop` (npm ci in {APP})"
    )
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "feature": ["tokenledger.feature", "ai.settings.context.feature"],
                "aggregate_spans": ["checkout-run *"],
            }
        )
    )
    runs, calls = planned()
    usages = {call: usage for call, (_, usage) in PROVIDER_CALLS.items()}
    with (
        served(pipeline.env, tmp_path, "--otlp-mapping", str(mapping)) as edge,
        provider_standin(usages) as standin,
    ):
        plan = {
            "endpoint": f"{edge.url}/v1/traces",
            "key": edge.key,
            "provider_url": standin.url,
            "model": MODEL,
            "model_provider": "openai",
            "runs": runs,
        }
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        done = subprocess.run(
            [node, str(APP / "app.mjs"), str(tmp_path / "plan.json")],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=APP,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.strip() == f"exported {len(runs)} runs"
        assert sorted(standin.served) == sorted(PROVIDER_CALLS)
        metrics = edge.call("GET", "/metrics", key=None).body.decode()

    otel_runs = sum(1 for r in AI_SDK_RUNS if r[0] == "otel")
    legacy_runs = len(AI_SDK_RUNS) - otel_runs
    assert len(calls) == 22
    assert accepted_spans(metrics) == len(calls)
    counts = skipped(metrics)
    # the agent runs (invoke_agent), the legacy operations, the app's own span
    assert (counts["aggregate_operation"], counts["aggregate_name"], counts["aggregate_rule"]) == (
        otel_runs,
        legacy_runs,
        1,
    )
    assert "aggregate_kind" not in counts
    wait_for(pipeline.stored_all, 120, "the worker and sink to store every event")
    assert set(pipeline.stop_all().values()) == {0}
    rows = stored_rows(pipeline.env)
    total = check_rows(rows, calls)
    assert total == pipeline.stored().cost
