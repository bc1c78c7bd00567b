"""How the instrumentations people run spell a model call's usage, and which of their spans
are model calls.

A trace of one agent run holds the run (``invoke_agent``, ``ai.generateText``, a workflow),
its steps and tools, and one span per model call; several of the outer spans repeat the
calls' summed usage. Only the model calls count: a span is classified on its own (its
``gen_ai.operation.name``, its name, its instrumentation's span kind, the mapping file's
rules), never by looking for its children, which may come in another export request.

Token classes are read under every spelling below, first found wins, and normalized to the
contract's convention (input counts cached reads and writes, output counts reasoning):
where an instrumentation reports cached tokens outside its input count, they are added to
it, once. docs/otlp.md has the table of instrumentations these come from.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INPUT = (
    "gen_ai.usage.input_tokens",  # GenAI semconv; OpenLLMetry; AI SDK 4-7
    "gen_ai.usage.prompt_tokens",  # GenAI semconv before 1.27; OpenLLMetry before 0.30
    "llm.token_count.prompt",  # OpenInference
    "ai.usage.inputTokens",  # AI SDK 5-7 (outer spans carry only these)
    "ai.usage.promptTokens",  # AI SDK 4-6
    "ai.usage.tokens",  # AI SDK embeddings
)
OUTPUT = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
)
CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",  # semconv 1.36+, OpenLLMetry 0.4x+
    "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry before
    "llm.token_count.prompt_details.cache_read",  # OpenInference
    "llm.token_count.prompt_details.cache_input",  # OpenInference, older
    "ai.usage.inputTokenDetails.cacheReadTokens",  # AI SDK 6-7
    "ai.usage.cachedInputTokens",  # AI SDK 5-7
)
CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.cache_write.input_tokens",  # opentelemetry-util-genai
    "llm.token_count.prompt_details.cache_write",
    "ai.usage.inputTokenDetails.cacheWriteTokens",
)
REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.outputTokenDetails.reasoningTokens",
    "ai.usage.reasoningTokens",
)
NO_CACHE = "ai.usage.inputTokenDetails.noCacheTokens"
"""AI SDK 6-7: the uncached part, so input = this + cache reads + cache writes exactly."""
CLASSES = (
    ("input_tokens", INPUT),
    ("output_tokens", OUTPUT),
    ("cached_input_tokens", CACHE_READ),
    ("cache_write_tokens", CACHE_WRITE),
    ("reasoning_tokens", REASONING),
)
USAGE_KEYS = INPUT + OUTPUT

MODEL = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "embedding.model_name",
    "ai.response.model",
    "ai.model.id",
)
PROVIDER = (
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "ai.model.provider",
)
AI_SDK_PROVIDER = "ai.model.provider"
"""The AI SDK's provider id names the API too (``openai.chat``, ``anthropic.messages``)."""

CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
AGGREGATE_OPERATIONS = frozenset(
    {
        "invoke_agent",
        "create_agent",
        "execute_tool",
        "invoke_workflow",
        "workflow",
        "agent_step",
        "agent",
        "task",
        "tool",
    }
)
AGGREGATE_NAMES = frozenset(
    {
        # AI SDK 4-6, and 7 with LegacyOpenTelemetry: the operation around its model calls
        # (``ai.generateText.doGenerate``, ``ai.streamText.doStream``, ``ai.embed.doEmbed`` ...)
        "ai.generateText",
        "ai.streamText",
        "ai.generateObject",
        "ai.streamObject",
        "ai.embed",
        "ai.embedMany",
        "ai.rerank",
        "ai.decide",
        "ai.workflowAgent.stream",
    }
)
AGGREGATE_KINDS = (
    (
        "openinference.span.kind",
        frozenset({"AGENT", "CHAIN", "TOOL", "RETRIEVER", "GUARDRAIL", "EVALUATOR", "PROMPT"}),
    ),
    ("traceloop.span.kind", frozenset({"workflow", "task", "agent", "tool"})),
)
CACHED_OUTSIDE_INPUT = ("@traceloop/instrumentation-anthropic",)
"""Instrumentation scopes whose input count is Anthropic's own: cached parts left out."""

SKIP_REASONS = (
    "no_usage",
    "aggregate_operation",
    "aggregate_name",
    "aggregate_kind",
    "aggregate_rule",
)


def globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """Span-name patterns (``*``, ``?``, ``[...]`` as in shell globs) as one regex."""
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True)
class Rules:
    """The mapping file's part of the decision: span names always counted as model calls,
    span names never counted (an app's own span that sums its calls), and the scopes whose
    input count leaves cached tokens out."""

    call_spans: re.Pattern[str] | None = None
    aggregate_spans: re.Pattern[str] | None = None
    cached_outside_input: frozenset[str] = frozenset(CACHED_OUTSIDE_INPUT)


def skip_reason(name: str, attrs: Mapping[str, Any], rules: Rules) -> str | None:
    """Why a span is no model call (a reason of SKIP_REASONS), or None when it is one."""
    for key in USAGE_KEYS:
        if key in attrs:
            break
    else:
        return "no_usage"
    if rules.call_spans is not None and rules.call_spans.match(name):
        return None
    if rules.aggregate_spans is not None and rules.aggregate_spans.match(name):
        return "aggregate_rule"
    operation = attrs.get("gen_ai.operation.name")
    if operation in CALL_OPERATIONS:
        return None
    if operation in AGGREGATE_OPERATIONS:
        return "aggregate_operation"
    if name in AGGREGATE_NAMES:
        return "aggregate_name"
    for key, kinds in AGGREGATE_KINDS:
        if attrs.get(key) in kinds:
            return "aggregate_kind"
    return None


def _count(keys: tuple[str, ...], attrs: Mapping[str, Any]) -> int | str:
    """A token count (0 when absent), or why it is not one."""
    for key in keys:
        if key in attrs:
            value = attrs[key]
            break
    else:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{key} is {value!r}, not a whole number"
    if value < 0:
        return f"{key} is negative ({value})"
    return value


def token_counts(attrs: Mapping[str, Any], scope: str, rules: Rules) -> dict[str, int] | str:
    """The span's token classes in the contract's convention, or why they cannot be read.

    Cached reads and writes are added to the input count once, when the instrumentation
    is known to leave them out (its scope is in ``rules.cached_outside_input``, or the AI SDK
    gives the uncached part itself), or when they exceed it (no other reading is
    consistent)."""
    counts: dict[str, int] = {}
    for name, keys in CLASSES:
        value = _count(keys, attrs)
        if isinstance(value, str):
            return value
        counts[name] = value
    cached = counts["cached_input_tokens"] + counts["cache_write_tokens"]
    if NO_CACHE in attrs:
        uncached = _count((NO_CACHE,), attrs)
        if isinstance(uncached, str):
            return uncached
        counts["input_tokens"] = uncached + cached
    elif scope in rules.cached_outside_input or cached > counts["input_tokens"]:
        counts["input_tokens"] += cached
    return counts


def provider_of(attrs: Mapping[str, Any], resource: Mapping[str, Any]) -> Any:
    for scope in (attrs, resource):
        for key in PROVIDER:
            if key in scope:
                value = scope[key]
                if key == AI_SDK_PROVIDER or value == attrs.get(AI_SDK_PROVIDER):
                    return str(value).split(".", 1)[0]
                return value
    return None


def model_of(attrs: Mapping[str, Any]) -> Any:
    for key in MODEL:
        if key in attrs:
            return attrs[key]
    return None
