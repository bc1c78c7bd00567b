"""Write and read budget definitions on the compacted budgets topic (key = scope)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from schemas import topics
from schemas.common import format_usd
from schemas.messages import Budget, Window
from streams.admin.topics import create_topics
from streams.config import Settings
from streams.errors import ServiceUnavailableError, UserError
from tokenledger.kafka_config import client_config


def parse_usd(text: str) -> int:
    """A dollar amount as exact nano-USD: '50', '12.5', '0.000000001'."""
    try:
        value = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise UserError(f"--limit-usd {text!r} is not an amount; write e.g. 50 or 12.50") from None
    nano = value * 1_000_000_000
    if not value.is_finite() or value <= 0 or nano != nano.to_integral_value():
        raise UserError(f"--limit-usd {text!r} must be positive with at most 9 decimals")
    return int(nano)


def parse_warn(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UserError(f"--warn {text!r} is not a list of percentages like 50,80") from None


def make_budget(tenant: str, feature: str | None, limit_usd: str, window: Window, tz: str,
                warn: str) -> Budget:  # fmt: skip
    try:
        return Budget(tenant_id=tenant, feature=feature, limit_nusd=parse_usd(limit_usd),
                      window=window, tz=tz, warn_pct=parse_warn(warn),
                      updated_at=datetime.now(UTC))  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_id", "").replace("_pct", "")
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "string_pattern_mismatch":
            message = "use 1-128 letters, digits and . _ : / @ + - (starting alphanumeric)"
        raise UserError(f"--{where} {first['input']!r}: {message}") from None


def _topic(settings: Settings) -> str:
    name = settings.topic(topics.BUDGETS)
    spec = next(t for t in topics.TOPICS if t.name == topics.BUDGETS)
    create_topics(settings.kafka, [topics.TopicSpec(name, spec.compacted, spec.configs)],
                  settings.partitions, settings.replication_factor)  # fmt: skip
    return name


def _send(settings: Settings, key: str, value: bytes | None) -> None:
    from confluent_kafka import Producer

    from tokenledger.signing import SigningKeyError, headers_for, signing_key

    try:
        secret = signing_key()
    except SigningKeyError as exc:
        raise UserError(str(exc)) from None
    topic = _topic(settings)
    producer = Producer(client_config(settings.kafka, {"enable.idempotence": True}))
    producer.produce(topic, value, key.encode(),
                     headers=headers_for(secret, topic, key.encode(), value))  # fmt: skip
    if producer.flush(15) != 0:
        raise ServiceUnavailableError(f"the budget for {key} was not acknowledged by Kafka")


def put(settings: Settings, budget: Budget) -> None:
    _send(settings, budget.scope, budget.model_dump_json().encode())


def remove(settings: Settings, scope: str) -> bool:
    """Tombstone ``scope``; False when it had no budget."""
    if scope not in {b.scope for b in current(settings)}:
        return False
    _send(settings, scope, None)
    return True


def current(settings: Settings, timeout: float = 20.0) -> list[Budget]:
    """Every budget in force, read from the start of the topic to its end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    topic = _topic(settings)
    consumer = Consumer(client_config(settings.kafka, {
        "group.id": "tokenledger-budget-list", "enable.auto.commit": False,
        "enable.partition.eof": True,
    }))  # fmt: skip
    try:
        partitions = set(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        latest: dict[str, bytes | None] = {}
        at_end: set[int | None] = set()
        deadline = time.monotonic() + timeout
        while at_end != partitions:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"could not read {topic} to its end")
            for m in consumer.consume(1000, 0.2):
                err, key = m.error(), m.key()
                if err is None and key is not None:
                    latest[key.decode()] = m.value()
                elif err is not None and err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
    finally:
        consumer.close()
    budgets = []
    for value in latest.values():
        if value is not None:
            try:
                budgets.append(Budget.model_validate_json(value))
            except ValidationError:
                continue  # not ours to show; the workers ignore it too
    return sorted(budgets, key=lambda b: b.scope)


def describe(budget: Budget) -> str:
    warn = ", ".join(f"{p}%" for p in budget.warn_pct) or "none"
    return (f"{budget.scope}: {format_usd(budget.limit_nusd)} per {budget.window} "
            f"({budget.tz}), warn at {warn}")  # fmt: skip
