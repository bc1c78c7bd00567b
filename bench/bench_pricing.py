"""Cost of pricing one usage event exactly: tokenledger's price book (names resolved and
rates cached) next to ``genai_prices.calc_price`` for the same call and a bare float sum."""

from __future__ import annotations

from datetime import UTC, datetime

import genai_prices

from bench import Figure, median, p99, sample_us
from tokenledger.contract.price_book import load_price_book
from tokenledger.contract.pricing import TokenCounts


def run() -> list[Figure]:
    book = load_price_book()
    at = datetime(2026, 1, 15, tzinfo=UTC)
    tokens = TokenCounts(input=3500, output=420, cached_input=1024, reasoning=128)
    book.price("openai", "gpt-4o", at, tokens)  # resolve the name once, as the worker does
    exact = sample_us(lambda: book.price("openai", "gpt-4o", at, tokens))
    usage = genai_prices.Usage(
        input_tokens=3500, cache_read_tokens=1024, output_tokens=420, output_reasoning_tokens=128
    )
    library = sample_us(
        lambda: genai_prices.calc_price(
            usage, "gpt-4o", provider_id="openai", genai_request_timestamp=at
        )
    )
    rates = (2.5, 1.25, 10.0)

    def bare() -> float:
        return (2476 * rates[0] + 1024 * rates[1] + 420 * rates[2]) * 1000

    baseline = sample_us(bare)
    return [
        Figure(
            "pricing.lookup_ns",
            median(exact) * 1000,
            "ns",
            "PriceBook.price(): resolve (cached) + exact cost of one event",
        ),
        Figure("pricing.price_p99_us", p99(exact), "us"),
        Figure(
            "pricing.calc_price_median_us",
            median(library),
            "us",
            "genai_prices.calc_price, the same call",
        ),
        Figure(
            "pricing.book_vs_calc_price_ratio",
            median(library) / median(exact),
            "x",
            "how much faster the cached book is",
        ),
        Figure("pricing.float_baseline_median_us", median(baseline), "us", "same sum, floats"),
        Figure(
            "pricing.exact_vs_float_ratio",
            median(exact) / median(baseline),
            "x",
            "the price of exactness",
        ),
    ]
