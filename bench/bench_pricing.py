"""Cost of pricing one usage event exactly, next to a bare float computation of the same sum."""

from __future__ import annotations

from datetime import UTC, datetime

from bench import Figure, median, p99, sample_us
from schemas.pricing import TokenCounts, load_price_table


def run() -> list[Figure]:
    table = load_price_table()
    at = datetime(2026, 1, 15, tzinfo=UTC)
    tokens = TokenCounts(input=3500, output=420, cached_input=1024, reasoning=128)
    exact = sample_us(lambda: table.price("gpt-4o", at, tokens))
    rates = (2.5, 1.25, 10.0)

    def bare() -> float:
        return (2476 * rates[0] + 1024 * rates[1] + 420 * rates[2]) * 1000

    baseline = sample_us(bare)
    ratio = median(exact) / median(baseline)
    return [
        Figure("pricing.price_median_us", median(exact), "us", "PriceTable.price(), exact"),
        Figure("pricing.price_p99_us", p99(exact), "us"),
        Figure("pricing.float_baseline_median_us", median(baseline), "us", "same sum, floats"),
        Figure("pricing.exact_vs_float_ratio", ratio, "x", "the price of exactness"),
    ]
