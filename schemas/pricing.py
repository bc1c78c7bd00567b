"""Effective-dated price tables and the exact pricing function.

Prices are USD per 1M tokens, written as decimal strings in the table file. A cost is the
exact Decimal sum of every token class at its rate, times (1 - batch discount) for batch
calls, rounded once, half-to-even, to integer nano-USD. 1 USD per 1M tokens is exactly
1000 nano-USD per token, so most list prices give exact integers before rounding.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.common import NAME_PATTERN

DEFAULT_TABLE = Path(__file__).parent / "prices" / "default.json"
PRICES_ENV = "TOKENLEDGER_PRICES"
_NANO_PER_USD_PER_MTOK = Decimal(1000)  # 1e9 nano-USD / 1e6 tokens


class PriceTableError(ValueError):
    """The price table file cannot be used; the message says what to fix."""


def _decimal_string(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('write prices as strings ("2.50"), not JSON numbers with a fraction')
    return value


Rate = Annotated[Decimal, BeforeValidator(_decimal_string), Field(ge=0, le=1_000_000)]


class ModelPrice(BaseModel):
    """One model's rates from ``valid_from`` until the next entry for the same model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(pattern=NAME_PATTERN)]
    provider: Annotated[str, Field(pattern=NAME_PATTERN)]
    valid_from: date
    input: Rate
    output: Rate
    cached_read: Rate | None = Field(default=None, description="defaults to input")
    cache_write: Rate | None = Field(default=None, description="defaults to input")
    reasoning: Rate | None = Field(default=None, description="defaults to output")
    batch_discount: Annotated[Decimal, BeforeValidator(_decimal_string), Field(ge=0, lt=1)] = (
        Decimal(0)
    )
    aliases: tuple[str, ...] = ()

    @property
    def starts(self) -> datetime:
        return datetime(
            self.valid_from.year, self.valid_from.month, self.valid_from.day, tzinfo=UTC
        )


class ReferenceModels(BaseModel):
    """The model each route would use with no optimisation: the counterfactual baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    routes: dict[str, str] = {}


class PriceTableFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, Field(min_length=1, max_length=64)]
    currency: str = "USD"
    unit: str = "per_1m_tokens"
    reference_models: ReferenceModels
    models: list[ModelPrice]


@dataclass(frozen=True)
class TokenCounts:
    """Token classes of one call, in the convention of schemas.messages (parts included)."""

    input: int
    output: int
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def uncached(self) -> TokenCounts:
        """The same tokens with no prompt-cache reads or writes: every input at list price."""
        return TokenCounts(input=self.input, output=self.output, reasoning=self.reasoning)


@dataclass(frozen=True)
class Priced:
    cost_nusd: int
    pricing_version: str


def cost_nusd(rate: ModelPrice, tokens: TokenCounts, *, batch: bool = False) -> int:
    """Exact cost of ``tokens`` at ``rate`` in nano-USD (rounded once, half-to-even)."""
    cached_read = rate.input if rate.cached_read is None else rate.cached_read
    cache_write = rate.input if rate.cache_write is None else rate.cache_write
    reasoning = rate.output if rate.reasoning is None else rate.reasoning
    uncached = tokens.input - tokens.cached_input - tokens.cache_write
    visible_output = tokens.output - tokens.reasoning
    if uncached < 0 or visible_output < 0:
        raise ValueError("token parts exceed their totals (see schemas.messages)")
    usd_per_mtok = (
        uncached * rate.input
        + tokens.cached_input * cached_read
        + tokens.cache_write * cache_write
        + visible_output * rate.output
        + tokens.reasoning * reasoning
    )
    if batch:
        usd_per_mtok *= 1 - rate.batch_discount
    return int((usd_per_mtok * _NANO_PER_USD_PER_MTOK).to_integral_value(ROUND_HALF_EVEN))


class PriceTable:
    """Rates by model and effective date; lookups are pure and exact."""

    def __init__(self, spec: PriceTableFile) -> None:
        self.version = spec.version
        self.reference = spec.reference_models
        by_model: dict[str, list[ModelPrice]] = {}
        for entry in spec.models:
            for name in (entry.model, *entry.aliases):
                by_model.setdefault(name, []).append(entry)
        self._entries: dict[str, list[ModelPrice]] = {}
        self._starts: dict[str, list[datetime]] = {}
        for name, entries in by_model.items():
            entries.sort(key=lambda e: e.valid_from)
            starts = [e.starts for e in entries]
            if len(set(starts)) != len(starts):
                raise PriceTableError(f"model {name!r} has two entries with the same valid_from")
            self._entries[name] = entries
            self._starts[name] = starts
        for model in (spec.reference_models.default, *spec.reference_models.routes.values()):
            if model not in self._entries:
                raise PriceTableError(f"reference model {model!r} has no price in the table")

    def models(self) -> list[str]:
        return sorted(self._entries)

    def lookup(self, model: str, at: datetime) -> ModelPrice | None:
        """The entry in force for ``model`` at ``at``; None when unknown or not yet priced."""
        starts = self._starts.get(model)
        if starts is None:
            return None
        i = bisect.bisect_right(starts, at) - 1
        return self._entries[model][i] if i >= 0 else None

    def price(
        self, model: str, at: datetime, tokens: TokenCounts, *, batch: bool = False
    ) -> Priced | None:
        rate = self.lookup(model, at)
        if rate is None:
            return None
        return Priced(cost_nusd(rate, tokens, batch=batch), self.version_of(rate))

    def reference_model(self, route: str) -> str:
        return self.reference.routes.get(route, self.reference.default)

    def counterfactual(self, route: str, at: datetime, tokens: TokenCounts) -> int | None:
        """Cost of the same tokens on the route's reference model, uncached, not batched."""
        rate = self.lookup(self.reference_model(route), at)
        return None if rate is None else cost_nusd(rate, tokens.uncached(), batch=False)

    def version_of(self, rate: ModelPrice) -> str:
        return f"{self.version}:{rate.model}@{rate.valid_from.isoformat()}"


def load_price_table(path: str | Path | None = None) -> PriceTable:
    """Load ``path``, else ``$TOKENLEDGER_PRICES``, else the bundled default table."""
    chosen = Path(path or os.environ.get(PRICES_ENV) or DEFAULT_TABLE)
    try:
        raw = chosen.read_bytes()
    except OSError as exc:
        raise PriceTableError(f"cannot read price table {chosen}: {exc.strerror}") from None
    try:
        spec = PriceTableFile.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise PriceTableError(f"price table {chosen} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PriceTableError(f"price table {chosen}: {where}: {first['msg']}") from None
    return PriceTable(spec)
