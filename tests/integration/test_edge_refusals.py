"""Bad input at the edge: each gets a status and a message to act on, nothing is produced
for it, and the service keeps serving; Kafka away is a 503 with Retry-After."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import factories
from tests.helpers.edge import Served, served, with_topics
from tests.helpers.kafka_io import read_committed
from tests.helpers.settings import isolated
from tests.helpers.waiting import wait_value
from tokenledger.contract import topics
from tokenledger.streams.config import Settings
from tokenledger.streams.local.broker import LocalKafka

pytestmark = pytest.mark.integration
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
TINY = b'{"specversion": "1.0", "id": "e", "source": "s", "type": "dev.tokenledger.usage.v1"}'


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return isolated(kafka_bootstrap, 1)


@pytest.fixture
def edge(settings: Settings, tmp_path: Path) -> Iterator[Served]:
    env = with_topics(settings, tmp_path)
    with served(env, tmp_path, grants={"acme-only": ["acme"]}) as running:
        yield running


def ce(i: int, type_: str = "dev.tokenledger.usage.v1", **data: Any) -> bytes:
    event = factories.usage(ts=datetime.now(UTC) - timedelta(minutes=1))
    body = {**json.loads(event.model_dump_json()), **data}
    return JSONFormat().write(CloudEvent({"type": type_, "source": "tests", "id": f"e{i}"}, body))


def batch(*events: bytes) -> bytes:
    return b"[" + b",".join(events) + b"]"


def spans(*usages: dict[str, Any], service: str | None = None) -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service} if service else {})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for attrs in usages:
        span = provider.get_tracer("t").start_span("chat")
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "tokenledger.tenant_id": "acme",
                **attrs,
            }
        )
        span.end()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def produced(settings: Settings, expected: int) -> int:
    return sum(
        len(read_committed(settings.kafka, settings.topic(t), expected, timeout=5))
        for t in (topics.USAGE, topics.REQUESTS, topics.OUTCOMES)
    )


def test_every_bad_request_is_refused_clearly_and_produces_nothing(
    settings: Settings, edge: Served
) -> None:
    good = ce(0)
    refusals = [
        (edge.call("POST", "/v1/events", good, BATCH, key=None), 401, "API key is required"),
        (edge.call("POST", "/v1/events", good, BATCH, key="tlk_nope"), 401, "not known"),
        (edge.call("POST", "/v1/events", b"{not json", BATCH), 400, "not JSON"),
        (
            edge.call("POST", "/v1/events", good, {"Content-Type": "text/plain"}),
            415,
            "application/cloudevents+json",
        ),
        (
            edge.call("POST", "/v1/events", b"[" + b" " * (6 << 20) + b"]", BATCH),
            413,
            "exceeds the limit of 5,242,880 bytes",
        ),
        (
            edge.call("POST", "/v1/events", batch(*[TINY] * 10_000), BATCH),
            413,
            "a batch of 10,000 events exceeds the limit of 1,000",
        ),
        (edge.call("POST", "/v1/traces", b"\x0a\xff\xff\xff", PROTOBUF), 400, "not an OTLP"),
        (
            edge.call(
                "POST",
                "/v1/traces",
                gzip.compress(b"\0" * (6 << 20)),
                {**PROTOBUF, "Content-Encoding": "gzip"},
            ),
            413,
            "exceeds the limit",
        ),
        (edge.call("POST", "/v1/traces", b"{}", {"Content-Type": "text/xml"}), 415, "not OTLP"),
        (
            edge.call(
                "POST",
                "/v1/traces",
                gzip.compress(b"\x0a\x00" * 50)[:-8] + b"\0" * 8,
                {**PROTOBUF, "Content-Encoding": "gzip"},
            ),
            400,
            "the body is not valid gzip",
        ),
        (
            edge.call(
                "POST", "/v1/events", b"[not compressed]", {**BATCH, "Content-Encoding": "gzip"}
            ),
            400,
            "the body is not valid gzip",
        ),
    ]
    for answer, status, message in refusals:
        assert answer.status == status, (answer, message)
        assert message in answer.json()["error"], answer.json()

    # events refused one by one (all of a request refused: 400)
    one_by_one = edge.call(
        "POST",
        "/v1/events",
        batch(
            ce(1, "dev.tokenledger.bogus.v1"),
            ce(2, input_tokens=-1),
            ce(3, input_tokens=10_000_001),
            ce(4, tenant_id="globex"),
            b'"text"',
        ),
        BATCH,
        key=edge.keys["acme-only"],
    )
    assert one_by_one.status == 400
    assert [(r["index"], r["field"]) for r in one_by_one.json()["rejected"]] == [
        (0, "type"),
        (1, "data.input_tokens"),
        (2, "data.input_tokens"),
        (3, "data.tenant_id"),
        (4, None),
    ]
    assert "may not write tenant 'globex'" in one_by_one.json()["rejected"][3]["reason"]

    # spans: negative and absurd counts are rejected in partial_success, the good one kept
    answer = edge.call(
        "POST",
        "/v1/traces",
        spans(
            {"gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 1},
            {"gen_ai.usage.input_tokens": 10**12, "gen_ai.usage.output_tokens": 1},
            {"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5},
        ),
        PROTOBUF,
    )
    assert answer.status == 200
    reply = ExportTraceServiceResponse.FromString(answer.body)
    assert reply.partial_success.rejected_spans == 2
    assert "negative (-5)" in reply.partial_success.error_message
    assert "less than or equal to 10000000" in reply.partial_success.error_message

    # the service still serves: a mixed batch keeps its good event
    mixed = edge.call("POST", "/v1/events", batch(ce(5), ce(6, output_tokens="many")), BATCH)
    assert (mixed.status, mixed.json()["accepted"]) == (200, 1)
    assert mixed.json()["rejected"][0]["index"] == 1
    assert produced(settings, 2) == 2  # the good span and the good event, nothing else
    metrics = edge.call("GET", "/metrics", key=None).body.decode()
    assert 'tokenledger_edge_requests_refused_total{reason="too_large"} 2.0' in metrics
    assert 'tokenledger_edge_requests_refused_total{reason="bad_encoding"} 2.0' in metrics
    assert 'tokenledger_edge_events_rejected_total{reason="bad_tokens"} 1.0' in metrics


def test_kafka_away_is_a_503_with_retry_after_and_a_resend_counts(
    own_broker: LocalKafka, tmp_path: Path
) -> None:
    settings = isolated(own_broker.bootstrap, 1)
    env = with_topics(settings, tmp_path)
    events = batch(*[ce(i) for i in range(20)])
    with served(env, tmp_path, "--produce-timeout", "3") as edge:
        assert edge.call("POST", "/v1/events", events, BATCH).status == 200
        own_broker.stop()
        away = edge.call("POST", "/v1/events", events, BATCH)
        assert (away.status, away.headers.get("Retry-After")) == (503, "5"), away
        assert "nothing was accepted" in away.json()["error"]
        own_broker.start()
        again = wait_value(
            lambda: edge.call("POST", "/v1/events", events, BATCH),
            lambda a: a.status == 200,
            "the edge to accept after the broker is back",
            timeout=120,
        )
        assert again.json() == {"accepted": 20, "rejected": []}
    records = read_committed(settings.kafka, settings.topic(topics.USAGE), 40, timeout=10)
    ids = {json.loads(m.value())["event_id"] for m in records}
    assert len(ids) == 20 and len(records) >= 40  # at-least-once; the worker dedups by id


SEPARATOR = "'/' is the scope separator and cannot be part of a name (use - or . instead)"


def test_a_key_writes_as_its_service_and_names_with_the_scope_separator_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    env = with_topics(settings, tmp_path)
    with served(env, tmp_path, grants={"checkout": ["acme"]}) as edge:
        key = edge.keys["checkout"]
        events = edge.call(
            "POST",
            "/v1/events",
            batch(
                ce(0, service="checkout"),
                ce(1, service="billing"),
                ce(2, service="checkout", tenant_id="acme/feature/answer"),
            ),
            BATCH,
            key=key,
        )
        assert events.json() == {
            "accepted": 1,
            "rejected": [
                {
                    "index": 1,
                    "id": "e1",
                    "field": "data.service",
                    "reason": "this API key may not write service 'billing'",
                },
                {"index": 2, "id": "e2", "field": "data.tenant_id", "reason": SEPARATOR},
            ],
        }
        usage = {"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5}
        for service, rejected in (("checkout", 0), ("billing", 1)):
            answer = edge.call(
                "POST", "/v1/traces", spans(usage, service=service), PROTOBUF, key=key
            )
            reply = ExportTraceServiceResponse.FromString(answer.body)
            assert (answer.status, reply.partial_success.rejected_spans) == (200, rejected)
        assert "this API key may not write service 'billing'" in (
            reply.partial_success.error_message
        )
        check = edge.call("GET", "/v1/check?tenant=team/a")
        assert (check.status, check.json()) == (400, {"error": f"tenant 'team/a': {SEPARATOR}"})
        for headers, why in (
            ({}, "the x-tokenledger-tenant header is required (the tenant to check)"),
            ({"x-tokenledger-tenant": "team/a"}, f"tenant 'team/a': {SEPARATOR}"),
        ):
            nginx = edge.call("GET", "/v1/authz/nginx", headers=headers)
            assert (
                nginx.status,
                nginx.headers["x-tokenledger-reason"],
                nginx.headers["x-tokenledger-state"],
            ) == (403, why, "refused")
        keyless = edge.call(
            "GET", "/v1/authz/nginx", headers={"x-tokenledger-tenant": "acme"}, key=None
        )
        assert (keyless.status, keyless.headers["x-tokenledger-reason"]) == (
            403,
            "an API key is required: send 'Authorization: Bearer <key>'",
        )
    assert produced(settings, 2) == 2  # one event and one span, of service checkout
