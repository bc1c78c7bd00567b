"""The claims service inside the edge app: its group consumer, writes, forwarding, sweep.

Wires tokenledger.streams.edge.claim_owner (who decides) and tokenledger.streams.edge.claims
(the HTTP logic) to the Faust app: a producer of its own writes claims (idempotent, ``acks=all``, answered per record rather than through Faust's send buffer), a task
follows the ``tokenledger-edge-claims`` group, an aiohttp client forwards requests to a
key's owner, and a timer tombstones claims that no longer bind (lapsed leases, results past
their TTL), so the compacted topic forgets them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from tokenledger.contract import topics
from tokenledger.streams.config import Settings
from tokenledger.streams.edge import claim_state
from tokenledger.streams.edge.bodies import HttpError, Reply
from tokenledger.streams.edge.claim_owner import ClaimKeeper, consumer_for, now_ms
from tokenledger.streams.edge.claims import OWNER, Claims
from tokenledger.streams.edge.keys import Caller

if TYPE_CHECKING:
    from tokenledger.streams.edge.app import EdgeConfig
    from tokenledger.streams.edge.kafka import EdgeApp

log = logging.getLogger(__name__)
GROUP = "tokenledger-edge-claims"
SWEEP_S = 30.0


def start(
    app: EdgeApp,
    settings: Settings,
    config: EdgeConfig,
    caller: Callable[[Mapping[str, str]], Caller],
) -> Claims:
    topic = settings.topic(topics.CLAIMS)
    url = config.advertised_url or f"http://{config.host}:{config.port}"

    producer: list[AIOKafkaProducer] = []

    async def produce(partition: int, key: bytes, value: bytes | None) -> None:
        try:
            if not producer:
                raise KafkaError("the claims producer has not started")
            async with asyncio.timeout(config.produce_timeout_s):
                sent = await producer[0].send(topic, value, key=key, partition=partition)
                await sent
        except (TimeoutError, KafkaError) as exc:
            raise HttpError(
                503,
                f"Kafka did not acknowledge the claim ({exc or type(exc).__name__}); nothing "
                "changed, send it again in 1 s",
                {"Retry-After": "1"},
                reason="unavailable",
            ) from None

    keeper = ClaimKeeper(topic, url, produce)
    session: list[aiohttp.ClientSession] = []

    async def forward(
        target: str, method: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> Reply:
        if not session:
            session.append(aiohttp.ClientSession())
        try:
            async with session[0].request(
                method,
                target,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as r:
                data = await r.read()
                kept = {k: r.headers[k] for k in ("Retry-After", OWNER) if k in r.headers}
                return Reply(r.status, data, r.content_type, kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HttpError(
                503,
                f"the edge instance that owns this key did not answer "
                f"({type(exc).__name__}); send it again in 1 s",
                {"Retry-After": "1"},
                reason="claims_owner_unreachable",
            ) from None

    @app.task
    async def follow_claims() -> None:
        auth = credentials_to_aiokafka_auth(config.credentials)
        bootstrap = [h.strip() for h in settings.kafka.split(",") if h.strip()]
        consumer = consumer_for(settings.topic(GROUP), keeper, bootstrap, auth)
        writer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            **auth,
        )
        await writer.start()
        producer.append(writer)
        try:
            await keeper.run(consumer)
        finally:
            await writer.stop()
            if session:
                await session[0].close()

    @app.timer(SWEEP_S, name="claims-sweep")
    async def sweep() -> None:
        def forget(current: claim_state.Claim | None, now: int) -> Any:
            gone = current is not None and claim_state.live(current, now) is None
            return claim_state.Answer("free"), claim_state.DELETE if gone else None

        for partition, key in keeper.expired(now_ms()):
            try:
                await keeper.decide(partition, key, forget)
            except HttpError as exc:
                log.warning("claims sweep: %s", exc.message)
                return

    return Claims(keeper, config.claims, caller, forward)
