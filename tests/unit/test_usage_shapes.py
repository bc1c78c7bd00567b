"""Real provider response bodies (official SDK types and REST JSON): exact token counts, and
each one's cost equals genai_prices.calc_price for the same usage to the nano-dollar."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN
from typing import Any

import genai_prices
import pytest
from anthropic.types import Message, MessageDeltaEvent
from google.genai import types as gemini
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from tokenledger.contract.price_book import CallContext, load_price_book
from tokenledger.contract.pricing import TokenCounts
from tokenledger.usage import UsageNotFoundError, read_usage

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)
BOOK = load_price_book()

CHAT_USAGE = {
    "prompt_tokens": 3500,
    "completion_tokens": 420,
    "total_tokens": 3920,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
}
CHAT_JSON = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1764000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [],
    "usage": CHAT_USAGE,
    "service_tier": "default",
}
CHUNK_JSON = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1764000000,
    "model": "gpt-4o",
    "choices": [],
    "usage": CHAT_USAGE,
}
RESPONSES_JSON = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1764000000,
    "model": "gpt-5",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "service_tier": "flex",
    "usage": {
        "input_tokens": 5000,
        "output_tokens": 800,
        "total_tokens": 5800,
        "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 2000},
        "output_tokens_details": {"reasoning_tokens": 300},
    },
}
ANTHROPIC_JSON: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens_details": {"thinking_tokens": 20},
        "service_tier": "standard",
    },
}
DELTA_JSON = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {
        "input_tokens": 4000,
        "output_tokens": 900,
        "cache_read_input_tokens": 30000,
        "cache_creation_input_tokens": 0,
    },
}
GEMINI_REST = {
    "candidates": [],
    "modelVersion": "gemini-2.5-flash",
    "usageMetadata": {
        "promptTokenCount": 9000,
        "candidatesTokenCount": 600,
        "cachedContentTokenCount": 4000,
        "thoughtsTokenCount": 250,
        "toolUsePromptTokenCount": 700,
        "totalTokenCount": 10550,
    },
}
GEMINI_SNAKE = {
    "prompt_token_count": 9000,
    "candidates_token_count": 600,
    "cached_content_token_count": 4000,
    "thoughts_token_count": 250,
    "tool_use_prompt_token_count": 700,
}
CONVERSE_JSON = {
    "output": {"message": {"role": "assistant", "content": []}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 300,
        "outputTokens": 120,
        "totalTokens": 5420,
        "cacheReadInputTokens": 4000,
        "cacheWriteInputTokens": 1000,
    },
    "metrics": {"latencyMs": 900},
}

GEMINI_TOKENS = TokenCounts(input=9700, output=850, cached_input=4000, reasoning=250)
GEMINI_LIBRARY = {
    "input_tokens": 9700,
    "cache_read_tokens": 4000,
    "output_tokens": 850,
    "output_reasoning_tokens": 250,
}

# (name, response, provider, model, tokens, service tier, the library's usage of the call)
SHAPES: list[tuple[str, Any, str, str, TokenCounts, str, dict[str, int]]] = [
    (
        "openai chat sdk",
        ChatCompletion.model_validate(CHAT_JSON),
        "openai",
        "gpt-4o",
        TokenCounts(3500, 420, cached_input=1024, reasoning=128),
        "default",
        {
            "input_tokens": 3500,
            "cache_read_tokens": 1024,
            "output_tokens": 420,
            "output_reasoning_tokens": 128,
        },
    ),
    (
        "openai chat json",
        CHAT_JSON,
        "openai",
        "gpt-4o",
        TokenCounts(3500, 420, cached_input=1024, reasoning=128),
        "default",
        {
            "input_tokens": 3500,
            "cache_read_tokens": 1024,
            "output_tokens": 420,
            "output_reasoning_tokens": 128,
        },
    ),
    (
        "openai chat stream final chunk",
        ChatCompletionChunk.model_validate(CHUNK_JSON),
        "openai",
        "gpt-4o",
        TokenCounts(3500, 420, cached_input=1024, reasoning=128),
        "",
        {
            "input_tokens": 3500,
            "cache_read_tokens": 1024,
            "output_tokens": 420,
            "output_reasoning_tokens": 128,
        },
    ),
    (
        "openai responses sdk, cache writes, flex",
        Response.model_validate(RESPONSES_JSON),
        "openai",
        "gpt-5",
        TokenCounts(5000, 800, cached_input=1000, cache_write=2000, reasoning=300),
        "flex",
        {
            "input_tokens": 5000,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 2000,
            "output_tokens": 800,
            "output_reasoning_tokens": 300,
        },
    ),
    (
        "openai responses bare usage",
        Response.model_validate(RESPONSES_JSON).usage,
        "openai",
        "gpt-5",
        TokenCounts(5000, 800, cached_input=1000, cache_write=2000, reasoning=300),
        "",
        {
            "input_tokens": 5000,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 2000,
            "output_tokens": 800,
            "output_reasoning_tokens": 300,
        },
    ),
    (
        "anthropic message sdk with output_tokens_details and 1h writes",
        Message.model_validate(ANTHROPIC_JSON),
        "anthropic",
        "claude-sonnet-4-5",
        TokenCounts(
            5100, 50, cached_input=2000, cache_write=3000, cache_write_1h=2000, reasoning=20
        ),
        "standard",
        {
            "input_tokens": 5100,
            "cache_read_tokens": 2000,
            "cache_write_tokens": 3000,
            "cache_write_1h_tokens": 2000,
            "output_tokens": 50,
            "output_reasoning_tokens": 20,
        },
    ),
    (
        "anthropic message json on vertex",
        ANTHROPIC_JSON,
        "vertex_ai",
        "claude-sonnet-4-5@20250929",
        TokenCounts(
            5100, 50, cached_input=2000, cache_write=3000, cache_write_1h=2000, reasoning=20
        ),
        "standard",
        {
            "input_tokens": 5100,
            "cache_read_tokens": 2000,
            "cache_write_tokens": 3000,
            "cache_write_1h_tokens": 2000,
            "output_tokens": 50,
            "output_reasoning_tokens": 20,
        },
    ),
    (
        "anthropic stream message_delta",
        MessageDeltaEvent.model_validate(DELTA_JSON),
        "anthropic",
        "claude-haiku-4-5",
        TokenCounts(34000, 900, cached_input=30000),
        "",
        {"input_tokens": 34000, "cache_read_tokens": 30000, "output_tokens": 900},
    ),
    (
        "gemini sdk response with tool-use prompt and thoughts",
        gemini.GenerateContentResponse(
            model_version="gemini-2.5-flash",
            usage_metadata=gemini.GenerateContentResponseUsageMetadata(**GEMINI_SNAKE),
        ),
        "google",
        "gemini-2.5-flash",
        GEMINI_TOKENS,
        "",
        GEMINI_LIBRARY,
    ),
    (
        "gemini rest json",
        GEMINI_REST,
        "gemini",
        "models/gemini-2.5-flash",
        GEMINI_TOKENS,
        "",
        GEMINI_LIBRARY,
    ),
    (
        "gemini bare usage_metadata object",
        gemini.GenerateContentResponseUsageMetadata(**GEMINI_SNAKE),
        "vertex_ai",
        "gemini-2.5-flash",
        GEMINI_TOKENS,
        "",
        GEMINI_LIBRARY,
    ),
    (
        "gemini snake_case dict (vertex)",
        {"usage_metadata": GEMINI_SNAKE},
        "vertex_ai",
        "gemini-2.5-flash",
        GEMINI_TOKENS,
        "",
        GEMINI_LIBRARY,
    ),
    (
        "bedrock converse",
        CONVERSE_JSON,
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        TokenCounts(5300, 120, cached_input=4000, cache_write=1000),
        "",
        {
            "input_tokens": 5300,
            "cache_read_tokens": 4000,
            "cache_write_tokens": 1000,
            "output_tokens": 120,
        },
    ),
]


@pytest.mark.parametrize(
    ("response", "provider", "model", "tokens", "tier", "library"),
    [s[1:] for s in SHAPES],
    ids=[s[0] for s in SHAPES],
)
def test_each_shape_reads_exactly_and_prices_like_calc_price(
    response: Any,
    provider: str,
    model: str,
    tokens: TokenCounts,
    tier: str,
    library: dict[str, int],
) -> None:
    reading = read_usage(response)
    assert reading.tokens == tokens
    assert reading.service_tier == tier
    context = CallContext(service_tier=reading.service_tier)
    priced = BOOK.price(provider, model, AT, reading.tokens, context)
    assert priced is not None
    provider_id = {"vertex_ai": "google", "gemini": "google", "bedrock": "aws"}.get(
        provider, provider
    )
    ref = model.removeprefix("models/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = genai_prices.calc_price(
            genai_prices.Usage(**library),
            ref,
            provider_id=provider_id,
            genai_request_timestamp=AT,
            price_context=dict(context.source_context()) or None,
        )
    assert priced.cost_nusd == int((calc.total_price * 10**9).to_integral_value(ROUND_HALF_EVEN))


def test_anthropic_cache_reads_are_not_lost_to_the_responses_reader() -> None:
    # the usage carries output_tokens_details, as OpenAI Responses usage does; it is still
    # Anthropic's, whose input_tokens exclude cache reads and writes
    reading = read_usage(Message.model_validate(ANTHROPIC_JSON))
    assert reading.shape == "anthropic/default"
    assert (reading.tokens.input, reading.tokens.cached_input) == (5100, 2000)


def test_priority_tier_is_read_from_the_response_and_priced() -> None:
    body = {**ANTHROPIC_JSON, "usage": {**ANTHROPIC_JSON["usage"], "service_tier": "priority"}}
    assert read_usage(Message.model_validate(body)).service_tier == "priority"
    body = {**CHAT_JSON, "service_tier": "priority"}
    reading = read_usage(ChatCompletion.model_validate(body))
    standard = BOOK.price("openai", "gpt-4o", AT, reading.tokens)
    priority = BOOK.price(
        "openai", "gpt-4o", AT, reading.tokens, CallContext(service_tier=reading.service_tier)
    )
    assert standard is not None and priority is not None
    assert priority.cost_nusd * 10 == standard.cost_nusd * 17  # $4.25 vs $2.50: 1.7x


@pytest.mark.parametrize(
    "response",
    [
        None,
        {},
        {"usage": None},
        {"choices": []},
        "text",
        42,
        {"type": "message_delta", "usage": {"output_tokens": 9}},
        gemini.GenerateContentResponse(candidates=[]),
    ],
    ids=[
        "none",
        "empty",
        "null-usage",
        "no-usage",
        "str",
        "int",
        "delta-without-input",
        "gemini-without-metadata",
    ],
)
def test_no_readable_usage_raises_usage_not_found(response: Any) -> None:
    with pytest.raises(UsageNotFoundError):
        read_usage(response)
