"""Read token usage from the responses of LLM APIs, as SDK objects or as JSON.

Everything maps to one convention (tokenledger.contract.messages): ``input`` is the whole prompt with
cached reads and cache writes included; ``cache_write_1h`` is the 1-hour part of the cache
writes; ``output`` includes reasoning tokens.

The reading itself is ``genai_prices``' extractors (kept with its price data, so a new
usage field arrives with a package upgrade). This module only finds the usage object and
the shape it has, and hands the extractor what it reads:

| shape | extractor | what this module adds, and why |
| --- | --- | --- |
| OpenAI chat completion, stream final chunk | openai/chat | SDK objects -> dicts (it reads mappings only) |
| OpenAI Responses (incl. cache writes) | openai/responses | the same |
| Anthropic messages (incl. ``output_tokens_details``, cache-creation TTLs, ``message_delta``) | anthropic/default | told apart from Responses by Anthropic's cache keys (both have ``input_tokens`` and ``output_tokens_details``) |
| Gemini REST JSON ``usageMetadata`` (tool-use prompt, thoughts) | google/default | SDK objects and snake_case dicts (``usage_metadata``, ``prompt_token_count``) renamed to the REST camelCase it reads; a bare usage-metadata object wrapped |
| Bedrock Converse (``inputTokens``, ``cacheReadInputTokens``, ``cacheWriteInputTokens``) | aws/default | dicts only (boto3 returns dicts) |

A usage object passed alone (``response.usage``) is read like the response. The service
tier comes from the response (OpenAI ``service_tier``, Anthropic ``usage.service_tier``).
Modalities (audio, image tokens) are counted as text tokens: the contract has no class
for them yet.
"""  # noqa: E501

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genai_prices import data_snapshot

from tokenledger.contract.pricing import TokenCounts


class UsageNotFoundError(ValueError):
    """The response carries no usage this module can read; pass the counts explicitly."""


@dataclass(frozen=True)
class Reading:
    """The usage of one response: its tokens, its service tier ("" = standard) and the
    shape it was read as (``provider/flavor``)."""

    tokens: TokenCounts
    service_tier: str
    shape: str


_ANTHROPIC_KEYS = (
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "server_tool_use",
)
_CAMEL = re.compile(r"_([a-z])")


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _plain(obj: Any) -> Any:
    """SDK objects (pydantic models, plain objects) -> dicts and lists, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True, exclude_none=True)
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return obj


def _camel(obj: Any) -> Any:
    """Gemini's snake_case field names (Python SDK, Vertex dicts) -> its REST camelCase."""
    if isinstance(obj, dict):
        return {_CAMEL.sub(lambda m: m.group(1).upper(), k): _camel(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_camel(v) for v in obj]
    return obj


def _shape(usage: dict[str, Any]) -> tuple[str, str] | None:
    if "promptTokenCount" in usage or "candidatesTokenCount" in usage:
        return "google", "default"
    if "prompt_tokens" in usage:
        return "openai", "chat"
    if "inputTokens" in usage:
        return "aws", "default"
    if "input_tokens" in usage or "output_tokens" in usage:
        if any(key in usage for key in _ANTHROPIC_KEYS):
            return "anthropic", "default"
        if "input_tokens_details" in usage or "output_tokens_details" in usage:
            return "openai", "responses"
        return "anthropic", "default"
    return None


def _extract(provider_id: str, flavor: str, body: dict[str, Any]) -> Any:
    provider = data_snapshot.find_provider_by_id(
        data_snapshot.get_snapshot().providers, provider_id
    )
    assert provider is not None  # noqa: S101 - the ids above are the snapshot's own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # usage keys tokenledger has no price class for
        _, usage = provider.extract_usage(body, api_flavor=flavor)
    return usage


def read_usage(response: Any) -> Reading:
    """The usage of ``response`` (or of its usage object itself); raises
    UsageNotFoundError when there is none to read."""
    meta = _field(response, "usage_metadata", "usageMetadata")
    usage = meta if meta is not None else _field(response, "usage")
    usage = _plain(usage if usage is not None else response)
    if not isinstance(usage, dict):
        raise UsageNotFoundError(f"no token usage found on {type(response).__name__}")
    usage = _camel(usage) if meta is not None or "prompt_token_count" in usage else usage
    shape = _shape(usage)
    if shape is None:
        raise UsageNotFoundError(
            f"no token usage found on {type(response).__name__}; call record() with "
            "input_tokens= and output_tokens="
        )
    provider_id, flavor = shape
    if shape == ("anthropic", "default") and usage.get("input_tokens") is None:
        raise UsageNotFoundError(
            "this Anthropic usage has no input_tokens (a message_delta of an older API "
            "version): record the final message (stream.get_final_message())"
        )
    root = "usageMetadata" if provider_id == "google" else "usage"
    read = _extract(provider_id, flavor, {root: usage})
    value = read.reported_value
    tokens = TokenCounts(
        input=int(value("input_tokens")),
        output=int(value("output_tokens")),
        cached_input=int(value("cache_read_tokens")),
        cache_write=int(value("cache_write_tokens")),
        cache_write_1h=int(value("cache_write_1h_tokens")),
        reasoning=int(value("output_reasoning_tokens")),
    )
    tokens.parts()  # parts never exceed their totals
    tier = _field(response, "service_tier") or usage.get("service_tier") or ""
    return Reading(tokens, str(tier), f"{provider_id}/{flavor}")


def parse_usage(response: Any) -> TokenCounts:
    """Token usage of ``response`` (or of its ``usage`` object itself)."""
    return read_usage(response).tokens
