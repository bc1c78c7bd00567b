"""The usage processor: one partition of ``tokenledger.usage.v1`` at a time.

raw bytes -> validate (DLQ with a reason) -> deduplicate per tenant (redeliveries dropped,
repeated generations flagged) -> price (the price book's cost; the caller's own beside it,
a mismatch flagged and counted; unknown models unpriced, never $0) -> spend windows (late
events on the counted late path) ->
``tokenledger.usage.enriched.v1``. Pure apart from its state object; the engine makes each
batch's outputs, state changes and input offsets one Kafka transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tokenledger.contract.messages import UsageEvent
from tokenledger.contract.price_book import PriceBook
from tokenledger.streams.records import Output, Rejection, dead_letter
from tokenledger.streams.worker.dedup import DEFAULT_RETENTION, Dedup, Verdict
from tokenledger.streams.worker.price import Enriched, enrich
from tokenledger.streams.worker.state import State
from tokenledger.streams.worker.state_keys import WATERMARK
from tokenledger.streams.worker.validate import parse
from tokenledger.streams.worker.windows import DEFAULT_LATENESS, SpendWindows, window_start

COMPONENT = "usage-worker"
_EXPIRE_EVERY_MS = 60_000


@dataclass(frozen=True)
class UsageTopics:
    enriched: str
    dlq: str


class UsageTask:
    """The state and logic of one usage partition."""

    def __init__(
        self,
        state: State,
        prices: PriceBook,
        topics: UsageTopics,
        *,
        dedup_retention: timedelta = DEFAULT_RETENTION,
        allowed_lateness: timedelta = DEFAULT_LATENESS,
        trusted_cost_services: frozenset[str] = frozenset(),
        on_enriched: Callable[[Enriched], None] | None = None,
        on_minute: Callable[[int], None] | None = None,
    ) -> None:
        self.state = state
        self.on_enriched = on_enriched
        self.on_minute = on_minute
        """Called with the new watermark before an event moves it into a later minute (an
        event-time tick: the anomaly detectors judge the minutes it closes)."""
        self.prices = prices
        self.topics = topics
        self.trusted = trusted_cost_services
        self.dedup = Dedup(state, dedup_retention)
        self.windows = SpendWindows(state, allowed_lateness)
        saved = state.get(WATERMARK.encode_key(None))
        self.watermark_ms = 0 if saved is None else WATERMARK.decode_value(saved)
        self._saved_watermark = self.watermark_ms
        self._expired_at = self.watermark_ms
        self._ids_expired_at = 0
        self._now: datetime | None = None
        self._now_ms = 0
        self.counters: Counter[str] = Counter()

    def process(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> list[Output]:
        event = parse(value, UsageEvent, now)
        if isinstance(event, Rejection):
            return [
                dead_letter(
                    event,
                    self.counters,
                    self.topics.dlq,
                    raw=value,
                    key=key,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    component=COMPONENT,
                    now=now,
                )
            ]
        decision = self.dedup.decide(event.tenant_id, event.event_id, event.idempotency_key)
        if decision.verdict is Verdict.REDELIVERY:
            self.counters["redelivered"] += 1
            return []
        ts_ms = int(event.ts.timestamp() * 1000)
        late = self.windows.is_late(ts_ms, self.watermark_ms)
        # a replay shares the first attempt's idempotency key but generated nothing
        duplicate = decision.verdict is Verdict.DUPLICATE_GENERATION and event.replay_of is None
        enriched = enrich(
            event, self.prices, self.trusted, late=late, now=now, duplicate_generation=duplicate
        )
        if now is not self._now:  # one clock reading per batch
            self._now, self._now_ms = now, int(now.timestamp() * 1000)
        self.dedup.remember(decision, self._now_ms)
        if late:
            self.counters["late"] += 1
        else:
            if window_start(ts_ms, "minute") > self.watermark_ms and self.on_minute is not None:
                self.windows.flush()  # what the judges of the closed minutes read
                self.on_minute(ts_ms)
            self.windows.add(ts_ms, event.tenant_id, event.feature, event.model, enriched.cost_nusd)
        if duplicate:
            self.counters["duplicate_generation"] += 1
        if enriched.cost_mismatch:
            self.counters["cost_mismatch"] += 1
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms
        self.counters["enriched"] += 1
        if self.on_enriched is not None:
            self.on_enriched(enriched)
        return [Output(self.topics.enriched, event.tenant_id.encode(), enriched.to_json())]

    def end_batch(self, now: datetime) -> list[Output]:
        """Persist the watermark; about once a minute, forget ids seen longer ago than the
        retention (processing time) and windows past their lateness (event time)."""
        self.windows.flush()
        if self.watermark_ms != self._saved_watermark:
            self.state.put(WATERMARK.encode_key(None), WATERMARK.encode_value(self.watermark_ms))
            self._saved_watermark = self.watermark_ms
        now_ms = int(now.timestamp() * 1000)
        if now_ms - self._ids_expired_at >= _EXPIRE_EVERY_MS:
            self.dedup.expire(now_ms)
            self._ids_expired_at = now_ms
        if self.watermark_ms - self._expired_at >= _EXPIRE_EVERY_MS:
            self.windows.expire(self.watermark_ms)
            self._expired_at = self.watermark_ms
        return []
