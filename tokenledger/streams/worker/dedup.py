"""Deduplication decisions, per tenant, with state bounded by a retention window.

- A redelivered event (an ``event_id`` its tenant already sent) is dropped: counted once,
  exactly.
- A repeated generation (an ``idempotency_key`` its tenant used before, under a new
  ``event_id``) is real money: kept, and flagged ``duplicate_generation`` (retry cost).

Callers choose both ids, so they are remembered per tenant: another tenant's ``order-42``
is not this one's retry. Each is kept as a fixed-size key (a 16-byte BLAKE2b digest of
tenant and id: state_keys.EVENT_ID and GENERATION) whose value is when the worker first
saw it; the state indexes them by that time, so each is forgotten ``retention`` after it
was seen, oldest first, without holding the ids in memory. The clock is the processing
time, not the event time: a three-day-old event replayed from a spill is remembered as long
as a fresh one.

State written before ids were scoped (unscoped digests, OLD_EVENT_ID and OLD_GENERATION) is
still read, until the last of it expires: a redelivery of an event seen before the upgrade
still counts once.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import Any, NamedTuple

from tokenledger.streams.worker.state import State, holds
from tokenledger.streams.worker.state_keys import (
    EVENT_ID,
    GENERATION,
    OLD_EVENT_ID,
    OLD_GENERATION,
    digest_key,
    tenant_hash,
)


class Verdict(Enum):
    FIRST = "first"
    DUPLICATE_GENERATION = "duplicate_generation"
    REDELIVERY = "redelivery"


class Decision(NamedTuple):
    verdict: Verdict
    id_key: str
    """The state key of the event id (its digest), computed once per event."""
    generation_key: str
    """The state key of the idempotency key."""


DEFAULT_RETENTION = timedelta(hours=48)
_ID_PREFIX, _GENERATION_PREFIX = EVENT_ID.prefix, GENERATION.prefix
_MAX_TENANTS = 10_000


class Dedup:
    def __init__(self, state: State, retention: timedelta = DEFAULT_RETENTION) -> None:
        self.state = state
        self.retention_ms = int(retention.total_seconds() * 1000)
        self.unscoped = _holds_unscoped(state)
        """Whether ids remembered before they were scoped by tenant are still held."""
        self._tenants: dict[str, Any] = {}

    def _tenant(self, tenant_id: str) -> Any:
        """The tenant's digest state (state_keys.tenant_hash), kept for its next ids."""
        if len(self._tenants) >= _MAX_TENANTS:
            self._tenants.clear()
        h = self._tenants[tenant_id] = tenant_hash(tenant_id)
        return h

    def decide(self, tenant_id: str, event_id: str, idempotency_key: str) -> Decision:
        tenant = self._tenants.get(tenant_id) or self._tenant(tenant_id)
        h = tenant.copy()
        h.update(event_id.encode())
        id_key = _ID_PREFIX + h.hexdigest()
        h = tenant.copy()
        h.update(idempotency_key.encode())
        generation_key = _GENERATION_PREFIX + h.hexdigest()
        get = self.state.get
        if get(id_key) is not None:
            verdict = Verdict.REDELIVERY
        elif get(generation_key) is not None:
            verdict = Verdict.DUPLICATE_GENERATION
        else:
            verdict = Verdict.FIRST
        if self.unscoped and verdict is not Verdict.REDELIVERY:
            verdict = self._unscoped_verdict(verdict, event_id, idempotency_key)
        return Decision(verdict, id_key, generation_key)

    def _unscoped_verdict(self, verdict: Verdict, event_id: str, idempotency_key: str) -> Verdict:
        """What the ids remembered before the upgrade say, where they say more."""
        get = self.state.get
        if get(digest_key(OLD_EVENT_ID, event_id)) is not None:
            return Verdict.REDELIVERY
        if verdict is Verdict.FIRST and get(digest_key(OLD_GENERATION, idempotency_key)):
            return Verdict.DUPLICATE_GENERATION
        return verdict

    def remember(self, decision: Decision, seen_ms: int) -> None:
        """Mark seen at ``seen_ms`` (processing time); the engine commits this with the
        event's output, atomically. A repeated generation keeps the first generation as
        the reference."""
        value = EVENT_ID.encode_value(seen_ms)  # GENERATION's value is the same
        state = self.state
        state.put(decision.id_key, value)
        state.expire_later(decision.id_key, seen_ms)
        if decision.verdict is Verdict.FIRST:
            state.put(decision.generation_key, value)
            state.expire_later(decision.generation_key, seen_ms)

    def expire(self, now_ms: int) -> int:
        """Forget ids seen more than the retention before ``now_ms``; how many."""
        count = self.state.expire(now_ms - self.retention_ms)
        if self.unscoped:
            self.unscoped = _holds_unscoped(self.state)
        return count

    def __len__(self) -> int:
        return self.state.remembered()


def _holds_unscoped(state: State) -> bool:
    return holds(state, OLD_EVENT_ID.prefix) or holds(state, OLD_GENERATION.prefix)
