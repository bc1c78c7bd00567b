"""The edge's pure parts: CloudEvents to contract events, GenAI spans to usage events, the
gateway questions, API keys and OTLP/JSON ids, without a broker or a server."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.helpers import factories
from tokenledger.contract.messages import UsageEvent
from tokenledger.signal_book import SignalBook
from tokenledger.streams.edge import checks, cloudevents_in, genai_spans, keys, otlp_decode
from tokenledger.streams.edge.bodies import HttpError, Limits
from tokenledger.streams.errors import UserError

NOW = datetime.now(UTC).replace(microsecond=0)


def ce(data: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "call-1",
        "source": "checkout",
        "type": "dev.tokenledger.usage.v1",
        "time": NOW.isoformat(),
        "data": data,
        **attrs,
    }


def usage_data(**overrides: Any) -> dict[str, Any]:
    data = json.loads(factories.usage(ts=NOW - timedelta(minutes=1)).model_dump_json())
    for name in ("event_id", "request_id", "idempotency_key", "ts"):
        del data[name]
    return {**data, **overrides}


ANYONE = (lambda tenant: True, lambda service: True)
"""A key that may write every tenant, as every service."""


def test_a_cloudevent_without_ids_gets_deterministic_ones_and_its_time() -> None:
    first = cloudevents_in.read_event(0, ce(usage_data()), *ANYONE)
    again = cloudevents_in.read_event(0, ce(usage_data()), *ANYONE)
    other = cloudevents_in.read_event(0, ce(usage_data(), id="call-2"), *ANYONE)
    assert isinstance(first, cloudevents_in.Accepted) and isinstance(other, cloudevents_in.Accepted)
    assert first == again and first.value != other.value
    event = UsageEvent.model_validate_json(first.value)
    assert event.event_id == cloudevents_in.derived_event_id("checkout", "call-1")
    assert event.request_id == event.idempotency_key == event.event_id
    assert event.ts == NOW and (first.topic, first.key) == ("tokenledger.usage.v1", b"acme")


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (ce(usage_data(), type="dev.tokenledger.usage.v9"), "type", "unknown type"),
        (ce(usage_data(), specversion="0.3"), "specversion", "not supported"),
        ({k: v for k, v in ce(usage_data()).items() if k != "source"}, "source", "missing"),
        (ce(usage_data(), time="yesterday"), "time", "RFC 3339"),
        (ce(usage_data(), datacontenttype="text/plain"), "data", "JSON object"),
        ({**ce(usage_data()), "data": None, "data_base64": "e30="}, "data", "JSON object"),
        (ce(usage_data(input_tokens=-1)), "data.input_tokens", "greater than or equal to 0"),
        (ce(usage_data(color="red")), "data.color", "Extra inputs"),
        (ce(usage_data(), time=(NOW - timedelta(days=40)).isoformat()), "data.ts", "30 days"),
        (ce(usage_data(tenant_id="globex")), "data.tenant_id", "may not write tenant 'globex'"),
        (ce(usage_data(service="billing")), "data.service", "may not write service 'billing'"),
    ],
)
def test_each_bad_event_names_its_field_and_reason(raw: Any, field: str, words: str) -> None:
    got = cloudevents_in.read_event(3, raw, lambda t: t == "acme", lambda s: s == "support-bot")
    assert isinstance(got, cloudevents_in.Rejected), got
    assert (got.index, got.field) == (3, field) and words in got.reason, got


def test_bodies_that_are_not_events_are_refused_whole() -> None:
    limits = Limits(max_events=2)
    cases = [
        ("application/json", b"{}", 415),
        (cloudevents_in.BATCH, b"{}", 400),
        (cloudevents_in.BATCH, b"[]", 400),
        (cloudevents_in.BATCH, b"[1,2,3]", 413),
        (cloudevents_in.STRUCTURED, b"[]", 400),
        (cloudevents_in.STRUCTURED, b"{", 400),
    ]
    for kind, body, status in cases:
        with pytest.raises(HttpError) as caught:
            cloudevents_in.events_of(kind, body, limits)
        assert caught.value.status == status, (kind, body)
    assert cloudevents_in.events_of(cloudevents_in.BATCH, b"[1,2]", limits) == [1, 2]


def span(
    attrs: dict[str, Any], resource: dict[str, Any] | None = None, error: str | None = None
) -> otlp_decode.Span:
    end = int(NOW.timestamp() * 1e9)
    return otlp_decode.Span(
        bytes(range(16)),
        bytes(range(8)),
        "chat",
        end - 1_500_000_000,
        end,
        error,
        attrs,
        resource or {"service.name": "checkout"},
    )


BASE = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "tokenledger.tenant_id": "acme",
}


def test_a_genai_span_becomes_a_usage_event_with_every_token_class() -> None:
    attrs = {
        **BASE,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 300.0,
        "gen_ai.usage.cache_read.input_tokens": 600,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.usage.reasoning.output_tokens": 200,
        "http.route": "/answer",
    }
    event = genai_spans.to_usage(
        span(
            attrs,
            {
                "service.name": "checkout",
                "deployment.environment.name": "staging",
                "tokenledger.feature": "search",
            },
        ),
        genai_spans.SpanMapping(),
        NOW,
    )
    assert isinstance(event, UsageEvent), event
    assert event.event_id == "otel-000102030405060708090a0b0c0d0e0f-0001020304050607"
    assert (
        event.input_tokens,
        event.output_tokens,
        event.cached_input_tokens,
        event.cache_write_tokens,
        event.reasoning_tokens,
    ) == (1000, 300, 600, 100, 200)
    assert (
        event.model,
        event.provider,
        event.service,
        event.environment,
        event.feature,
        event.route,
    ) == ("gpt-4o-2024-08-06", "openai", "checkout", "staging", "search", "answer")
    assert (event.ts, event.latency_ms, event.success) == (NOW, 1500, True)


def test_older_spellings_anthropic_counts_errors_and_defaults() -> None:
    attrs = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "tenant.id": "acme",
        "gen_ai.usage.prompt_tokens": 10,
        "gen_ai.usage.completion_tokens": 5,
        "gen_ai.usage.cache_read_input_tokens": 90,
    }
    event = genai_spans.to_usage(span(attrs, error="overloaded"), genai_spans.SpanMapping(), NOW)
    assert isinstance(event, UsageEvent), event
    assert (event.input_tokens, event.cached_input_tokens) == (100, 90)  # added to the input
    assert (event.success, event.error, event.feature, event.environment) == (
        False,
        "overloaded",
        "unattributed",
        "prod",
    )


@pytest.mark.parametrize(
    ("attrs", "code", "words"),
    [
        ({"gen_ai.usage.input_tokens": -3}, "bad_tokens", "negative (-3)"),
        ({"gen_ai.usage.input_tokens": "12"}, "bad_tokens", "not a whole number"),
        ({"gen_ai.usage.input_tokens": 1.5}, "bad_tokens", "not a whole number"),
        ({"gen_ai.usage.input_tokens": True}, "bad_tokens", "not a whole number"),
        ({"gen_ai.usage.input_tokens": 10**9}, "invalid_fields", "less than or equal to 10000000"),
        ({"gen_ai.usage.input_tokens": 5, "tokenledger.tenant_id": None}, "no_tenant", "tenant"),
        ({"gen_ai.usage.input_tokens": 5, "gen_ai.request.model": None}, "no_model", "model"),
        (
            {"gen_ai.usage.input_tokens": 5, "tokenledger.tenant_id": "a b"},
            "invalid_fields",
            "tenant_id",
        ),
        (
            {"gen_ai.usage.output_tokens": 5, "gen_ai.usage.reasoning.output_tokens": 6},
            "invalid_fields",
            "reasoning_tokens exceed",
        ),
    ],
)
def test_bad_spans_are_rejected_with_a_reason(attrs: dict[str, Any], code: str, words: str) -> None:
    merged = {k: v for k, v in {**BASE, **attrs}.items() if v is not None}
    got = genai_spans.to_usage(span(merged), genai_spans.SpanMapping(), NOW)
    assert isinstance(got, tuple) and got[0] == code and words in got[1], got


def test_a_mapping_file_renames_dimensions_and_refuses_typos(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"tenant_id": ["app.customer"], "default_feature": "misc"}))
    mapping = genai_spans.SpanMapping.from_file(path)
    attrs = {**BASE, "app.customer": "globex", "gen_ai.usage.input_tokens": 5}
    event = genai_spans.to_usage(span(attrs), mapping, NOW)
    assert isinstance(event, UsageEvent) and (event.tenant_id, event.feature) == ("globex", "misc")
    for bad in ({"tenant": ["x"]}, {"tenant_id": "x"}, {"default_feature": ""}):
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError):
            genai_spans.SpanMapping.from_file(path)


def test_otlp_json_ids_are_hex_and_replies_match_the_request_encoding() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "000102030405060708090a0b0c0d0e0f",
                                "spanId": "0001020304050607",
                                "name": "chat",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "status": {"code": 2, "message": "boom"},
                                "attributes": [
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "7"}}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (got,) = otlp_decode.spans(otlp_decode.decode(otlp_decode.JSON, json.dumps(body).encode()))
    assert (got.trace_id, got.span_id) == (bytes(range(16)), bytes(range(8)))
    assert (got.attributes, got.resource, got.error) == (
        {"gen_ai.usage.input_tokens": 7},
        {"service.name": "checkout"},
        "boom",
    )
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz"  # type: ignore[index]
    with pytest.raises(HttpError, match="traceId 'zz' is not hex"):
        otlp_decode.decode(otlp_decode.JSON, json.dumps(body).encode())
    as_json = otlp_decode.response(otlp_decode.JSON, 2, "two bad")
    assert json.loads(as_json.body) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "two bad"}
    }
    as_pb = ExportTraceServiceResponse.FromString(
        otlp_decode.response(otlp_decode.PROTOBUF, 0, "").body
    )
    assert not as_pb.HasField("partial_success")
    assert base64.b64decode(base64.b64encode(b"x")) == b"x"


def test_dollars_become_exact_nano_dollars_and_questions_need_a_tenant() -> None:
    assert checks.est_cost_nusd("0.000000001", "c") == 1
    assert checks.est_cost_nusd("12.5", "c") == 12_500_000_000
    for bad in ("-1", "NaN", "1e12", "x"):
        with pytest.raises(HttpError):
            checks.est_cost_nusd(bad, "c")
    q = checks.from_headers(
        {
            "x-tokenledger-tenant": "acme",
            "x-tokenledger-feature": "search",
            "x-tokenledger-est-cost-usd": "0.25",
        },
        checks.AuthzHeaders(),
    )
    assert q == checks.Question("acme", "search", None, 250_000_000)
    with pytest.raises(HttpError, match="x-tokenledger-tenant header is required"):
        checks.from_headers({}, checks.AuthzHeaders())
    book = SignalBook(topic="signals", public_keys=None, on_unavailable="closed")
    refused = checks.authz_reply(checks.decide(book, q), 429)
    assert refused.status == 429 and refused.headers["x-tokenledger-state"] == "unavailable"
    book.caught_up()
    assert checks.authz_reply(checks.decide(book, q), 429).status == 200


def test_keys_are_stored_hashed_and_name_their_tenants(tmp_path: Path) -> None:
    key = keys.new_key()
    doc = {"keys": [keys.entry("checkout", ["acme", "acme"], key)]}
    assert key not in json.dumps(doc) and doc["keys"][0]["tenants"] == ["acme"]
    ring = keys.ApiKeys.parse(json.dumps(doc), "keys.json")
    caller = ring.caller(keys.presented_key({"Authorization": f"Bearer {key}"}))
    assert caller is not None and caller.may("acme") and not caller.may("globex")
    assert ring.caller(keys.presented_key({"X-Api-Key": key})) == caller
    assert ring.caller("tlk_other") is None and keys.presented_key({}) is None
    for bad, words in (
        ("[", "not JSON"),
        ("{}", '"keys" list'),
        ('{"keys": [{"service": "s", "sha256": "ab", "tenants": ["a"]}]}', "64 lowercase hex"),
        (
            '{"keys": [{"service": "s", "sha256": "' + "a" * 64 + '", "tenants": []}]}',
            "non-empty list",
        ),
    ):
        with pytest.raises(UserError, match=words):
            keys.ApiKeys.parse(bad, "keys.json")
    with pytest.raises(UserError, match="no API keys"):
        keys.ApiKeys.load({})
