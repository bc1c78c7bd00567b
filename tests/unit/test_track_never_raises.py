"""Instrumentation never raises into the code it measures: a response without readable
usage, and a machine without tiktoken's ranks or a network, still give a usage event; bad
arguments give the event as given (for the worker's DLQ); a long prompt is cut to fit."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tokenledger import Ledger
from tokenledger.bad_input import AsGiven
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.prompts import fit
from tokenledger.streams.local.broker import free_port
from tokenledger.streams.records import MAX_MESSAGE_BYTES, Rejection, parse_message
from tokenledger.tokens import estimate_tokens, heuristic_tokens


def captured_ledger(tmp_path: Path) -> tuple[Ledger, list[Any]]:
    ledger = Ledger(
        "svc", bootstrap=f"127.0.0.1:{free_port()}", spill_dir=tmp_path, delivery_timeout_ms=500
    )
    events: list[Any] = []
    ledger.emit = events.append  # type: ignore[method-assign,assignment]
    return ledger, events


class NoUsage:
    choices: list[str] = []


def test_a_response_without_usage_is_reported_estimated_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, events = captured_ledger(tmp_path)
    try:
        prompt = "What is our refund policy? " * 20
        with caplog.at_level(logging.WARNING, logger="tokenledger.ledger"):
            for _ in range(2):
                with ledger.track(
                    tenant_id="acme",
                    feature="answer",
                    model="gpt-4o",
                    provider="openai",
                    prompt=prompt,
                ) as call:
                    assert call.record(NoUsage()) is None
            with ledger.track(
                tenant_id="acme", feature="answer", model="gpt-4o", provider="openai", prompt=prompt
            ) as call:
                assert call.record({"usage": {"prompt_tokens": "lots"}}) is None
        request, usage = events[0], events[1]
        assert isinstance(request, RequestEvent) and isinstance(usage, UsageEvent)
        assert (usage.estimated, usage.output_tokens, usage.success) == (True, 0, True)
        assert usage.input_tokens == request.estimated_input_tokens == call.estimated_input_tokens
        assert ledger.stats()["unreadable_usage"] == 3
        warned = [r.getMessage() for r in caplog.records if "no token usage readable" in r.message]
        assert len(warned) == 2  # once per response type: NoUsage, dict
        assert "NoUsage" in warned[0] and "dict" in warned[1]
    finally:
        ledger.close(timeout=1)


def test_the_decorator_reports_a_result_without_usage_as_estimated(tmp_path: Path) -> None:
    ledger, events = captured_ledger(tmp_path)
    try:

        @ledger.track(tenant_id="acme", feature="answer", model="gpt-4o", provider="openai")
        def answer() -> str:
            return "plain text, no usage"

        assert answer() == "plain text, no usage"
        assert events[-1].estimated and ledger.stats()["unreadable_usage"] == 1
    finally:
        ledger.close(timeout=1)


def test_the_heuristic_is_four_characters_a_token_rounded_up() -> None:
    assert [heuristic_tokens("x" * n) for n in (0, 1, 4, 5, 1200)] == [0, 1, 1, 2, 300]


SCRIPT = """
import json, socket, sys
attempts = []
def refuse(self, address, *rest):
    attempts.append(repr(address))
    raise OSError("no network here")
socket.socket.connect = refuse
socket.create_connection = lambda address, *a, **k: refuse(None, address)
from tokenledger import Ledger, tokens
ledger = Ledger("svc", bootstrap="127.0.0.1:9", spill_dir=sys.argv[1], delivery_timeout_ms=500)
events = []
ledger.emit = events.append
with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o", provider="openai",
                  prompt="hello world " * 100, max_output_tokens=10) as call:
    pass
tokens._loader.join(30)
ledger.close(timeout=1)
print(json.dumps({"estimated": events[0].estimated_input_tokens, "attempts": attempts,
                  "loaded": sorted(tokens._ready)}))
"""


def test_without_ranks_or_network_track_neither_raises_nor_reaches_out(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENLEDGER_", "TIKTOKEN_"))}
    env["TOKENLEDGER_HOME"] = str(tmp_path / "home")  # no rank files anywhere
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "spill")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"estimated": math.ceil(1200 / 4), "attempts": [], "loaded": []}
    assert "token counts for o200k_base are estimated" in done.stderr


def test_with_the_ranks_the_estimate_becomes_exact_once_loaded() -> None:
    from tokenledger import tokens

    tokens.warm_up()
    assert tokens._loader is not None
    tokens._loader.join(30)
    assert estimate_tokens("hello world", "gpt-4o") == 2  # tiktoken, not 11 / 4


def test_track_records_one_hour_writes_and_the_service_tier_of_the_response(
    tmp_path: Path,
) -> None:
    from anthropic.types import Message
    from openai.types.chat import ChatCompletion

    ledger, events = captured_ledger(tmp_path)
    try:
        message = Message.model_validate(
            {
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
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 3000,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 1000,
                        "ephemeral_1h_input_tokens": 2000,
                    },
                },
            }
        )
        with ledger.track(
            tenant_id="acme", feature="answer", model="claude-sonnet-4-5", provider="anthropic"
        ) as call:
            call.record(message)
        completion = ChatCompletion.model_validate(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1764000000,
                "model": "gpt-4o",
                "choices": [],
                "service_tier": "priority",
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )
        with ledger.track(
            tenant_id="acme", feature="answer", model="gpt-4o", provider="openai"
        ) as call:
            call.record(completion)
        anthropic, openai = events[1], events[3]
        assert (
            anthropic.input_tokens,
            anthropic.cache_write_tokens,
            anthropic.cache_write_1h_tokens,
        ) == (3100, 3000, 2000)
        assert (openai.service_tier, openai.input_tokens, openai.estimated) == (
            "priority",
            10,
            False,
        )
    finally:
        ledger.close(timeout=1)


SPACED = "' ' cannot be part of a name (letters, digits and . _ : @ + - only)"
EMPTY = "a name cannot be empty"


def as_sent(item: Any) -> tuple[str, bytes, dict[str, Any]]:
    """An event the contract refused, as the Ledger hands it to Kafka: topic, key, fields."""
    assert isinstance(item, AsGiven), item
    topic, key, value = item.record
    return topic, key, json.loads(value)


def verdict(item: AsGiven, model: type[Any]) -> tuple[str, str]:
    """What the worker makes of the bytes: its DLQ reason and detail."""
    rejection = parse_message(item.record[2], model)
    assert isinstance(rejection, Rejection), rejection
    return rejection.reason, rejection.detail


def test_bad_arguments_go_out_as_given_counted_and_logged_once_per_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, events = captured_ledger(tmp_path)
    dims: dict[str, Any] = {
        "tenant_id": "acme",
        "feature": "answer",
        "model": "gpt-4o",
        "provider": "openai",
    }
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                with ledger.track(**{**dims, "tenant_id": "acme corp"}) as spaced:
                    spaced.record(input_tokens=10, output_tokens=5)
            with ledger.track(**{**dims, "feature": ""}):
                pass
            with ledger.track(**dims, max_output_tokens=None) as unbounded:  # type: ignore[arg-type]
                unbounded.record(input_tokens=10, output_tokens=5)
            with ledger.track(**dims) as negative:
                negative.record(input_tokens=-1, output_tokens=5)
            ledger.outcome("task-1", True, tenant_id="acme corp", feature="answer")
        names = ledger.topics
        assert [type(e).__name__ for e in events] == ["AsGiven"] * 7 + [
            "UsageEvent",
            "RequestEvent",
            "AsGiven",
            "AsGiven",
        ]
        topic, key, request = as_sent(events[2])
        assert (topic, key, request["kind"], request["request_id"]) == (
            names.requests,
            b"acme corp",
            "request",
            spaced.request_id,
        )
        assert set(request) == set(RequestEvent.model_fields)  # the whole event, as given
        assert (request["tenant_id"], request["reserved_cost_nusd"]) == ("acme corp", 0)
        topic, key, usage = as_sent(events[3])
        assert (topic, key, usage["input_tokens"], usage["output_tokens"]) == (
            names.usage,
            b"acme corp",
            10,
            5,
        )
        assert as_sent(events[4])[2]["feature"] == ""
        assert as_sent(events[6])[2]["max_output_tokens"] is None
        assert as_sent(events[9])[2]["input_tokens"] == -1
        assert as_sent(events[10])[:2] == (names.outcomes, b"acme corp")
        assert [
            verdict(events[i], m)
            for i, m in [
                (0, RequestEvent),
                (1, UsageEvent),
                (4, RequestEvent),
                (5, UsageEvent),
                (6, RequestEvent),
                (9, UsageEvent),
                (10, OutcomeEvent),
            ]
        ] == [
            ("invalid_fields", f"tenant_id: {SPACED}"),
            ("invalid_fields", f"tenant_id: {SPACED}"),
            ("invalid_fields", f"feature: {EMPTY}"),
            ("invalid_fields", f"feature: {EMPTY}"),
            ("invalid_fields", "max_output_tokens: Input should be a valid integer"),
            ("negative_tokens", "input_tokens: Input should be greater than or equal to 0"),
            ("invalid_fields", f"tenant_id: {SPACED}"),
        ]
        assert ledger.stats()["invalid_events"] == 9
        tail = "it is sent as given and the worker dead-letters it; fix the arguments of this call"
        said = [r.getMessage() for r in caplog.records if r.name == "tokenledger.bad_input"]
        assert said == [
            f"a request event does not fit the contract (tenant_id: {SPACED}): {tail}",
            f"a request event does not fit the contract (feature: {EMPTY}): {tail}",
            "a request event does not fit the contract (max_output_tokens: Input should be a "
            f"valid integer): {tail}",
            "a usage event does not fit the contract (input_tokens: Input should be greater "
            f"than or equal to 0): {tail}",
        ]
    finally:
        ledger.close(timeout=1)


def test_a_bad_argument_never_hides_the_callers_own_exception(tmp_path: Path) -> None:
    ledger, events = captured_ledger(tmp_path)
    try:
        with pytest.raises(KeyError, match="'order-42'"):
            with ledger.track(
                tenant_id="acme", feature="answer", model="gpt-4o", provider="openai"
            ) as call:
                call.record(input_tokens=-1, output_tokens=5)
                raise KeyError("order-42")
        usage = as_sent(events[1])[2]
        assert (usage["success"], usage["error"], usage["input_tokens"]) == (
            False,
            "KeyError: 'order-42'",
            -1,
        )
        assert ledger.stats()["invalid_events"] == 1
    finally:
        ledger.close(timeout=1)


def test_a_long_prompt_is_cut_by_utf8_bytes_so_the_request_event_fits_a_message(
    tmp_path: Path,
) -> None:
    ledger = Ledger(
        "svc",
        bootstrap=f"127.0.0.1:{free_port()}",
        spill_dir=tmp_path,
        delivery_timeout_ms=500,
        include_prompts=True,
    )
    events: list[Any] = []
    ledger.emit = events.append  # type: ignore[method-assign,assignment]
    chat = [{"role": "user", "content": 'say "hi"\n' * 8_000}]
    try:
        for prompt in ("ü" * 40_000, chat, "ü" * 16_384):
            with ledger.track(
                tenant_id="acme", feature="answer", model="gpt-4o", provider="openai", prompt=prompt
            ):
                pass
        umlauts, chatted, fitting = (e for e in events if isinstance(e, RequestEvent))
        # 80,000 bytes of two-byte characters: 32,734 kept, whole characters, marked
        assert umlauts.prompt_text == "ü" * 16_367 + " [truncated: 32734 of 80000 bytes]"
        # the chat's JSON escapes (\" and \n) count as they travel: 23,107 bytes fit
        text = json.dumps(chat, ensure_ascii=False)
        assert chatted.prompt_text == text.encode()[:23_107].decode() + (
            " [truncated: 23107 of 96033 bytes]"
        )
        assert fitting.prompt_text == "ü" * 16_384  # exactly 32 KiB: kept whole
        for event in (umlauts, chatted, fitting):
            value = event.model_dump_json().encode()
            assert len(value) < MAX_MESSAGE_BYTES
            assert parse_message(value, RequestEvent) == event  # the worker takes it
        assert ledger.stats()["invalid_events"] == 0
    finally:
        ledger.close(timeout=1)


def test_fit_measures_the_prompt_as_it_travels_in_json() -> None:
    assert fit("a" * 100, limit=100) == "a" * 100
    assert fit("a" * 101, limit=100) == "a" * 70 + " [truncated: 70 of 101 bytes]"
    assert fit('"' * 60, limit=100) == '"' * 36 + " [truncated: 36 of 60 bytes]"  # \" is 2
    assert fit("😀" * 30, limit=100) == "😀" * 17 + " [truncated: 68 of 120 bytes]"
    assert fit("a\udc80b") == "a?b"  # a lone surrogate cannot be sent
