"""Write and read budget definitions on the compacted budgets topic (key = scope)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from pydantic import ValidationError

from tokenledger.contract import topics
from tokenledger.contract.call_control import RetryBudget
from tokenledger.contract.common import format_usd, parse_usd, usd_to_nusd
from tokenledger.contract.messages import Budget, Window
from tokenledger.contract.names import budget_scope, error_message, name_problem
from tokenledger.kafka_config import client_config
from tokenledger.signing import Headers, PublicKeyring, SigningKeyError, Verdict
from tokenledger.streams.admin import hmac_migration
from tokenledger.streams.admin.signer import Signer, headers_for, writer_keys
from tokenledger.streams.admin.topics import create_topics
from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError, UserError
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions
from tokenledger.streams.worker.budget_feed import BudgetFeed


def usd_option(text: str, option: str, example: str, most: int | None = None) -> int:
    """The dollar amount given as ``option`` ('50', '$12.50', '0.000000001') as exact
    nano-USD: positive, at most 9 decimals and, when given, at most ``most``."""
    try:
        usd = parse_usd(text)
    except ValueError:
        raise UserError(f"{option} {text!r} is not an amount; write e.g. {example}") from None
    try:
        nusd = usd_to_nusd(usd, exact=True)
    except ValueError:  # a fraction of a nano-dollar
        nusd = 0
    if nusd <= 0 or (most is not None and nusd > most):
        raise UserError(f"{option} {text!r} must be positive with at most 9 decimals")
    return nusd


def parse_warn(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UserError(f"--warn {text!r} is not a list of percentages like 50,80") from None


def scope_of(tenant: str, feature: str | None) -> str:
    """The scope of a tenant's (feature's) budget; refused unless both are names (a name
    with '/' would make the scope another tenant's)."""
    for what, value in (("tenant", tenant), ("feature", feature)):
        problem = name_problem(value) if value is not None else None
        if problem is not None:
            raise UserError(f"--{what} {value!r}: {problem}")
    return budget_scope(tenant, feature)


def make_budget(
    tenant: str, feature: str | None, limit_usd: str, window: Window, tz: str, warn: str
) -> Budget:
    try:
        return Budget(
            tenant_id=tenant,
            feature=feature,
            limit_nusd=usd_option(limit_usd, "--limit-usd", "50 or 12.50"),
            window=window,
            tz=tz,
            warn_pct=parse_warn(warn),
            updated_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_id", "").replace("_pct", "")
        message = error_message(first).removeprefix("Value error, ")
        raise UserError(f"--{where} {first['input']!r}: {message}") from None


def _topic(settings: Settings) -> str:
    name = settings.topic(topics.BUDGETS)
    spec = next(t for t in topics.TOPICS if t.name == topics.BUDGETS)
    create_topics(
        settings.kafka,
        [topics.TopicSpec(name, spec.compacted, spec.configs)],
        settings.partitions,
        settings.replication_factor,
    )
    return name


def authority() -> tuple[Signer | None, PublicKeyring | None]:
    """This host's signing key and the ring it reads with (tokenledger.streams.admin.signer)."""
    try:
        return writer_keys()
    except SigningKeyError as exc:
        raise UserError(str(exc)) from None


class MigratingDefinitions(BudgetDefinitions):
    """The workers' budget definitions, also taking budgets signed with the old HMAC key: what
    ``resign`` reads during the migration to Ed25519, never what a worker enforces."""

    def __init__(self, topic: str, ring: PublicKeyring | None, legacy: hmac_migration.HmacKeys):
        super().__init__(topic, ring)
        self.legacy = legacy

    def verdict(self, key: bytes | None, value: bytes | None, headers: Headers) -> Verdict:
        verdict = super().verdict(key, value, headers)
        if verdict.ok:
            return verdict
        return hmac_migration.check(self.legacy, self.topic, key, value, headers)


def _send(settings: Settings, key: str, value: bytes | None, issued_ms: int) -> None:
    from confluent_kafka import Producer

    topic = _topic(settings)
    signer, _ = authority()
    producer = Producer(client_config(settings.kafka, {"enable.idempotence": True}))
    headers = headers_for(signer, topic, key.encode(), value, issued_ms)
    producer.produce(topic, value, key.encode(), headers=headers)
    if producer.flush(15) != 0:
        raise ServiceUnavailableError(f"the budget for {key} was not acknowledged by Kafka")


Definition = TypeVar("Definition", Budget, RetryBudget)


def put(
    settings: Settings, budget: Definition, book: BudgetDefinitions | None = None
) -> Definition:
    """Publish ``budget``, stamped newer than whatever the topic holds for its scope (so
    readers, which accept only newer records, take it); the budget as published."""
    book = read(settings) if book is None else book
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    issued = book.freshness.next_after(budget.scope, now_ms)
    stamped = budget.model_copy(update={"updated_at": datetime.fromtimestamp(issued / 1000, UTC)})
    _send(settings, stamped.scope, stamped.model_dump_json().encode(), issued)
    return stamped


def remove(settings: Settings, scope: str) -> bool:
    """Tombstone ``scope`` (its signed issue time in the headers); False when it had no
    budget."""
    book = read(settings)
    if scope not in book.by_scope and scope not in book.retry_budgets.by_scope:
        return False
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    _send(settings, scope, None, book.freshness.next_after(scope, now_ms))
    return True


def resign(settings: Settings) -> tuple[list[Budget], str]:
    """Publish every budget in force again, signed with this host's key (and its id): the
    step of a key rotation after which the previous key can be retired, and of the
    migration from HMAC, where the budgets in force include those signed with
    TOKENLEDGER_LEGACY_HMAC_KEY (docs/security.md). Retry budgets are published again too;
    the budgets are returned."""
    signer, _ = authority()
    if signer is None:
        raise UserError("budget resign signs with TOKENLEDGER_SIGNING_KEY_FILE, which is not set")
    book = read(settings, migrating=True)
    for retry in list(book.retry_budgets.by_scope.values()):
        put(settings, retry, book)
    return [put(settings, budget, book) for budget in list(book.by_scope.values())], signer.key_id


def current(settings: Settings, timeout: float = 20.0) -> list[Budget]:
    """Every budget in force, as the workers see it."""
    return sorted(read(settings, timeout).by_scope.values(), key=lambda b: b.scope)


def read(settings: Settings, timeout: float = 20.0, migrating: bool = False) -> BudgetDefinitions:
    """The budgets topic read to its end through the workers' own book and feed: signatures
    checked and replays ignored, so what is listed is what is enforced. ``migrating``: the
    old HMAC key's budgets count too (``resign`` only)."""
    topic = _topic(settings)
    signer, ring = authority()
    legacy = signer.legacy if signer is not None else None
    book = (
        BudgetDefinitions(topic, ring)
        if legacy is None or not migrating
        else MigratingDefinitions(topic, ring, legacy)
    )
    feed = BudgetFeed(settings, topic, book)
    try:
        feed.catch_up(timeout)
    finally:
        feed.close()
    return feed.book


def describe(budget: Budget) -> str:
    warn = ", ".join(f"{p}%" for p in budget.warn_pct) or "none"
    return (
        f"{budget.scope}: {format_usd(budget.limit_nusd)} per {budget.window} "
        f"({budget.tz}), warn at {warn}"
    )
