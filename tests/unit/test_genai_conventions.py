"""Which spans are model calls, and their token classes in the contract's convention, for
the span shapes the instrumentations in docs/otlp.md emit (attribute names as their
source writes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tokenledger.streams.edge import genai_conventions as conventions
from tokenledger.streams.edge.genai_spans import Outcome, SpanMapping
from tokenledger.streams.errors import UserError

DEFAULT = SpanMapping().rules
U = "gen_ai.usage."


@pytest.mark.parametrize(
    ("name", "attrs", "reason"),
    [
        # OpenTelemetry GenAI semconv: the operation decides
        ("chat gpt-4o", {"gen_ai.operation.name": "chat", U + "input_tokens": 5}, None),
        ("embeddings e", {"gen_ai.operation.name": "embeddings", U + "input_tokens": 5}, None),
        (
            "generate_content g",
            {"gen_ai.operation.name": "generate_content", U + "output_tokens": 5},
            None,
        ),
        (
            "invoke_agent gpt-4o",
            {"gen_ai.operation.name": "invoke_agent", U + "input_tokens": 9},
            "aggregate_operation",
        ),
        (
            "x",
            {"gen_ai.operation.name": "execute_tool", U + "input_tokens": 9},
            "aggregate_operation",
        ),
        (
            "x",
            {"gen_ai.operation.name": "invoke_workflow", U + "input_tokens": 9},
            "aggregate_operation",
        ),
        # AI SDK 4-6 and LegacyOpenTelemetry: the operation spans by name, calls are do*
        ("ai.generateText", {"ai.usage.inputTokens": 9}, "aggregate_name"),
        ("ai.streamText", {"ai.usage.promptTokens": 9}, "aggregate_name"),
        ("ai.embedMany", {"ai.usage.tokens": 9}, "aggregate_name"),
        ("ai.generateText.doGenerate", {U + "input_tokens": 5, "ai.usage.inputTokens": 5}, None),
        ("ai.embed.doEmbed", {"ai.usage.tokens": 5}, None),
        # OpenInference and Traceloop span kinds
        (
            "agent",
            {"openinference.span.kind": "AGENT", "llm.token_count.prompt": 9},
            "aggregate_kind",
        ),
        ("ChatCompletion", {"openinference.span.kind": "LLM", "llm.token_count.prompt": 9}, None),
        (
            "plan.workflow",
            {"traceloop.span.kind": "workflow", U + "input_tokens": 9},
            "aggregate_kind",
        ),
        # no usage at all, whatever else
        ("SELECT orders", {"db.system": "postgresql"}, "no_usage"),
        ("step 1", {"gen_ai.operation.name": "agent_step"}, "no_usage"),
        # unknown shapes with usage count, as before
        ("my-llm-call", {U + "input_tokens": 5}, None),
    ],
)
def test_each_span_is_a_call_or_skipped_by_reason(
    name: str, attrs: dict[str, Any], reason: str | None
) -> None:
    assert conventions.skip_reason(name, attrs, DEFAULT) == reason


def test_mapping_rules_name_aggregates_and_calls_before_the_built_in_ones(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(
        json.dumps({"aggregate_spans": ["checkout-run *"], "call_spans": ["invoke_agent solo-*"]})
    )
    rules = SpanMapping.from_file(path).rules
    usage = {U + "input_tokens": 5}
    assert conventions.skip_reason("checkout-run cart", usage, rules) == "aggregate_rule"
    assert conventions.skip_reason("checkout-run", usage, rules) is None
    agent = {**usage, "gen_ai.operation.name": "invoke_agent"}
    assert conventions.skip_reason("invoke_agent solo-1", agent, rules) is None
    assert conventions.skip_reason("invoke_agent team", agent, rules) == "aggregate_operation"
    for bad in ({"aggregate_spans": "x*"}, {"call_spans": [""]}, {"aggregate_span": ["x"]}):
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError):
            SpanMapping.from_file(path)


def counts(attrs: dict[str, Any], scope: str = "", rules: conventions.Rules = DEFAULT) -> Any:
    got = conventions.token_counts(attrs, scope, rules)
    assert not isinstance(got, str), got
    return (
        got["input_tokens"],
        got["cached_input_tokens"],
        got["cache_write_tokens"],
        got["output_tokens"],
        got["reasoning_tokens"],
    )


@pytest.mark.parametrize(
    ("scope", "attrs", "expected"),
    [
        # semconv current (util-genai writes cache_write), input with the cached parts inside
        (
            "opentelemetry.instrumentation.genai.anthropic",
            {
                U + "input_tokens": 4000,
                U + "output_tokens": 120,
                U + "cache_write.input_tokens": 3000,
            },
            (4000, 0, 3000, 120, 0),
        ),
        (
            "",
            {
                U + "input_tokens": 1500,
                U + "output_tokens": 380,
                U + "cache_read.input_tokens": 1024,
                U + "reasoning.output_tokens": 256,
            },
            (1500, 1024, 0, 380, 256),
        ),
        # semconv before 1.27 / OpenLLMetry's older names
        (
            "",
            {
                U + "prompt_tokens": 800,
                U + "completion_tokens": 90,
                U + "cache_read_input_tokens": 512,
                U + "cache_creation_input_tokens": 100,
                U + "reasoning_tokens": 10,
            },
            (800, 512, 100, 90, 10),
        ),
        # OpenLLMetry JS Anthropic: Anthropic's input_tokens, cached parts outside (added once)
        (
            "@traceloop/instrumentation-anthropic",
            {
                U + "input_tokens": 4000,
                U + "output_tokens": 300,
                U + "cache_read.input_tokens": 1000,
            },
            (5000, 1000, 0, 300, 0),
        ),
        # the same numbers from an instrumentation that includes them: nothing added
        (
            "opentelemetry.instrumentation.anthropic",
            {
                U + "input_tokens": 4000,
                U + "output_tokens": 300,
                U + "cache_read.input_tokens": 1000,
            },
            (4000, 1000, 0, 300, 0),
        ),
        # unknown scope, cached parts larger than the input: only consistent if outside
        (
            "",
            {
                U + "input_tokens": 100,
                U + "output_tokens": 7,
                U + "cache_read.input_tokens": 2000,
                U + "cache_creation.input_tokens": 500,
            },
            (2600, 2000, 500, 7, 0),
        ),
        # OpenInference
        (
            "openinference.instrumentation.openai",
            {
                "llm.token_count.prompt": 1500,
                "llm.token_count.completion": 380,
                "llm.token_count.prompt_details.cache_read": 1024,
                "llm.token_count.completion_details.reasoning": 256,
            },
            (1500, 1024, 0, 380, 256),
        ),
        (
            "openinference.instrumentation.anthropic",
            {
                "llm.token_count.prompt": 4000,
                "llm.token_count.completion": 120,
                "llm.token_count.prompt_details.cache_write": 3000,
            },
            (4000, 0, 3000, 120, 0),
        ),
        (
            "",
            {
                "llm.token_count.prompt": 900,
                "llm.token_count.completion": 1,
                "llm.token_count.prompt_details.cache_input": 512,
            },
            (900, 512, 0, 1, 0),
        ),
        # AI SDK 4: promptTokens / completionTokens
        ("ai", {"ai.usage.promptTokens": 700, "ai.usage.completionTokens": 20}, (700, 0, 0, 20, 0)),
        # AI SDK 5: cachedInputTokens, reasoningTokens
        (
            "ai",
            {
                "ai.usage.inputTokens": 2000,
                "ai.usage.outputTokens": 50,
                "ai.usage.cachedInputTokens": 1536,
                "ai.usage.reasoningTokens": 12,
            },
            (2000, 1536, 0, 50, 12),
        ),
        # AI SDK 6-7: the uncached part given, so input = it + reads + writes, whatever else says
        (
            "ai",
            {
                U + "input_tokens": 2600,
                U + "output_tokens": 55,
                "ai.usage.inputTokens": 2600,
                "ai.usage.inputTokenDetails.noCacheTokens": 252,
                "ai.usage.inputTokenDetails.cacheReadTokens": 2048,
                "ai.usage.inputTokenDetails.cacheWriteTokens": 300,
                "ai.usage.cachedInputTokens": 2048,
            },
            (2600, 2048, 300, 55, 0),
        ),
        (
            "ai",
            {
                "ai.usage.inputTokens": 952,
                "ai.usage.outputTokens": 5,
                "ai.usage.inputTokenDetails.noCacheTokens": 952,
                "ai.usage.inputTokenDetails.cacheReadTokens": 2048,
            },
            (3000, 2048, 0, 5, 0),
        ),
        # AI SDK embeddings
        ("ai", {"ai.usage.tokens": 64}, (64, 0, 0, 0, 0)),
    ],
)
def test_every_spelling_reads_as_the_contract_counts(
    scope: str, attrs: dict[str, Any], expected: tuple[int, ...]
) -> None:
    assert counts(attrs, scope) == expected


def test_a_mapping_file_names_the_scopes_that_leave_cached_tokens_out(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"cached_outside_input": ["my.anthropic.wrapper"]}))
    rules = SpanMapping.from_file(path).rules
    attrs = {U + "input_tokens": 4000, U + "cache_read.input_tokens": 1000}
    assert counts(attrs, "my.anthropic.wrapper", rules)[0] == 5000
    assert counts(attrs, "@traceloop/instrumentation-anthropic", rules)[0] == 4000


def test_bad_counts_name_the_attribute() -> None:
    got = conventions.token_counts({"llm.token_count.prompt": "12"}, "", DEFAULT)
    assert got == "llm.token_count.prompt is '12', not a whole number"
    got = conventions.token_counts({"ai.usage.inputTokenDetails.noCacheTokens": -1}, "", DEFAULT)
    assert got == "ai.usage.inputTokenDetails.noCacheTokens is negative (-1)"


@pytest.mark.parametrize(
    ("attrs", "model", "provider"),
    [
        (
            {
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.provider.name": "openai",
            },
            "gpt-4o-2024-08-06",
            "openai",
        ),
        (
            {"llm.model_name": "claude-sonnet-4-5", "llm.system": "anthropic"},
            "claude-sonnet-4-5",
            "anthropic",
        ),
        (
            {"embedding.model_name": "text-embedding-3-small", "llm.provider": "azure"},
            "text-embedding-3-small",
            "azure",
        ),
        # the AI SDK's provider id names the API too
        (
            {
                "gen_ai.system": "anthropic.messages",
                "ai.model.provider": "anthropic.messages",
                "ai.model.id": "claude-sonnet-4-5",
            },
            "claude-sonnet-4-5",
            "anthropic",
        ),
        (
            {"ai.model.provider": "openai.chat", "ai.response.model": "gpt-4o-mini"},
            "gpt-4o-mini",
            "openai",
        ),
    ],
)
def test_model_and_provider_spellings(attrs: dict[str, Any], model: str, provider: str) -> None:
    assert (conventions.model_of(attrs), conventions.provider_of(attrs, {})) == (model, provider)


def test_the_reply_tells_how_many_spans_were_skipped_as_aggregates() -> None:
    outcome = Outcome()
    for reason in ("no_usage", "no_usage", "aggregate_operation", "aggregate_name"):
        outcome.skip(reason)
    assert outcome.reply_message() == (
        "2 spans skipped as aggregates of model calls (agent, workflow or operation spans; "
        "each call is counted from its own span)"
    )
    outcome.reject("no_tenant", "span 01: no tenant attribute")
    assert outcome.reply_message().startswith("span 01: no tenant attribute; 2 spans skipped")
    assert Outcome(skipped={"no_usage": 3}).reply_message() == ""
