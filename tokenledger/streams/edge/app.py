"""``tokenledger serve``: the edge as a Faust app (web views, producer, signals agent).

The views adapt aiohttp requests to ``Edge`` (tokenledger.streams.edge.handlers). The agent follows the
signals topic from its start into the ``SignalBook`` the checks read; every edge process
reads the whole topic (its own consumer group, like every BudgetGuard). A timer, once a
second, asks the broker for the topic's end offsets: that is the feed's health (lost after
failures, degraded after ``stale_after_s``), and the first answer is how far the agent must
read before ``/ready`` says yes and checks stop failing open or closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp.web import RequestPayloadError
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import TP
from faust.types.auth import CredentialsT

from tokenledger import signing
from tokenledger.contract import topics
from tokenledger.signal_book import SignalBook
from tokenledger.streams.admin import hmac_migration, signer
from tokenledger.streams.config import Settings
from tokenledger.streams.edge import checks, claim_service, genai_spans
from tokenledger.streams.edge.bodies import (
    HttpError,
    Limits,
    Reply,
    check_length,
    json_reply,
    too_large,
    unreadable,
)
from tokenledger.streams.edge.claims import Claims, ClaimSettings
from tokenledger.streams.edge.handlers import BrokerUnavailableError, Edge, Record
from tokenledger.streams.edge.kafka import EdgeApp, broker_url
from tokenledger.streams.edge.keys import ApiKeys

log = logging.getLogger(__name__)

INGESTED = (topics.REQUESTS, topics.USAGE, topics.OUTCOMES)
"""The topics the edge writes (records name them plainly; the namespace is applied here)."""


@dataclass(frozen=True)
class EdgeConfig:
    keys: ApiKeys
    host: str = "127.0.0.1"
    port: int = 8787
    limits: Limits = field(default_factory=Limits)
    mapping: genai_spans.SpanMapping = field(default_factory=genai_spans.SpanMapping)
    authz_headers: checks.AuthzHeaders = field(default_factory=checks.AuthzHeaders)
    on_unavailable: Literal["open", "closed"] = "open"
    stale_after_s: float = 30.0
    produce_timeout_s: float = 10.0
    public_keys: signing.PublicKeyring | None = None
    """Signals count only when signed by one of these (the workers'); None checks nothing."""
    credentials: CredentialsT | None = None
    """SASL/TLS for the broker (tokenledger.streams.edge.credentials, from TOKENLEDGER_KAFKA_OPT_*)."""
    claims: ClaimSettings = field(default_factory=ClaimSettings)
    advertised_url: str | None = None
    """Where the other edge instances reach this one (claims are forwarded to their owner);
    default ``http://<host>:<port>``."""


WRITER_SETTINGS = (signer.ENV, hmac_migration.ENV)


def public_keys(env: Mapping[str, str]) -> signing.PublicKeyring | None:
    """The edge's ring (TOKENLEDGER_PUBLIC_KEYS). The edge only verifies: handed a writer's
    key it refuses to start rather than hold a key that can sign."""
    for name in WRITER_SETTINGS:
        if (env.get(name) or "").strip():
            raise signing.SigningKeyError(
                f"{name} is set, but the edge only verifies signals: give it "
                f"{signing.ENV} and keep signing keys on the workers and the admin host"
            )
    return signing.public_keys(env)


class Feed:
    """How far the agent has read the signals topic, and whether that is its end."""

    def __init__(self, book: SignalBook) -> None:
        self.book = book
        self.target: dict[TP, int] | None = None
        self.applied = 0
        self._settled_at = -1

    async def heartbeat(self, consumer: Any) -> None:
        tps = set(consumer.assignment())
        if not tps:
            return
        try:
            ends = await asyncio.wait_for(consumer.highwaters(*tps), 2.0)
        except (TimeoutError, KafkaError) as exc:
            log.warning("cannot reach the broker for the signals topic: %s", exc)
            self.book.lost()
            return
        self.book.regained()
        if self.book.ready():
            return
        if self.target is None:
            self.target = dict(ends)
        positions = {tp: await consumer.position(tp) for tp in self.target}
        if all((positions[tp] or 0) >= end for tp, end in self.target.items()):
            # fetched up to the end seen at start; ready once the agent has applied what
            # was fetched (nothing new applied between two heartbeats)
            if self._settled_at == self.applied:
                self.book.caught_up()
                log.info("signals topic read to its end (%d signals)", self.applied)
            self._settled_at = self.applied


def build(settings: Settings, config: EdgeConfig) -> tuple[EdgeApp, Edge]:
    app = EdgeApp(
        settings.topic(f"tokenledger-edge-{uuid.uuid4().hex[:12]}"),
        broker=broker_url(settings.kafka),
        broker_credentials=config.credentials,
        web_bind=config.host,
        web_host=config.host,
        web_port=config.port,
        datadir=str(Path(settings.home) / "edge"),
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger_ms=1,
        web_application_options={"client_max_size": config.limits.max_body_bytes + 1},
    )
    book = SignalBook(
        topic=settings.topic(topics.SIGNALS),
        on_unavailable=config.on_unavailable,
        stale_after_s=config.stale_after_s,
        public_keys=config.public_keys,
    )
    names = {name: settings.topic(name) for name in INGESTED}

    async def send(records: Sequence[Record]) -> None:
        try:
            async with asyncio.timeout(config.produce_timeout_s):
                pending = [
                    await app.producer.send(names[t], k, v, None, None, None) for t, k, v in records
                ]
                await asyncio.gather(*pending)
        except (TimeoutError, KafkaError, ProducerSendError) as exc:
            raise BrokerUnavailableError(str(exc) or type(exc).__name__) from None

    edge = Edge(config.keys, book, send, config.limits, config.mapping, config.authz_headers)
    feed = Feed(book)
    _agent(app, settings.topic(topics.SIGNALS), feed)
    claims = claim_service.start(app, settings, config, edge.caller)
    _views(app, edge, config.limits, claims)
    return app, edge


def _agent(app: EdgeApp, topic_name: str, feed: Feed) -> None:
    signals = app.topic(
        topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(signals, name="follow-signals")
    async def follow(stream: Any) -> None:
        async for event in stream.events():
            feed.book.apply(event.key, event.value, event.headers)
            feed.applied += 1

    @app.task
    async def settle() -> None:
        """Move what start-up allocated (Faust, aiokafka, pydantic schemas) out of the
        collector's way: a full collection then scans only what requests create, so it
        pauses a check for a few milliseconds rather than tens."""
        gc.collect()
        gc.freeze()

    @app.timer(1.0, name="signals-heartbeat")
    async def heartbeat() -> None:
        await feed.heartbeat(app.consumer)
        feed.book.refresh()


async def _body(request: Any, limit: int) -> bytes:
    check_length(request.headers, limit)
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_large("the body", limit)
            chunks.append(chunk)
    except RequestPayloadError as exc:  # aiohttp could not inflate (or de-chunk) it
        raise unreadable(request.headers.get("Content-Encoding"), _innermost(exc)) from None
    return b"".join(chunks)


def _innermost(exc: BaseException) -> str:
    """The first cause's message (zlib's "incorrect header check"), not the wrappers'."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).strip() or type(exc).__name__


def _views(app: EdgeApp, edge: Edge, limits: Limits, claims: Claims) -> None:
    from faust import web

    def respond(view: web.View, reply: Reply) -> Any:
        return view.bytes(
            reply.body,
            content_type=reply.content_type,
            status=reply.status,
            headers=dict(reply.headers),
        )

    async def ingest(view: web.View, request: Any, handler: Any, *args: Any) -> Any:
        """``handler(headers, *args, body)`` on the body read within the limit."""
        try:
            body = await _body(request, limits.max_body_bytes)
            return respond(view, await handler(request.headers, *args, body))
        except HttpError as exc:
            return respond(view, edge.refused(exc))

    @app.page("/v1/events")
    class Events(web.View):
        async def post(self, request: Any) -> Any:
            return await ingest(self, request, edge.events)

    @app.page("/v1/traces")
    class Traces(web.View):
        async def post(self, request: Any) -> Any:
            return await ingest(self, request, edge.traces)

    @app.page("/v1/check")
    class Check(web.View):
        async def get(self, request: Any) -> Any:
            return respond(self, edge.check(request.headers, request.query))

    class Authz(web.View):
        deny_status = 429

        async def get(self, request: Any) -> Any:
            return respond(self, edge.authz(request.headers, self.deny_status))

        post = put = patch = delete = head = options = get

    class AuthzNginx(Authz):
        deny_status = 403

    app.page("/v1/authz")(Authz)
    app.page("/v1/authz/nginx")(AuthzNginx)

    @app.page("/v1/claims")
    class ClaimsView(web.View):
        async def post(self, request: Any) -> Any:
            return await ingest(self, request, claims.claim, request.query)

        async def get(self, request: Any) -> Any:
            try:
                return respond(self, await claims.look(request.headers, request.query))
            except HttpError as exc:
                return respond(self, edge.refused(exc))

    for name in ("renew", "complete", "release"):

        class ClaimStep(web.View):
            step = getattr(claims, name)

            async def post(self, request: Any) -> Any:
                return await ingest(self, request, self.step)

        app.page(f"/v1/claims/{name}")(type(f"Claim{name.title()}", (ClaimStep,), {}))

    @app.page("/health")
    class Health(web.View):
        async def get(self, request: Any) -> Any:
            return respond(self, json_reply(200, {"status": "serving"}))

    @app.page("/ready")
    class Ready(web.View):
        async def get(self, request: Any) -> Any:
            ready = edge.book.degraded() is None
            body = {
                "ready": ready,
                "signals_read": edge.book.ready(),
                "signals_seen": edge.book.signals_seen,
            }
            return respond(self, json_reply(200 if ready else 503, body))

    @app.page("/metrics")
    class Metrics(web.View):
        async def get(self, request: Any) -> Any:
            body, kind = edge.metrics.exposition()
            return self.bytes(body, content_type=kind.split(";")[0], status=200)


def run(app: EdgeApp) -> int:
    """Serve until SIGTERM or Ctrl-C (Faust's worker handles both and stops cleanly)."""
    from faust import Worker

    worker = Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
