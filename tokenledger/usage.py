"""Read token usage from the response shapes of common LLM APIs.

Everything maps to one convention (schemas.messages): ``input`` is the whole prompt with
cached reads and cache writes included; ``output`` includes reasoning tokens. Responses may
be SDK objects or plain dicts (e.g. parsed JSON).

| shape | fields read |
| --- | --- |
| OpenAI chat completions | usage.prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens |
| OpenAI responses | usage.input_tokens, output_tokens, input_tokens_details.cached_tokens, output_tokens_details.reasoning_tokens |
| Anthropic messages | usage.input_tokens (uncached only), output_tokens, cache_read_input_tokens, cache_creation_input_tokens |
| Gemini | usage_metadata.prompt_token_count, candidates_token_count, cached_content_token_count, thoughts_token_count |
"""  # noqa: E501

from __future__ import annotations

from typing import Any

from schemas.pricing import TokenCounts


class UsageNotFoundError(ValueError):
    """The response carries no usage this module can read; pass the counts explicitly."""


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(obj: Any, name: str) -> int:
    value = _get(obj, name)
    return int(value) if value else 0


def _has(obj: Any, name: str) -> bool:
    return _get(obj, name) is not None


def parse_usage(response: Any) -> TokenCounts:
    """Token usage of ``response`` (or of its ``usage`` object itself)."""
    meta = _get(response, "usage_metadata")
    if meta is not None:
        thoughts = _int(meta, "thoughts_token_count")
        return TokenCounts(
            input=_int(meta, "prompt_token_count"),
            output=_int(meta, "candidates_token_count") + thoughts,
            cached_input=_int(meta, "cached_content_token_count"),
            reasoning=thoughts,
        )
    usage = _get(response, "usage")
    if usage is None:
        usage = response
    if _has(usage, "prompt_tokens"):
        return TokenCounts(
            input=_int(usage, "prompt_tokens"),
            output=_int(usage, "completion_tokens"),
            cached_input=_int(_get(usage, "prompt_tokens_details"), "cached_tokens"),
            reasoning=_int(_get(usage, "completion_tokens_details"), "reasoning_tokens"),
        )
    if _has(usage, "input_tokens") and _has(usage, "output_tokens"):
        if _has(usage, "input_tokens_details") or _has(usage, "output_tokens_details"):
            return TokenCounts(
                input=_int(usage, "input_tokens"),
                output=_int(usage, "output_tokens"),
                cached_input=_int(_get(usage, "input_tokens_details"), "cached_tokens"),
                reasoning=_int(_get(usage, "output_tokens_details"), "reasoning_tokens"),
            )
        cache_read = _int(usage, "cache_read_input_tokens")
        cache_write = _int(usage, "cache_creation_input_tokens")
        return TokenCounts(
            input=_int(usage, "input_tokens") + cache_read + cache_write,
            output=_int(usage, "output_tokens"),
            cached_input=cache_read,
            cache_write=cache_write,
        )
    raise UsageNotFoundError(
        f"no token usage found on {type(response).__name__}; call record() with "
        "input_tokens= and output_tokens="
    )
