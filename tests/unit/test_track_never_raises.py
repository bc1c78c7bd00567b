"""Instrumentation never raises into the code it measures: a response without readable
usage, and a machine without tiktoken's ranks or a network, still give a usage event."""

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

from schemas.messages import RequestEvent, UsageEvent
from streams.local.broker import free_port
from tokenledger import Ledger
from tokenledger.tokens import estimate_tokens, heuristic_tokens


def captured_ledger(tmp_path: Path) -> tuple[Ledger, list[Any]]:
    ledger = Ledger("svc", bootstrap=f"127.0.0.1:{free_port()}", spill_dir=tmp_path,
                    delivery_timeout_ms=500)  # fmt: skip
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
                with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                                  provider="openai", prompt=prompt) as call:  # fmt: skip
                    assert call.record(NoUsage()) is None
            with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                              provider="openai", prompt=prompt) as call:  # fmt: skip
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
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOKENLEDGER_", "TIKTOKEN_"))}  # fmt: skip
    env["TOKENLEDGER_HOME"] = str(tmp_path / "home")  # no rank files anywhere
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "spill")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
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
        message = Message.model_validate({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 3000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                         "ephemeral_1h_input_tokens": 2000}},
        })  # fmt: skip
        with ledger.track(tenant_id="acme", feature="answer", model="claude-sonnet-4-5",
                          provider="anthropic") as call:  # fmt: skip
            call.record(message)
        completion = ChatCompletion.model_validate({
            "id": "c1", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o",
            "choices": [], "service_tier": "priority",
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
        })  # fmt: skip
        with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                          provider="openai") as call:  # fmt: skip
            call.record(completion)
        anthropic, openai = events[1], events[3]
        assert (anthropic.input_tokens, anthropic.cache_write_tokens,
                anthropic.cache_write_1h_tokens) == (3100, 3000, 2000)  # fmt: skip
        assert (openai.service_tier, openai.input_tokens, openai.estimated) == ("priority", 10,
                                                                                 False)  # fmt: skip
    finally:
        ledger.close(timeout=1)
