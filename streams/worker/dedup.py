"""Deduplication decisions, with state bounded by an event-time retention window.

- A redelivered event (an ``event_id`` already seen) is dropped: counted once, exactly.
- A repeated generation (an ``idempotency_key`` seen before, under a new ``event_id``) is
  real money: kept, and flagged ``duplicate_generation`` (retry cost).

Ids are remembered as fixed-size keys (16-byte BLAKE2b digests, ``E:`` and ``K:``) whose
value is the event time; the state indexes them by that time, so entries expire once the
partition's event-time watermark (the largest event time seen) is ``retention`` past them,
oldest first, without holding the ids in memory. Decisions depend only on the input order,
so replaying a partition reproduces them.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import NamedTuple

from streams.worker.state import State, digest_key


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


class Dedup:
    def __init__(self, state: State, retention: timedelta = DEFAULT_RETENTION) -> None:
        self.state = state
        self.retention_ms = int(retention.total_seconds() * 1000)

    def decide(self, event_id: str, idempotency_key: str) -> Decision:
        id_key = digest_key("E:", event_id)
        generation_key = digest_key("K:", idempotency_key)
        if self.state.get(id_key) is not None:
            verdict = Verdict.REDELIVERY
        elif self.state.get(generation_key) is not None:
            verdict = Verdict.DUPLICATE_GENERATION
        else:
            verdict = Verdict.FIRST
        return Decision(verdict, id_key, generation_key)

    def remember(self, decision: Decision, ts_ms: int) -> None:
        """Mark seen; the engine commits this with the event's output, atomically. A
        repeated generation keeps the first generation as the reference."""
        value = str(ts_ms)
        state = self.state
        state.put(decision.id_key, value)
        state.expire_later(decision.id_key, ts_ms)
        if decision.verdict is Verdict.FIRST:
            state.put(decision.generation_key, value)
            state.expire_later(decision.generation_key, ts_ms)

    def expire(self, watermark_ms: int) -> int:
        """Forget entries older than the retention behind ``watermark_ms``; how many."""
        return self.state.expire(watermark_ms - self.retention_ms)

    def __len__(self) -> int:
        return self.state.remembered()
