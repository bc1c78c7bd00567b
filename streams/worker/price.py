"""Step 3 of the worker: a usage event -> its enriched record with exact costs.

The cost is the price book's (the operator's file over genai-prices, in force at the
event's time, for its batch processing and service tier), the caller's own cost when
it agrees with the table (a mismatch is flagged), 0 for a cache hit (its table cost is what
it saved), or unpriced for an unknown model: never $0. The list, unbatched, counterfactual
and context-saved costs feed the savings waterfall.
"""

from __future__ import annotations

from datetime import datetime

from schemas.messages import EnrichedUsage, UsageEvent
from schemas.price_book import CallContext, PriceBook
from schemas.pricing import TokenCounts


def cost_mismatch(event_cost: int, table_cost: int) -> bool:
    """A caller's cost disagrees with the table beyond rounding: more than 0.1% and more
    than 1000 nano-USD ($0.000001) apart."""
    diff = abs(event_cost - table_cost)
    return diff > 1000 and diff * 1000 > table_cost


def enrich(
    event: UsageEvent,
    book: PriceBook,
    *,
    duplicate_generation: bool,
    late: bool,
    now: datetime,
) -> EnrichedUsage:
    """Price one usage event. A cache hit costs 0 and its table cost is what it saved."""
    tokens = TokenCounts(
        input=event.input_tokens, output=event.output_tokens,
        cached_input=event.cached_input_tokens, cache_write=event.cache_write_tokens,
        reasoning=event.reasoning_tokens, cache_write_1h=event.cache_write_1h_tokens,
    )  # fmt: skip
    plain = tokens.uncached()
    context = CallContext(batch=event.batch, service_tier=event.service_tier)
    quote = book.quote(event.provider, event.model, event.ts, context)
    table_cost = list_cost = unbatched = None
    if quote is not None:
        table_cost = quote.cost_nusd(tokens)
        unbatched_quote = quote
        if event.batch:
            unbatched_context = CallContext(service_tier=event.service_tier)
            unbatched_quote = book.quote(event.provider, event.model, event.ts,
                                         unbatched_context) or quote  # fmt: skip
        unbatched = unbatched_quote.cost_nusd(tokens)
        list_cost = unbatched_quote.cost_nusd(plain)
    reference_model = book.reference_model(event.route)
    reference = book.reference_quote(event.route, event.ts)
    counterfactual = context_saved = None
    if reference is not None:
        counterfactual = reference.cost_nusd(plain)
        trimmed = TokenCounts(input=event.context_trimmed_tokens, output=0)
        context_saved = reference.cost_nusd(trimmed) - reference.cost_nusd(TokenCounts(0, 0))
    version = quote.version if quote is not None else f"{book.version}:unknown"
    if event.cache != "none":
        cost, source, mismatch = 0, "cache", False
    elif event.cost_nusd is not None:
        cost, source = event.cost_nusd, "event"
        mismatch = table_cost is not None and cost_mismatch(event.cost_nusd, table_cost)
    elif table_cost is not None:
        cost, source, mismatch = table_cost, "table", False
    else:
        cost, source, mismatch = None, "unpriced", False
    fields = event.model_dump(exclude={"kind", "schema_version"})  # written as this version
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
