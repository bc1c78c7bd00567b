"""What every stage produces and rejects: output records, raw bytes -> a message or a DLQ
reason, and the DLQ record that keeps the raw bytes. Pure: no Kafka here.

Every rejection has a reason code (tokenledger.contract.messages.DlqReason) and a one-line detail a
producer's owner can act on. No stage stops on bad input.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tokenledger.contract.common import SCHEMA_VERSIONS
from tokenledger.contract.messages import DlqReason, DlqRecord
from tokenledger.contract.names import error_message

MAX_MESSAGE_BYTES = 64 * 1024
"""A usage or request event is well under 2 KiB; anything this large is a producer bug."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Output:
    """A record a processor wants produced (inside the engine's transaction)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]] | None = None


@dataclass(frozen=True)
class Rejection:
    reason: DlqReason
    detail: str


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(dotted field path, or '' for the whole message; its message) of the first problem
    (for a name, what is wrong with it: tokenledger.contract.names.error_message)."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), error_message(first)


def _reason_for(exc: ValidationError) -> Rejection:
    first = exc.errors()[0]
    loc, msg = first_error(exc)
    kind = first["type"]
    detail = f"{loc}: {msg}" if loc else msg
    if kind == "json_invalid" or (kind == "model_type" and not loc):
        return Rejection("malformed_json", detail)
    if loc == "schema_version":
        versions = ", ".join(str(v) for v in SCHEMA_VERSIONS)
        return Rejection(
            "unknown_schema_version", f"{detail} (this worker reads versions {versions})"
        )
    if loc == "tenant_id" and (kind == "missing" or first.get("input") == ""):
        return Rejection("missing_tenant", "tenant_id is required on every event")
    if loc.endswith("_tokens") and kind == "greater_than_equal":
        return Rejection("negative_tokens", detail)
    if loc.endswith("_tokens") and kind == "less_than_equal":
        return Rejection("absurd_tokens", detail)
    return Rejection("invalid_fields", detail)


def parse_message(raw: bytes | None, model: type[M]) -> M | Rejection:
    """The message in ``raw``, or why it cannot be used."""
    if not raw:
        return Rejection("malformed_json", "empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("oversize", f"{len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        return _reason_for(exc)


def dlq_record(
    rejection: Rejection,
    *,
    raw: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    component: str,
    now: datetime,
) -> DlqRecord:
    return DlqRecord(
        reason=rejection.reason,
        detail=rejection.detail[:2048],
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        raw_b64=base64.b64encode(raw or b"").decode(),
        component=component,
        failed_at=now,
    )


def dead_letter(
    rejection: Rejection,
    counters: Counter[str],
    dlq_topic: str,
    *,
    raw: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    component: str,
    now: datetime,
) -> Output:
    """Count the rejection and make its DLQ record, keyed like the input."""
    counters[f"dlq.{rejection.reason}"] += 1
    record = dlq_record(
        rejection,
        raw=raw,
        key=key,
        topic=topic,
        partition=partition,
        offset=offset,
        component=component,
        now=now,
    )
    return Output(dlq_topic, key, record.model_dump_json().encode())
