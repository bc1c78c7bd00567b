"""Deduplication decisions, with state bounded by an event-time retention window.

- A redelivered event (an ``event_id`` already seen) is dropped: counted once, exactly.
- A repeated generation (an ``idempotency_key`` seen before, under a new ``event_id``) is
  real money: kept, and flagged ``duplicate_generation`` (retry cost).

Entries expire once the partition's event-time watermark (the largest event time seen) is
``retention`` past them, so memory is bounded by the traffic of one retention window.
Decisions depend only on the input order, so replaying a partition reproduces them.
"""

from __future__ import annotations

import heapq
from datetime import timedelta
from enum import Enum

from streams.worker.state import ChangelogState


class Verdict(Enum):
    FIRST = "first"
    DUPLICATE_GENERATION = "duplicate_generation"
    REDELIVERY = "redelivery"


DEFAULT_RETENTION = timedelta(hours=48)


class Dedup:
    def __init__(self, state: ChangelogState, retention: timedelta = DEFAULT_RETENTION) -> None:
        self.state = state
        self.retention_ms = int(retention.total_seconds() * 1000)
        self._expiry: list[tuple[int, str]] = []
        for key, value in state.items("d:"):
            self._expiry.append((int(value), key))
        for key, value in state.items("i:"):
            self._expiry.append((int(value.rsplit("|", 1)[1]), key))
        heapq.heapify(self._expiry)

    def decide(self, event_id: str, idempotency_key: str) -> Verdict:
        if self.state.get("d:" + event_id) is not None:
            return Verdict.REDELIVERY
        if self.state.get("i:" + idempotency_key) is not None:
            return Verdict.DUPLICATE_GENERATION
        return Verdict.FIRST

    def remember(self, event_id: str, idempotency_key: str, ts_ms: int) -> None:
        """Mark seen; the engine commits this with the event's output, atomically."""
        self.state.put("d:" + event_id, str(ts_ms))
        heapq.heappush(self._expiry, (ts_ms, "d:" + event_id))
        key = "i:" + idempotency_key
        if self.state.get(key) is None:
            self.state.put(key, f"{event_id}|{ts_ms}")
            heapq.heappush(self._expiry, (ts_ms, key))

    def expire(self, watermark_ms: int) -> int:
        """Forget entries older than the retention behind ``watermark_ms``; how many."""
        horizon = watermark_ms - self.retention_ms
        dropped = 0
        while self._expiry and self._expiry[0][0] < horizon:
            _, key = heapq.heappop(self._expiry)
            self.state.delete(key)
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._expiry)
