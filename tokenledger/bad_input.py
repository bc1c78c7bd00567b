"""What a caller hands the SDK that it cannot use: counted, logged once per cause, never
raised into the code it measures.

Two kinds. A response whose usage cannot be read: its usage event goes out estimated
(``stats()["unreadable_usage"]``). Arguments that make an event the contract refuses
(``tenant_id="acme corp"``, an empty feature, negative tokens): raising a
``ValidationError`` into the caller, or over the caller's own exception, is not an option,
and dropping the event would hide it. So it goes to Kafka as given and the worker
dead-letters it with its raw bytes and the reason, where the service's owner sees it
(``stats()["invalid_events"]``).

Validation stays where it is on the happy path (building the event); this module only runs
after it failed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from tokenledger.contract.names import error_message

log = logging.getLogger(__name__)

BAD_INPUT = (TypeError, ValueError, AttributeError, ArithmeticError)
"""What building an event from a caller's arguments raises when they are wrong
(pydantic's ValidationError is a ValueError)."""

Record = tuple[str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class AsGiven:
    """An event that failed validation, already serialized: (topic, key, value)."""

    record: Record


def as_given(model: type[BaseModel], topic: str, fields: Mapping[str, Any]) -> AsGiven:
    """``fields`` serialized the way ``model`` writes them, without validating them."""
    event = model.model_construct(**fields)
    try:
        value = event.model_dump_json(warnings=False, fallback=repr)
    except PydanticSerializationError:  # e.g. a lone surrogate in a string
        doc = event.model_dump(mode="json", warnings=False, fallback=repr)
        value = json.dumps(doc, separators=(",", ":"), default=repr)
    tenant = fields.get("tenant_id")
    key = tenant if isinstance(tenant, str) else ""
    return AsGiven((topic, key.encode("utf-8", "replace"), value.encode("utf-8", "replace")))


def first_refusal(model: type[BaseModel], fields: Mapping[str, Any]) -> ValidationError | None:
    """What the contract says about ``fields`` (None when it accepts them)."""
    try:
        model.model_validate(fields)
    except ValidationError as exc:
        return exc
    return None


def cause(error: Exception) -> str:
    """The problem in one line, without the offending value (it may be anything)."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where, msg = ".".join(str(p) for p in first["loc"]), error_message(first)
        return f"{where}: {msg}" if where else msg
    return f"{type(error).__name__}: {error}"


class BadInput:
    """The counts, and the causes already logged (any caller's thread)."""

    def __init__(self) -> None:
        self.unreadable_usage = 0
        self.invalid_events = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _first(self, cause: str) -> bool:
        first = cause not in self._seen
        self._seen.add(cause)
        return first

    def unreadable(self, response: object, error: Exception) -> None:
        kind = f"{type(response).__module__}.{type(response).__qualname__}"
        with self._lock:
            self.unreadable_usage += 1
            first = self._first("response " + kind)
        if first:
            log.warning(
                "no token usage readable on %s (%s); such calls are reported with "
                "estimated tokens: pass input_tokens= and output_tokens= to record()",
                kind,
                error,
            )

    def invalid(self, kind: str, error: Exception) -> None:
        why = cause(error)
        with self._lock:
            self.invalid_events += 1
            first = self._first("event " + why)
        if first:
            log.warning(
                "a %s event does not fit the contract (%s): it is sent as given and the "
                "worker dead-letters it; fix the arguments of this call",
                kind,
                why,
            )
