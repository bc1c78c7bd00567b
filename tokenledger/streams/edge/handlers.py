"""What each endpoint does, in HTTP terms, independent of the web framework.

``Edge`` takes headers, query and body bytes (already inflated: aiohttp undoes gzip and
deflate while the app reads the body, so the body limit bounds the uncompressed size) and
returns a ``Reply``; the Faust views in
tokenledger.streams.edge.app adapt it. Producing goes through ``send`` (the app's producer): it returns
once the broker acknowledged every record, or raises ``BrokerUnavailableError``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tokenledger.contract import topics
from tokenledger.signal_book import Decision, SignalBook
from tokenledger.streams.edge import checks, cloudevents_in, genai_spans, otlp_decode
from tokenledger.streams.edge.bodies import HttpError, Limits, Reply, json_reply, media_type
from tokenledger.streams.edge.keys import ApiKeys, Caller, presented_key
from tokenledger.streams.edge.metrics import Metrics

Record = tuple[str, bytes, bytes]  # (plain topic name, key, value)
Send = Callable[[Sequence[Record]], Awaitable[None]]
RETRY_AFTER_S = 5


class BrokerUnavailableError(Exception):
    """The broker did not acknowledge in time: nothing of the request counts as accepted."""


@dataclass
class Edge:
    keys: ApiKeys
    book: SignalBook
    send: Send
    limits: Limits = field(default_factory=Limits)
    mapping: genai_spans.SpanMapping = field(default_factory=genai_spans.SpanMapping)
    authz_headers: checks.AuthzHeaders = field(default_factory=checks.AuthzHeaders)
    metrics: Metrics = field(default_factory=Metrics)

    # -- callers -------------------------------------------------------------------------

    def caller(self, headers: Mapping[str, str]) -> Caller:
        key = presented_key(headers)
        caller = self.keys.caller(key)
        if caller is None:
            missing = key is None
            raise HttpError(
                401,
                "an API key is required: send 'Authorization: Bearer <key>'"
                if missing
                else "the API key is not known here; check it or ask for a new one",
                {"WWW-Authenticate": "Bearer"},
                reason="no_key" if missing else "unknown_key",
            )
        return caller

    def refused(
        self, exc: HttpError, reply: Callable[[HttpError], Reply] = HttpError.reply
    ) -> Reply:
        self.metrics.requests.labels(exc.reason).inc()
        return reply(exc)

    async def _produce(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        try:
            await self.send(records)
        except BrokerUnavailableError as exc:
            raise HttpError(
                503,
                f"Kafka did not acknowledge ({exc}); nothing was accepted, "
                f"send the request again in {RETRY_AFTER_S} s",
                {"Retry-After": str(RETRY_AFTER_S)},
                reason="unavailable",
            ) from None
        self.metrics.produce_seconds.observe(time.perf_counter() - started)

    # -- POST /v1/events -----------------------------------------------------------------

    async def events(self, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            caller = self.caller(headers)
            items = cloudevents_in.events_of(media_type(headers), body, self.limits)
            results = [
                cloudevents_in.read_event(i, item, caller.may, caller.writes_as)
                for i, item in enumerate(items)
            ]
            accepted = [r for r in results if isinstance(r, cloudevents_in.Accepted)]
            rejected = [r for r in results if isinstance(r, cloudevents_in.Rejected)]
            if accepted:
                await self._produce([(a.topic, a.key, a.value) for a in accepted])
        except HttpError as exc:
            return self.refused(exc)
        for a in accepted:
            self.metrics.accepted.labels(a.type).inc()
        for r in rejected:
            self.metrics.rejected.labels(r.code).inc()
        status = 200 if accepted or not rejected else 400
        return json_reply(
            status, {"accepted": len(accepted), "rejected": [r.as_json() for r in rejected]}
        )

    # -- POST /v1/traces -----------------------------------------------------------------

    async def traces(self, headers: Mapping[str, str], body: bytes) -> Reply:
        kind = media_type(headers)
        try:
            caller = self.caller(headers)
            request = otlp_decode.decode(kind, body)
            total = otlp_decode.count(request)
            if total > self.limits.max_spans:
                raise HttpError(
                    413,
                    f"{total:,} spans in one request exceed the limit of "
                    f"{self.limits.max_spans:,}; lower the exporter's batch size",
                    reason="too_many_spans",
                )
            outcome = self._usage_of(request, caller)
            if outcome.events:
                await self._produce(
                    [
                        (topics.USAGE, e.tenant_id.encode(), e.model_dump_json().encode())
                        for e in outcome.events
                    ]
                )
        except HttpError as exc:
            return self.refused(exc)
        self.metrics.accepted.labels("otlp.span").inc(len(outcome.events))
        for reason, n in outcome.skipped.items():
            self.metrics.spans_skipped.labels(reason).inc(n)
        for code, n in outcome.rejected.items():
            self.metrics.rejected.labels(code).inc(n)
        rejected = sum(outcome.rejected.values())
        return otlp_decode.response(kind, rejected, outcome.reply_message())

    def _usage_of(self, request: ExportTraceServiceRequest, caller: Caller) -> genai_spans.Outcome:
        outcome = genai_spans.Outcome()
        now = datetime.now(UTC)
        for span in otlp_decode.spans(request):
            skipped = genai_spans.skip_reason(span, self.mapping)
            if skipped is not None:
                outcome.skip(skipped)
                continue
            usage = genai_spans.to_usage(span, self.mapping, now)
            if isinstance(usage, tuple):
                outcome.reject(*usage)
            elif not caller.may(usage.tenant_id):
                outcome.reject(
                    "tenant_not_allowed",
                    f"span {span.span_id.hex()}: this API key "
                    f"may not write tenant {usage.tenant_id!r}",
                )
            elif not caller.writes_as(usage.service):
                outcome.reject(
                    "service_not_allowed",
                    f"span {span.span_id.hex()}: this API "
                    f"key may not write service {usage.service!r}",
                )
            else:
                outcome.events.append(usage)
        return outcome

    # -- gateway questions ---------------------------------------------------------------

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        return self._answer(
            headers, lambda: checks.from_query(query), checks.check_reply, HttpError.reply
        )

    def authz(self, headers: Mapping[str, str], deny_status: int) -> Reply:
        return self._answer(
            headers,
            lambda: checks.from_headers(headers, self.authz_headers),
            lambda decision: checks.authz_reply(decision, deny_status),
            lambda exc: checks.refusal_reply(exc, deny_status),
        )

    def _answer(
        self,
        headers: Mapping[str, str],
        question: Callable[[], checks.Question],
        reply: Callable[[Decision], Reply],
        refusal: Callable[[HttpError], Reply],
    ) -> Reply:
        """The caller's question, if the key may ask it, decided by the book."""
        try:
            caller = self.caller(headers)
            asked = question()
            if not caller.may(asked.tenant):
                raise HttpError(
                    403,
                    f"this API key may not ask about tenant {asked.tenant!r}",
                    reason="tenant_not_allowed",
                )
        except HttpError as exc:
            return self.refused(exc, refusal)
        decision = checks.decide(self.book, asked)
        self.metrics.decisions.labels(decision.state).inc()
        return reply(decision)
