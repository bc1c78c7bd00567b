"""CloudEvents (structured mode, JSON) to contract events: one event or a batch.

``data`` is a request, usage or outcome message of the contract (tokenledger.contract.messages); the
CloudEvent ``type`` says which. Fields the contract requires that a CloudEvent already
carries may be left out of ``data``:

- ``event_id``: derived from the CloudEvent's ``source`` and ``id`` (which the CloudEvents
  spec makes unique per event), so a client that re-sends an event is counted once;
- ``request_id``: the ``event_id``; ``idempotency_key``: the ``request_id``;
- ``ts``: the CloudEvent's ``time``.

Each event is checked on its own: the reply lists the accepted count and, per rejected
event, its index, id, field and reason. Nothing is produced for a rejected event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from tokenledger.contract import topics
from tokenledger.contract.common import Event, check_event_time
from tokenledger.contract.messages import OutcomeEvent, RequestEvent, UsageEvent
from tokenledger.streams.edge.bodies import HttpError, Limits
from tokenledger.streams.records import first_error

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

TYPES: dict[str, tuple[type[Event], str]] = {
    "dev.tokenledger.request.v1": (RequestEvent, topics.REQUESTS),
    "dev.tokenledger.usage.v1": (UsageEvent, topics.USAGE),
    "dev.tokenledger.outcome.v1": (OutcomeEvent, topics.OUTCOMES),
}
_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True, slots=True)
class Accepted:
    topic: str  # the plain name; the app applies the namespace
    key: bytes
    value: bytes
    type: str


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    id: str | None
    field: str | None
    reason: str
    code: str  # for the rejected-by-reason counter

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "field": self.field, "reason": self.reason}


def events_of(media_type: str, body: bytes, limits: Limits) -> list[Any]:
    """The raw events of a body: one for structured mode, a list for a batch."""
    if media_type not in (STRUCTURED, BATCH):
        raise HttpError(
            415,
            f"Content-Type {media_type or '(none)'!r} is not accepted here; "
            f"send {STRUCTURED} (one event) or {BATCH} (a JSON array)",
            reason="bad_content_type",
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"the body is not JSON: {exc}", reason="not_json") from None
    if media_type == STRUCTURED:
        if not isinstance(doc, dict):
            raise HttpError(
                400,
                f"{STRUCTURED} is one event, a JSON object; send a list as {BATCH}",
                reason="not_an_object",
            )
        return [doc]
    if not isinstance(doc, list):
        raise HttpError(400, f"{BATCH} is a JSON array of events", reason="not_a_list")
    if not doc:
        raise HttpError(400, "the batch is empty; send at least one event", reason="empty")
    if len(doc) > limits.max_events:
        raise HttpError(
            413,
            f"a batch of {len(doc):,} events exceeds the limit of "
            f"{limits.max_events:,}; split it into smaller batches",
            reason="too_many_events",
        )
    return doc


def derived_event_id(source: str, ce_id: str) -> str:
    """Deterministic per (source, id): a re-sent CloudEvent gets the same event_id."""
    digest = hashlib.blake2b(f"{source}\n{ce_id}".encode(), digest_size=16).hexdigest()
    return f"ce-{digest}"


def read_event(
    index: int, raw: Any, may_write: Callable[[str], bool], writes_as: Callable[[str], bool]
) -> Accepted | Rejected:
    """One raw CloudEvent checked against the CloudEvents spec and the contract, and its
    tenant and service against what the caller's key grants."""
    if not isinstance(raw, dict):
        return Rejected(index, None, None, "an event is a JSON object", "not_an_object")
    ce_id = raw.get("id") if isinstance(raw.get("id"), str) else None

    def reject(field: str | None, reason: str, code: str) -> Rejected:
        return Rejected(index, ce_id, field, reason, code)

    attrs = {k: v for k, v in raw.items() if k not in ("data", "data_base64")}
    for name in _REQUIRED:
        if name not in attrs:
            return reject(
                name,
                f"the required CloudEvents attribute {name!r} is missing",
                "invalid_cloudevent",
            )
    if attrs["specversion"] != "1.0":
        return reject(
            "specversion",
            f'specversion {attrs["specversion"]!r} is not supported; use "1.0"',
            "invalid_cloudevent",
        )
    if isinstance(attrs.get("time"), str):
        try:
            attrs["time"] = datetime.fromisoformat(attrs["time"])
        except ValueError:
            return reject("time", "time is not an RFC 3339 timestamp", "invalid_cloudevent")
    try:
        event = CloudEvent(attrs, raw.get("data"))
    except CloudEventValidationError as exc:
        field, errors = next(iter(exc.errors.items()))
        return reject(field, "; ".join(str(e) for e in errors), "invalid_cloudevent")
    except BaseCloudEventException as exc:
        return reject(None, str(exc), "invalid_cloudevent")
    known = TYPES.get(event.get_type())
    if known is None:
        return reject(
            "type",
            f"unknown type {event.get_type()!r}; use one of {', '.join(sorted(TYPES))}",
            "unknown_type",
        )
    data = event.get_data()
    content = (event.get_datacontenttype() or "application/json").split(";")[0].strip()
    if "data_base64" in raw or not isinstance(data, dict) or content != "application/json":
        return reject(
            "data", "data must be a JSON object (datacontenttype application/json)", "invalid_data"
        )
    return _contract_event(index, event, data, known, may_write, writes_as)


def _contract_event(
    index: int,
    event: CloudEvent,
    data: dict[str, Any],
    known: tuple[type[Event], str],
    may_write: Callable[[str], bool],
    writes_as: Callable[[str], bool],
) -> Accepted | Rejected:
    model, topic = known
    ce_id = event.get_id()
    fields = dict(data)
    fields.setdefault("event_id", derived_event_id(event.get_source(), ce_id))
    fields.setdefault("request_id", fields["event_id"])
    fields.setdefault("idempotency_key", fields["request_id"])
    if "ts" not in fields and event.get_time() is not None:
        fields["ts"] = event.get_time().isoformat()  # type: ignore[union-attr]
    try:
        value = orjson.dumps(fields)
        parsed = model.model_validate_json(value)
    except ValidationError as exc:
        where, msg = first_error(exc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return Rejected(
            index, ce_id, f"data.{where}" if where else "data", f"{msg}{more}", "invalid_fields"
        )
    except TypeError as exc:  # orjson: a value JSON cannot hold
        return Rejected(index, ce_id, "data", str(exc), "invalid_fields")
    too_far = check_event_time(parsed.ts, datetime.now(UTC))
    if too_far is not None:
        return Rejected(index, ce_id, "data.ts", too_far, "implausible_time")
    tenant = parsed.tenant_id
    if not may_write(tenant):
        return Rejected(
            index,
            ce_id,
            "data.tenant_id",
            f"this API key may not write tenant {tenant!r}",
            "tenant_not_allowed",
        )
    if not writes_as(parsed.service):
        return Rejected(
            index,
            ce_id,
            "data.service",
            f"this API key may not write service {parsed.service!r}",
            "service_not_allowed",
        )
    return Accepted(topic, tenant.encode(), value, event.get_type())
