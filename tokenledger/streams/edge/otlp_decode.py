"""OTLP/HTTP trace export requests (protobuf or JSON) to flat spans.

Protobuf is parsed by opentelemetry-proto's generated classes; OTLP/JSON by protobuf's own
``json_format`` once its one difference from protobuf's JSON mapping is undone: OTLP/JSON
writes trace and span ids as hex, protobuf's mapping as base64.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tokenledger.streams.edge.bodies import HttpError, Reply

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    error: str | None
    """The status message (or "error") when the span's status is ERROR, else None."""
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str = ""
    """The instrumentation scope's name (the library that made the span)."""


def decode(media_type: str, body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if media_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise HttpError(
                400,
                f"the body is not an OTLP ExportTraceServiceRequest in protobuf: {exc}",
                reason="bad_protobuf",
            ) from None
        return request
    if media_type == JSON:
        try:
            doc = orjson.loads(body)
            json_format.ParseDict(_ids_as_base64(doc), request, ignore_unknown_fields=True)
        except (orjson.JSONDecodeError, json_format.ParseError, ValueError, TypeError) as exc:
            raise HttpError(
                400,
                f"the body is not an OTLP/JSON ExportTraceServiceRequest: {exc}",
                reason="bad_json",
            ) from None
        return request
    raise HttpError(
        415,
        f"Content-Type {media_type or '(none)'!r} is not OTLP; send {PROTOBUF} or {JSON}",
        reason="bad_content_type",
    )


def _ids_as_base64(doc: Any) -> Any:
    if not isinstance(doc, dict):
        raise ValueError("the body is a JSON object with resourceSpans")
    for rs in doc.get("resourceSpans") or ():
        for ss in (rs or {}).get("scopeSpans") or ():
            for span in (ss or {}).get("spans") or ():
                _hex_fields(span, ("traceId", "spanId", "parentSpanId"))
                for link in (span or {}).get("links") or ():
                    _hex_fields(link, ("traceId", "spanId"))
    return doc


def _hex_fields(obj: Any, names: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise ValueError("a span is a JSON object")
    for name in names:
        value = obj.get(name)
        if isinstance(value, str) and value:
            try:
                obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise ValueError(f"{name} {value[:40]!r} is not hex") from None


def attributes(items: Any) -> dict[str, Any]:
    """OTLP key-values as a dict of their scalar values (arrays and maps are left out)."""
    out: dict[str, Any] = {}
    for kv in items:
        value = _scalar(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def _scalar(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "int_value", "double_value", "bool_value"):
        return getattr(value, kind)
    return None


def spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for s in ss.spans:
                failed = s.status.code == STATUS_ERROR
                yield Span(
                    s.trace_id,
                    s.span_id,
                    s.name,
                    s.start_time_unix_nano,
                    s.end_time_unix_nano,
                    (s.status.message or "error") if failed else None,
                    attributes(s.attributes),
                    resource,
                    scope,
                )


def count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def response(media_type: str, rejected: int, message: str) -> Reply:
    """The export response, in the request's encoding, with ``partial_success`` when spans
    were rejected or there is something to tell (rejected 0 and a message: a warning, as the
    OTLP specification allows)."""
    out = ExportTraceServiceResponse()
    if rejected or message:
        out.partial_success.rejected_spans = rejected
        out.partial_success.error_message = message
    if media_type == JSON:
        body = json_format.MessageToJson(out, indent=None).encode()
        return Reply(200, body, JSON)
    return Reply(200, out.SerializeToString(), PROTOBUF)
