"""The kept price source: the ``genai-prices`` snapshot as a fast, effective-dated index.

``genai_prices.calc_price`` walks a unit registry for every call (tens of microseconds); the
worker prices thousands of events a second. So each (model, price period, request context)
is resolved once: the library's own ``ModelInfo.get_prices`` picks the prices in force, every
tier is flattened, and the library's own ``ModelPrice.calc_price`` is probed with one token
of each class to read the rate it applies (its unit decomposition decides, e.g. whether
1-hour cache writes have their own rate). Cost is linear in each class's tokens within a
tier, so the probed rates reproduce ``calc_price`` exactly; a test checks every model.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as _version

from genai_prices import data_snapshot, types

from tokenledger.contract.days import midnight
from tokenledger.contract.pricing import Rates, TieredRates, exactly

GENAI_PRICES_VERSION = _version("genai-prices")
_NANO = Decimal(1_000_000_000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# One token of each class of tokenledger.contract.pricing.TokenCounts.parts, as the library's usage keys
# (parents reported with their parts, as its decomposition requires).
_PROBES: tuple[dict[str, int], ...] = (
    {"input_tokens": 1},
    {"input_tokens": 1, "cache_read_tokens": 1},
    {"input_tokens": 1, "cache_write_tokens": 1},
    {"input_tokens": 1, "cache_write_tokens": 1, "cache_write_1h_tokens": 1},
    {"output_tokens": 1},
    {"output_tokens": 1, "output_reasoning_tokens": 1},
)


def genai_usage(parts: Mapping[str, int]) -> types.Usage:
    """A library usage object for tokenledger's token classes (inputs as totals)."""
    return types.Usage(**{k: v for k, v in parts.items() if v})


def _total_usd(price: types.ModelPrice, usage: Mapping[str, int]) -> Decimal:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # units tokenledger does not report
        return price.calc_price(genai_usage(usage))["total_price"]


def _flatten(price: types.ModelPrice, input_tokens: int) -> types.ModelPrice:
    """The prices a call with ``input_tokens`` pays: every tier resolved as the library does."""
    flat: dict[str, Decimal | None] = {}
    for key, value in price.__dict__.items():
        if key.startswith("_"):
            continue
        if isinstance(value, types.TieredPrices):
            chosen = value.base
            for tier in reversed(value.tiers):
                if input_tokens > tier.start:
                    chosen = tier.price
                    break
            value = chosen
        flat[key] = value
    return types.ModelPrice(**flat)


def probe_rates(price: types.ModelPrice) -> TieredRates:
    """The library's prices as tokenledger rates, tier by tier."""
    thresholds = sorted(
        {
            t.start
            for v in price.__dict__.values()
            if isinstance(v, types.TieredPrices)
            for t in v.tiers
        }
    )
    tiers = []
    for threshold in (-1, *thresholds):
        flat = _flatten(price, threshold + 1)
        base = _total_usd(flat, {})  # per-request fees
        totals = [_total_usd(flat, p) for p in _PROBES]  # the library's own arithmetic
        with exactly():
            per_token = tuple((total - base) * _NANO for total in totals)
            fee = base * _NANO
        tiers.append((threshold, Rates(per_token, fee)))  # type: ignore[arg-type]
    return TieredRates(tuple(tiers))


def _constraints(info: types.ModelInfo) -> list[object]:
    found: list[object] = []
    if isinstance(info.prices, list):
        found += [c.constraint for c in info.prices if c.constraint is not None]
    found += [v.constraint for v in info.price_variants or () if v.constraint is not None]
    return found


@dataclass
class SourceModel:
    """One model of one provider in the snapshot, with its resolved rates cached."""

    provider: types.Provider
    info: types.ModelInfo
    starts: list[datetime] = field(init=False)
    by_time_of_day: bool = field(init=False)
    native: bool = field(init=False)
    _cache: dict[tuple[object, tuple[tuple[str, str], ...]], tuple[TieredRates, datetime]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        constraints = _constraints(self.info)
        self.by_time_of_day = any(isinstance(c, types.TimeOfDateConstraint) for c in constraints)
        days = {c.start_date for c in constraints if isinstance(c, types.StartDateConstraint)}
        self.starts = sorted(midnight(d) for d in days)
        # a model found through a provider's fallback is priced without request variants,
        # as the library does
        self.native = any(self.info is m for m in self.provider.models)

    def has_variant(self, when: tuple[tuple[str, str], ...], at: datetime) -> bool:
        """Whether the source has a price variant for this request context at ``at`` (e.g.
        a batch price: its batch history starts where its data says)."""
        wanted = dict(when)
        return self.native and any(
            all(wanted.get(k) == v for k, v in variant.when.items())
            and (variant.constraint is None or variant.constraint.active(at))
            for variant in self.info.price_variants or ()
        )

    def rates(
        self, at: datetime, context: tuple[tuple[str, str], ...]
    ) -> tuple[TieredRates, datetime]:
        """The rates in force at ``at`` for the request context, and since when."""
        if not self.native:
            context = ()
        if self.by_time_of_day:
            period: object = ("t", at)  # rare (off-peak prices): resolved per call
            since = at
        else:
            i = bisect.bisect_right(self.starts, at)
            period = i
            since = self.starts[i - 1] if i else EPOCH
        key = (period, context)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        price = self.info.get_prices(since, dict(context) if context else None)
        resolved = (probe_rates(price), since)
        if not self.by_time_of_day:
            self._cache[key] = resolved
        return resolved


class PriceSource:
    """The ``genai-prices`` snapshot: find a model by (provider, name) and price it."""

    def __init__(self, snapshot: data_snapshot.DataSnapshot | None = None) -> None:
        self.snapshot = snapshot or data_snapshot.get_snapshot()
        self.version = f"genai-prices {GENAI_PRICES_VERSION}"
        self._models: dict[tuple[str, str], SourceModel] = {}

    def find(self, provider: str | None, name: str) -> SourceModel | None:
        """The snapshot's model for ``name`` (a name the library matches, e.g. a dated
        snapshot), searched at ``provider`` when given (with its fallbacks), else by the
        providers whose model patterns match."""
        try:
            found, info = self.snapshot.find_provider_model(name, None, provider, None)
        except LookupError:
            return None
        key = (found.id, info.id)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = SourceModel(found, info)
        return model

    def every_model(self) -> list[SourceModel]:
        out = []
        for provider in self.snapshot.providers:
            for info in provider.models:
                key = (provider.id, info.id)
                model = self._models.get(key) or SourceModel(provider, info)
                self._models[key] = model
                out.append(model)
        return out
