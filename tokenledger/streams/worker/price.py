"""Step 3 of the worker: a usage event -> its enriched record with exact costs.

The cost counted is the price book's (the operator's file over genai-prices, in force at
the event's time, for its batch processing and service tier), 0 for a cache hit (its table
cost is what it saved), 0 for a retry answered from a claim (``replay_of``: its table cost,
the first attempt's tokens, is what the claim prevented), or unpriced for an unknown model:
never $0. A caller's own ``cost_nusd`` is kept beside it (``reported_cost_nusd``) and a disagreement flagged
(``cost_mismatch``), but it is counted only where the book has no price, or for a service
the operator trusts to report what the provider billed (``TOKENLEDGER_TRUSTED_COST_SERVICES``,
e.g. a gateway): a caller cannot spend without it counting by claiming a cost of 0. The
list, unbatched, counterfactual and context-saved costs feed the savings waterfall.

The record is built from the already validated event's fields and written with orjson: no
second validation round-trip on the hot path (``Enriched.as_message`` gives the contract's model
where one is wanted; a unit test holds the two equal).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from tokenledger.contract.common import SCHEMA_VERSION
from tokenledger.contract.messages import EnrichedUsage, UsageEvent
from tokenledger.contract.price_book import STANDARD, CallContext, PriceBook
from tokenledger.contract.pricing import TokenCounts


def cost_mismatch(event_cost: int, table_cost: int) -> bool:
    """A caller's cost disagrees with the table beyond rounding: more than 0.1% and more
    than 1000 nano-USD ($0.000001) apart."""
    diff = abs(event_cost - table_cost)
    return diff > 1000 and diff * 1000 > table_cost


class Enriched:
    """An enriched usage record as the plain fields of ``EnrichedUsage`` (attributes), as
    the budget and anomaly processors read it and the worker writes it."""

    tenant_id: str
    feature: str
    model: str
    route: str
    provider: str
    success: bool
    request_id: str
    attempt: int
    ts: datetime
    cache: str
    input_tokens: int
    token_budget_violations: tuple[str, ...]
    cost_nusd: int | None
    cost_mismatch: bool
    list_cost_nusd: int | None
    counterfactual_cost_nusd: int | None
    duplicate_generation: bool
    late: bool

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__ = fields

    def to_json(self) -> bytes:
        """The message bytes: the same JSON as ``self.as_message().model_dump_json()``."""
        return orjson.dumps(self.__dict__, option=orjson.OPT_UTC_Z)

    def as_message(self) -> EnrichedUsage:
        """The contract's model of this record (validated)."""
        return EnrichedUsage.model_validate(self.__dict__)


def enrich(
    event: UsageEvent,
    book: PriceBook,
    trusted: frozenset[str] = frozenset(),
    *,
    duplicate_generation: bool,
    late: bool,
    now: datetime,
) -> Enriched:
    """Price one usage event. A cache hit costs 0 and its table cost is what it saved;
    ``trusted`` names the services whose own cost is counted."""
    fields = dict(event.__dict__)  # validated once, when the event was read
    fields["kind"] = "usage.enriched"
    fields["schema_version"] = SCHEMA_VERSION  # written as this version
    fields.update(costs(event, book, trusted))
    fields["duplicate_generation"] = duplicate_generation
    fields["late"] = late
    fields["processed_at"] = now
    return Enriched(fields)


def costs(
    event: UsageEvent, book: PriceBook, trusted: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The pricing fields of ``EnrichedUsage`` for ``event``."""
    tokens = TokenCounts(
        input=event.input_tokens,
        output=event.output_tokens,
        cached_input=event.cached_input_tokens,
        cache_write=event.cache_write_tokens,
        reasoning=event.reasoning_tokens,
        cache_write_1h=event.cache_write_1h_tokens,
    )
    parts = tokens.parts()
    plain = tokens.uncached().parts()  # every input token at list price
    standard = not event.batch and not event.service_tier
    context = STANDARD if standard else CallContext(event.batch, event.service_tier)
    quote = book.quote(event.provider, event.model, event.ts, context)
    table_cost = list_cost = unbatched = None
    if quote is not None:
        table_cost = quote.rates.for_input(tokens.input).cost_of_parts(parts)
        unbatched_quote = quote
        if event.batch:
            unbatched_quote = (
                book.quote(
                    event.provider,
                    event.model,
                    event.ts,
                    CallContext(service_tier=event.service_tier),
                )
                or quote
            )
        unbatched_rates = unbatched_quote.rates.for_input(tokens.input)
        unbatched = table_cost if unbatched_quote is quote else unbatched_rates.cost_of_parts(parts)
        list_cost = unbatched_rates.cost_of_parts(plain)
    reference_model = book.reference_model(event.route)
    reference = book.reference_quote(event.route, event.ts)
    counterfactual = context_saved = None
    if reference is not None:
        counterfactual = reference.rates.for_input(tokens.input).cost_of_parts(plain)
        context_saved = 0
        if event.context_trimmed_tokens:
            trimmed = TokenCounts(input=event.context_trimmed_tokens, output=0)
            context_saved = reference.cost_nusd(trimmed) - reference.cost_nusd(TokenCounts(0, 0))
    version = quote.version if quote is not None else f"{book.version}:unknown"
    reported = event.cost_nusd
    mismatch = False
    if event.replay_of is not None:
        cost, source = 0, "replay"  # a retry answered from a claim: table_cost prevented
    elif event.cache != "none":
        cost, source = 0, "cache"
    elif reported is not None and (table_cost is None or event.service in trusted):
        cost, source = reported, "event"  # nothing else prices it, or trusted to bill
    elif table_cost is not None:
        cost, source = table_cost, "table"
    else:
        cost, source = None, "unpriced"
    if reported is not None and table_cost is not None and source not in ("cache", "replay"):
        mismatch = cost_mismatch(reported, table_cost)  # a model was called: it was billed
    return {
        "cost_nusd": cost,
        "reported_cost_nusd": reported,
        "priced": cost is not None,
        "table_cost_nusd": table_cost,
        "cost_source": source,
        "cost_mismatch": mismatch,
        "pricing_version": version,
        "reference_model": reference_model,
        "counterfactual_cost_nusd": counterfactual,
        "list_cost_nusd": list_cost,
        "unbatched_cost_nusd": unbatched,
        "context_saved_nusd": context_saved,
    }
