"""SDK caller-side costs on a real local broker: emit() next to a bare produce() of the same
bytes, track() overhead, and BudgetGuard.check(); and what a gateway pays to verify one
signed signal (Ed25519), and a worker to sign one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import Figure, local_broker, median, p99, sample_us
from tokenledger import BudgetGuard, Guardrails, Ledger, TopicNames
from tokenledger.contract.messages import Signal, UsageEvent
from tokenledger.contract.topics import TopicSpec
from tokenledger.kafka_config import client_config
from tokenledger.streams.admin.topics import create_topics


def usage() -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex,
        request_id="r-1",
        idempotency_key="r-1",
        ts=datetime.now(UTC),
        tenant_id="acme",
        user_scope="u-42",
        service="support-bot",
        feature="answer",
        route="rag",
        prompt_version="v3",
        model="gpt-4o",
        provider="openai",
        input_tokens=3500,
        output_tokens=420,
        cached_input_tokens=1024,
        latency_ms=812,
        success=True,
    )


def block(tenant_id: str) -> bytes:
    now = datetime.now(UTC)
    return (
        Signal(
            scope=f"tenant/{tenant_id}",
            tenant_id=tenant_id,
            state="block",
            reason="daily limit",
            spend_nusd=10**10,
            limit_nusd=10**10,
            window_start=now,
            window_end=now,
            issued_at=now,
            issuer="bench",
        )
        .model_dump_json()
        .encode()
    )


def run() -> list[Figure]:
    with local_broker() as (bootstrap, tmp):
        return _measure(bootstrap, tmp) + signing()


def signing() -> list[Figure]:
    """Per signal: the reader's whole check (key id lookup in the ring, Ed25519 verify of
    topic, key, value and issue time) and the worker's signature. No broker needed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tokenledger.signing import PublicKeyring, check
    from tokenledger.streams.admin.signer import Signer

    private = Ed25519PrivateKey.generate()
    signer, ring = Signer(private), PublicKeyring((private.public_key(),))
    topic, key, value = "tokenledger.signals.v1", b"tenant/acme", block("acme")
    issued_ms = int(datetime.now(UTC).timestamp() * 1000)
    headers = signer.headers(topic, key, value, issued_ms)
    assert check(ring, topic, key, value, headers).ok
    verify_us = sample_us(lambda: check(ring, topic, key, value, headers), samples=2000, batch=10)
    sign_us = sample_us(
        lambda: signer.headers(topic, key, value, issued_ms), samples=2000, batch=10
    )
    return [
        Figure(
            "signing.verify_us",
            median(verify_us),
            "us",
            f"Ed25519 check of one {len(value)}-byte signal, as a gateway reads it",
        ),
        Figure("signing.sign_us", median(sign_us), "us", "Ed25519 headers of one signal (worker)"),
    ]


def _measure(bootstrap: str, tmp: Path) -> list[Figure]:
    from confluent_kafka import Producer

    names = TopicNames(requests="b.requests", usage="b.usage", outcomes="b.outcomes")
    create_topics(
        bootstrap, [TopicSpec(n) for n in (names.requests, names.usage, names.outcomes)], 3, 1
    )
    event: UsageEvent = usage()
    value = event.model_dump_json().encode()
    key = event.tenant_id.encode()

    bare = Producer(
        client_config(
            bootstrap,
            {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4"},
        )
    )
    counter = [0]

    def produce() -> None:
        bare.produce(names.usage, value, key)
        counter[0] += 1
        if counter[0] % 1000 == 0:
            bare.poll(0)

    bare_us = sample_us(produce, samples=2000, batch=20)
    bare.flush(30)

    with Ledger("bench", bootstrap=bootstrap, topics=names, spill_dir=tmp / "spill") as ledger:
        emit_us = sample_us(lambda: ledger.emit(event), samples=2000, batch=20)
        assert ledger.flush(60)

        def track() -> None:
            with ledger.track(
                tenant_id="acme",
                feature="answer",
                model="gpt-4o",
                provider="openai",
                max_output_tokens=800,
            ) as call:
                call.record(input_tokens=3500, output_tokens=420)

        track_us = sample_us(track, samples=500, batch=10)
        assert ledger.flush(60)
        spilled = ledger.stats()["spilled"]

    guard = BudgetGuard(guardrails=Guardrails(max_input_tokens={"*": 8000}, max_retries=3))
    guard.book.caught_up()  # state as after catching up; the lookup path is what is measured
    for i in range(1000):
        guard.apply(f"tenant/t{i}".encode(), block(f"t{i}"))
    check_us = sample_us(lambda: guard.check("acme", "answer"), samples=2000, batch=100)
    blocked_us = sample_us(
        lambda: guard.check("t7", "answer", input_tokens=3000), samples=2000, batch=100
    )

    ratio = median(emit_us) / median(bare_us)
    return [
        Figure("sdk.emit_median_us", median(emit_us), "us", f"{len(value)}-byte usage event"),
        Figure("sdk.emit_p99_us", p99(emit_us), "us"),
        Figure(
            "sdk.produce_bare_median_us", median(bare_us), "us", "Producer.produce(), same bytes"
        ),
        Figure("sdk.produce_bare_p99_us", p99(bare_us), "us"),
        Figure("sdk.emit_vs_bare_ratio", ratio, "x", "target <= 2"),
        Figure("sdk.track_median_us", median(track_us), "us", "request + usage event, no prompt"),
        Figure("sdk.check_median_us", median(check_us), "us", "1000 blocked scopes, allowed"),
        Figure(
            "sdk.check_blocked_guardrails_median_us",
            median(blocked_us),
            "us",
            "guardrails on, blocked scope",
        ),
        Figure("sdk.bench_spilled_events", float(spilled), "events", "must be 0"),
    ]
