"""The usage processor: one partition of ``tokenledger.usage.v1`` at a time.

raw bytes -> validate (DLQ with a reason) -> deduplicate (redeliveries dropped, repeated
generations flagged) -> price (table or the event's own cost, checked; unknown models
unpriced, never $0) -> spend windows (late events on the counted late path) ->
``tokenledger.usage.enriched.v1``. Pure apart from its state object; the engine makes each
batch's outputs, state changes and input offsets one Kafka transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.messages import EnrichedUsage, UsageEvent
from schemas.pricing import PriceTable, TokenCounts, cost_nusd
from streams.dedup import DEFAULT_RETENTION, Dedup, Verdict
from streams.state import ChangelogState
from streams.validate import Output, Rejection, dead_letter, parse
from streams.windows import DEFAULT_LATENESS, SpendWindows

COMPONENT = "usage-worker"
_EXPIRE_EVERY_MS = 60_000


@dataclass(frozen=True)
class UsageTopics:
    enriched: str
    dlq: str


def cost_mismatch(event_cost: int, table_cost: int) -> bool:
    """A caller's cost disagrees with the table beyond rounding: more than 0.1% and more
    than 1000 nano-USD ($0.000001) apart."""
    diff = abs(event_cost - table_cost)
    return diff > 1000 and diff * 1000 > table_cost


def enrich(
    event: UsageEvent,
    table: PriceTable,
    *,
    duplicate_generation: bool,
    late: bool,
    now: datetime,
) -> EnrichedUsage:
    """Price one usage event. A cache hit costs 0 and its table cost is what it saved."""
    tokens = TokenCounts(
        input=event.input_tokens, output=event.output_tokens,
        cached_input=event.cached_input_tokens, cache_write=event.cache_write_tokens,
        reasoning=event.reasoning_tokens,
    )  # fmt: skip
    plain = tokens.uncached()
    rate = table.lookup(event.model, event.ts)
    table_cost = list_cost = unbatched = None
    if rate is not None:
        table_cost = cost_nusd(rate, tokens, batch=event.batch)
        unbatched = cost_nusd(rate, tokens, batch=False)
        list_cost = cost_nusd(rate, plain, batch=False)
    reference_model = table.reference_model(event.route)
    reference = table.lookup(reference_model, event.ts)
    counterfactual = context_saved = None
    if reference is not None:
        counterfactual = cost_nusd(reference, plain, batch=False)
        trimmed = TokenCounts(input=event.context_trimmed_tokens, output=0)
        context_saved = cost_nusd(reference, trimmed, batch=False)
    version = table.version_of(rate) if rate is not None else f"{table.version}:unknown"
    if event.cache != "none":
        cost, source, mismatch = 0, "cache", False
    elif event.cost_nusd is not None:
        cost, source = event.cost_nusd, "event"
        mismatch = table_cost is not None and cost_mismatch(event.cost_nusd, table_cost)
    elif table_cost is not None:
        cost, source, mismatch = table_cost, "table", False
    else:
        cost, source, mismatch = None, "unpriced", False
    fields = event.model_dump(exclude={"kind"})
    fields.update(
        cost_nusd=cost,
        priced=cost is not None,
        table_cost_nusd=table_cost,
        cost_source=source,
        cost_mismatch=mismatch,
        pricing_version=version,
        reference_model=reference_model,
        counterfactual_cost_nusd=counterfactual,
        list_cost_nusd=list_cost,
        unbatched_cost_nusd=unbatched,
        context_saved_nusd=context_saved,
        duplicate_generation=duplicate_generation,
        late=late,
        processed_at=now,
    )
    # validation runs in pydantic's compiled core: faster than model_construct's Python loop
    return EnrichedUsage.model_validate(fields)


class UsageTask:
    """The state and logic of one usage partition."""

    def __init__(
        self,
        state: ChangelogState,
        prices: PriceTable,
        topics: UsageTopics,
        *,
        dedup_retention: timedelta = DEFAULT_RETENTION,
        allowed_lateness: timedelta = DEFAULT_LATENESS,
        on_enriched: Callable[[EnrichedUsage], None] | None = None,
    ) -> None:
        self.state = state
        self.on_enriched = on_enriched
        self.prices = prices
        self.topics = topics
        self.dedup = Dedup(state, dedup_retention)
        self.windows = SpendWindows(state, allowed_lateness)
        self.watermark_ms = int(state.get("m:watermark") or 0)
        self._saved_watermark = self.watermark_ms
        self._expired_at = self.watermark_ms
        self.counters: Counter[str] = Counter()

    def process(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        now: datetime,
    ) -> list[Output]:  # fmt: skip
        event = parse(value, UsageEvent, now)
        if isinstance(event, Rejection):
            return [dead_letter(event, self.counters, self.topics.dlq, raw=value, key=key,
                                topic=topic, partition=partition, offset=offset,
                                component=COMPONENT, now=now)]  # fmt: skip
        verdict = self.dedup.decide(event.event_id, event.idempotency_key)
        if verdict is Verdict.REDELIVERY:
            self.counters["redelivered"] += 1
            return []
        ts_ms = int(event.ts.timestamp() * 1000)
        late = self.windows.is_late(ts_ms, self.watermark_ms)
        enriched = enrich(event, self.prices, late=late, now=now,
                          duplicate_generation=verdict is Verdict.DUPLICATE_GENERATION)  # fmt: skip
        self.dedup.remember(event.event_id, event.idempotency_key, ts_ms)
        if late:
            self.counters["late"] += 1
        else:
            self.windows.add(ts_ms, event.tenant_id, event.feature, event.model,
                             enriched.cost_nusd)  # fmt: skip
        if verdict is Verdict.DUPLICATE_GENERATION:
            self.counters["duplicate_generation"] += 1
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms
        self.counters["enriched"] += 1
        if self.on_enriched is not None:
            self.on_enriched(enriched)
        return [Output(self.topics.enriched, event.tenant_id.encode(),
                       enriched.model_dump_json().encode())]  # fmt: skip

    def end_batch(self, now: datetime) -> list[Output]:
        """Persist the watermark; expire old state about once a minute of event time."""
        self.windows.flush()
        if self.watermark_ms != self._saved_watermark:
            self.state.put("m:watermark", str(self.watermark_ms))
            self._saved_watermark = self.watermark_ms
        if self.watermark_ms - self._expired_at >= _EXPIRE_EVERY_MS:
            self.dedup.expire(self.watermark_ms)
            self.windows.expire(self.watermark_ms)
            self._expired_at = self.watermark_ms
        return []
