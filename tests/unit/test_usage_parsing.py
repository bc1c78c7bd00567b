"""Usage from each response shape maps to one token convention."""

from __future__ import annotations

from types import SimpleNamespace as Obj

import pytest

from tokenledger.contract.pricing import TokenCounts
from tokenledger.usage import UsageNotFoundError, parse_usage


def test_openai_chat_completion_object() -> None:
    response = Obj(
        usage=Obj(
            prompt_tokens=2006,
            completion_tokens=300,
            total_tokens=2306,
            prompt_tokens_details=Obj(cached_tokens=1920, audio_tokens=0),
            completion_tokens_details=Obj(reasoning_tokens=192),
        )
    )
    assert parse_usage(response) == TokenCounts(
        input=2006, output=300, cached_input=1920, reasoning=192
    )


def test_openai_chat_completion_dict_without_details() -> None:
    response = {
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": None,
        }
    }
    assert parse_usage(response) == TokenCounts(input=12, output=5)


def test_openai_responses_api() -> None:
    response = {
        "usage": {
            "input_tokens": 5000,
            "output_tokens": 1200,
            "total_tokens": 6200,
            "input_tokens_details": {"cached_tokens": 4096},
            "output_tokens_details": {"reasoning_tokens": 1024},
        }
    }
    assert parse_usage(response) == TokenCounts(
        input=5000, output=1200, cached_input=4096, reasoning=1024
    )


def test_anthropic_counts_cache_reads_and_writes_into_input() -> None:
    response = Obj(
        usage=Obj(
            input_tokens=50,
            output_tokens=400,
            cache_read_input_tokens=8000,
            cache_creation_input_tokens=1200,
        )
    )
    assert parse_usage(response) == TokenCounts(
        input=9250, output=400, cached_input=8000, cache_write=1200
    )


def test_anthropic_without_cache_fields() -> None:
    assert parse_usage({"usage": {"input_tokens": 7, "output_tokens": 3}}) == TokenCounts(7, 3)


def test_gemini_usage_metadata_counts_thoughts_as_reasoning_output() -> None:
    response = {
        "usage_metadata": {
            "prompt_token_count": 900,
            "candidates_token_count": 100,
            "cached_content_token_count": 512,
            "thoughts_token_count": 250,
        }
    }
    assert parse_usage(response) == TokenCounts(
        input=900, output=350, cached_input=512, reasoning=250
    )


def test_a_usage_object_on_its_own() -> None:
    assert parse_usage(Obj(prompt_tokens=1, completion_tokens=2)) == TokenCounts(1, 2)


def test_no_usage_says_how_to_record_it() -> None:
    with pytest.raises(UsageNotFoundError, match="input_tokens= and output_tokens="):
        parse_usage({"choices": []})
