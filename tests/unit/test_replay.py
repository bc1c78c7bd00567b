"""Replayed records: per scope only a newer budget, removal or signal counts, whatever order
the topic delivers them in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.helpers import factories
from tests.helpers.signing_keys import ring, signer
from tokenledger.contract.messages import Budget, Signal
from tokenledger.guard import BudgetGuard
from tokenledger.streams.worker.budget_definitions import BudgetDefinitions

SIGNER = signer()
RING = ring(SIGNER)
T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def signal(state: str, at: datetime) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    value = factories.signal(state=state, issued_at=at).model_dump_json().encode()
    return value, SIGNER.headers("signals", b"tenant/acme", value, ms(at))


def budget(limit_usd: int, at: datetime) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    value = (
        Budget(tenant_id="acme", limit_nusd=limit_usd * 10**9, updated_at=at)
        .model_dump_json()
        .encode()
    )
    return value, SIGNER.headers("budgets", b"tenant/acme", value, ms(at))


def healthy(guard: BudgetGuard) -> BudgetGuard:
    guard.book.caught_up()  # as if caught up with the topic
    return guard


def test_a_replayed_allow_does_not_lift_a_newer_block() -> None:
    guard = healthy(BudgetGuard(public_keys=RING, topic="signals"))
    old_allow, block = signal("allow", T0), signal("block", T0 + timedelta(hours=1))
    guard.apply(b"tenant/acme", *old_allow)
    guard.apply(b"tenant/acme", *block)
    guard.apply(b"tenant/acme", *old_allow)  # the attacker's copy
    assert not guard.check("acme").allowed and guard.replayed_signals == 1


def test_after_compaction_the_next_heartbeat_restores_the_block() -> None:
    """A guard started after compaction may see only the replayed record at first."""
    guard = healthy(BudgetGuard(public_keys=RING, topic="signals"))
    guard.apply(b"tenant/acme", *signal("allow", T0))
    assert guard.check("acme").allowed
    guard.apply(b"tenant/acme", *signal("block", T0 + timedelta(hours=1, seconds=10)))
    assert not guard.check("acme").allowed


def test_a_removal_counts_only_with_its_signed_newer_time() -> None:
    guard = healthy(BudgetGuard(public_keys=RING, topic="signals"))
    guard.apply(b"tenant/acme", *signal("block", T0))
    old_tomb = SIGNER.headers("signals", b"tenant/acme", None, ms(T0) - 1)
    guard.apply(b"tenant/acme", None, old_tomb)
    assert not guard.check("acme").allowed and guard.replayed_signals == 1
    guard.apply(b"tenant/acme", None, SIGNER.headers("signals", b"tenant/acme", None, ms(T0) + 1))
    assert guard.check("acme").allowed


def test_budget_definitions_keep_the_newest_definition_and_ignore_old_removals() -> None:
    book = BudgetDefinitions("budgets", RING)
    high, low = budget(100, T0), budget(1, T0 + timedelta(hours=1))
    removal = SIGNER.headers("budgets", b"tenant/acme", None, ms(T0 + timedelta(minutes=30)))
    book.apply(b"tenant/acme", *high)
    book.apply(b"tenant/acme", None, removal)
    assert "tenant/acme" not in book.by_scope
    book.apply(b"tenant/acme", *low)
    book.apply(b"tenant/acme", *high)  # a higher limit since lowered, replayed
    book.apply(b"tenant/acme", None, removal)  # an old removal, replayed
    assert book.by_scope["tenant/acme"].limit_nusd == 10**9 and book.replayed == 2


def test_a_signal_from_another_key_or_unsigned_does_not_count() -> None:
    guard = healthy(BudgetGuard(public_keys=RING, topic="signals"))
    value = Signal.model_validate_json(signal("block", T0)[0]).model_dump_json().encode()
    guard.apply(b"tenant/acme", value, signer().headers("signals", b"tenant/acme", value, ms(T0)))
    guard.apply(b"tenant/acme", value, None)
    assert guard.check("acme").allowed and guard.unauthorized_signals == 2
