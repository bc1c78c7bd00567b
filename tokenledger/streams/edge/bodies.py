"""Requests and replies in HTTP terms, independent of the web framework: limits, errors.

Views (tokenledger.streams.edge.app) read the body within ``Limits.max_body_bytes`` and hand bytes,
headers and query to pure functions that return a ``Reply`` or raise ``HttpError``; the
messages say what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 5 * MIB
    """Largest request body, counted uncompressed (a small gzip can hide a huge body)."""
    max_events: int = 1000
    """Most CloudEvents in one batch."""
    max_spans: int = 10_000
    """Most spans in one OTLP export request."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """A request the edge refuses: its status and a message the caller can act on."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        reason: str = "bad_request",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.reason = reason

    def reply(self) -> Reply:
        return json_reply(self.status, {"error": self.message}, self.headers)


def json_reply(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(value), "application/json", dict(headers or {}))


def too_large(what: str, limit: int) -> HttpError:
    return HttpError(
        413,
        f"{what} exceeds the limit of {limit:,} bytes; send smaller batches",
        reason="too_large",
    )


def unreadable(encoding: str | None, detail: str) -> HttpError:
    """A body that cannot be read as sent: most often one whose Content-Encoding says gzip
    (or deflate, zstd) while the bytes are not, or are cut or corrupt."""
    if encoding:
        return HttpError(
            400,
            f"the body is not valid {encoding} (Content-Encoding: {encoding}): "
            f"{detail}; send it compressed whole, or without Content-Encoding",
            reason="bad_encoding",
        )
    return HttpError(400, f"the body cannot be read: {detail}", reason="bad_body")


def check_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse early when Content-Length already says the body is too large."""
    raw = headers.get("Content-Length")
    if raw is not None and raw.isdigit() and int(raw) > limit:
        raise too_large(f"the body ({int(raw):,} bytes)", limit)


def media_type(headers: Mapping[str, str]) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
