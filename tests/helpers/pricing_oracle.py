"""An independent pricing oracle: the bundled rate file's numbers with Decimal arithmetic,
sharing no code with schemas.pricing."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal

from schemas.messages import UsageEvent
from schemas.pricing import DEFAULT_TABLE

RATES = {m["model"]: m for m in json.loads(DEFAULT_TABLE.read_text())["models"]}


def expected_cost(e: UsageEvent) -> int:
    """Nano-USD of ``e`` at the bundled table's rates, rounded once, half to even."""
    r = RATES[e.model]
    rate = {k: Decimal(r[k]) for k in ("input", "output")}
    cached = Decimal(r.get("cached_read", r["input"]))
    write = Decimal(r.get("cache_write", r["input"]))
    usd = (
        (e.input_tokens - e.cached_input_tokens - e.cache_write_tokens) * rate["input"]
        + e.cached_input_tokens * cached + e.cache_write_tokens * write
        + e.output_tokens * rate["output"]
    )  # fmt: skip
    if e.batch:
        usd *= 1 - Decimal(r["batch_discount"])
    return int((usd * 1000).to_integral_value(ROUND_HALF_EVEN))
