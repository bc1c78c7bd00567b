"""A local HTTP stand-in for the OpenAI and Anthropic APIs: the providers' SDKs (and the
instrumentations wrapping them) talk to it over real HTTP on 127.0.0.1. Each reply reports
the usage the test planned for the call, found by the ``call <id>`` its last message says;
the body is in the provider's own shape (OpenAI counts cached tokens inside
``prompt_tokens``, Anthropic's ``input_tokens`` leaves cache reads and writes out)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Usage:
    """A call's usage in the contract's convention (input counts the cached parts)."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
            "reasoning": self.reasoning,
        }


def openai_body(model: str, u: Usage) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "done"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cache_read},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning},
        },
    }


def anthropic_body(model: str, u: Usage) -> dict[str, Any]:
    uncached = u.input - u.cache_read - u.cache_write
    return {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "done"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": uncached,
            "output_tokens": u.output,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation_input_tokens": u.cache_write,
        },
    }


def _call_id(body: Mapping[str, Any]) -> str:
    text = json.dumps(body.get("messages", [])[-1:])
    found = re.search(r"call (\w+)", text)
    if found is None:
        raise ValueError(f"no 'call <id>' in the request's last message: {text[:200]}")
    return found.group(1)


@dataclass
class Standin:
    url: str
    served: list[str]
    """The call ids answered, in order."""


@contextmanager
def provider_standin(usages: Mapping[str, Usage]) -> Iterator[Standin]:
    """Serve /v1/chat/completions (OpenAI) and /v1/messages (Anthropic) on a free port."""
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            try:
                call = _call_id(body)
                usage = usages[call]
            except (ValueError, KeyError) as exc:
                self._reply(400, {"error": {"message": f"stand-in: {exc}"}})
                return
            if self.path.rstrip("/").endswith("/chat/completions"):
                reply = openai_body(body["model"], usage)
            elif self.path.rstrip("/").endswith("/messages"):
                reply = anthropic_body(body["model"], usage)
            else:
                self._reply(404, {"error": {"message": f"stand-in: no route {self.path}"}})
                return
            served.append(call)
            self._reply(200, reply)

        def _reply(self, status: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Standin(f"http://127.0.0.1:{server.server_address[1]}", served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
