"""An independent pricing oracle: ``genai_prices.calc_price`` itself (the library's slow
path through its unit registry), rounded once, half to even. It shares no code with
tokenledger.contract.pricing or tokenledger.contract.price_source."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

from tokenledger.contract.messages import UsageEvent


def _provider_id(provider: str) -> str | None:
    """The event's provider when the library knows it; else (a gateway's own name) none,
    and the library finds the provider by the model name."""
    return provider if find_provider_by_id(get_snapshot().providers, provider) else None


def expected_cost(e: UsageEvent) -> int:
    """Nano-USD of ``e`` as genai-prices computes it, rounded once, half to even."""
    usage = genai_prices.Usage(
        input_tokens=e.input_tokens,
        cache_read_tokens=e.cached_input_tokens,
        cache_write_tokens=e.cache_write_tokens,
        cache_write_1h_tokens=e.cache_write_1h_tokens or None,
        output_tokens=e.output_tokens,
        output_reasoning_tokens=e.reasoning_tokens or None,
    )
    context = {}
    if e.batch:
        context["processing"] = "batch"
    if e.service_tier:
        context["service_tier"] = e.service_tier
    calc = genai_prices.calc_price(
        usage,
        e.model,
        provider_id=_provider_id(e.provider),
        genai_request_timestamp=e.ts,
        price_context=context or None,
    )
    return int((calc.total_price * Decimal(10**9)).to_integral_value(ROUND_HALF_EVEN))
