"""The operator's price file (``$TOKENLEDGER_PRICES``): prices on top of the kept source.

It adds or overrides models (fine-tunes, self-hosted routes at a per-token rate the operator
derives from GPU cost and throughput), gives negotiated discounts per provider, maps Azure
deployment names to models and names each route's reference model. Every entry is
effective-dated: a model's entry holds from ``valid_from`` until its next entry.

One unit throughout: prices are USD per 1M tokens written as decimal strings (``currency``
and ``unit`` say so, and a file that says otherwise is refused rather than misread 1000
times over or in another currency), and every discount is a percentage off
(``discounts[].percent``, ``batch_discounts``, a model's ``batch_discount_percent``).
"""

from __future__ import annotations

import bisect
import json
import os
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tokenledger.contract.days import midnight
from tokenledger.contract.files import shipped
from tokenledger.contract.names import MODEL_NAME_PATTERN
from tokenledger.contract.pricing import Rates, TieredRates, exactly

PRICES_ENV = "TOKENLEDGER_PRICES"
BUNDLED_FILE = shipped("contract/prices", "schemas/prices") / "default.json"
"""The overlay shipped with tokenledger: no prices of its own, only reference models."""


class PriceFileError(ValueError):
    """The price file cannot be used; the message says what to fix."""


def _decimal_string(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('write prices as strings ("2.50"), not JSON numbers with a fraction')
    return value


Rate = Annotated[Decimal, BeforeValidator(_decimal_string), Field(ge=0, le=1_000_000)]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
Percent = Annotated[Decimal, BeforeValidator(_decimal_string), Field(gt=0, lt=100)]
"""Every discount of the file: percent off the price, e.g. "15" (15%), "50" (half price)."""


class ModelPrice(BaseModel):
    """One model's rates from ``valid_from`` until the next entry for the same model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    provider: ModelName
    valid_from: date
    input: Rate
    output: Rate
    cached_read: Rate | None = Field(default=None, description="defaults to input")
    cache_write: Rate | None = Field(default=None, description="5-minute writes; defaults to input")
    cache_write_1h: Rate | None = Field(default=None, description="defaults to cache_write")
    reasoning: Rate | None = Field(default=None, description="defaults to output")
    batch_discount_percent: Percent | None = Field(
        default=None, description="percent off every rate for batch calls"
    )
    aliases: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _no_fraction(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batch_discount" in data:
            raise ValueError(
                "batch_discount (a fraction) is now batch_discount_percent, a percentage like "
                'every discount: write "50" for half price'
            )
        return data

    @property
    def starts(self) -> datetime:
        return midnight(self.valid_from)

    def rates(self, *, batch: bool) -> TieredRates:
        rates = Rates.per_mtok(
            self.input,
            self.output,
            self.cached_read,
            self.cache_write,
            self.cache_write_1h,
            self.reasoning,
        )
        if batch and self.batch_discount_percent:
            with exactly():
                factor = 1 - self.batch_discount_percent / 100
            rates = rates.scaled(factor)
        return TieredRates.flat(rates)


class Discount(BaseModel):
    """A negotiated discount on a provider's list prices (the kept source's), from a date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ModelName
    percent: Percent
    valid_from: date


class ReferenceModels(BaseModel):
    """The model each route would use with no optimisation: the counterfactual baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = "gpt-4o"
    routes: dict[str, str] = {}


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, Field(min_length=1, max_length=64)] = "local"
    currency: str = Field(default="USD", description="USD: the only currency tokenledger counts")
    unit: str = Field(default="per_1m_tokens", description="per_1m_tokens: the only unit")
    reference_models: ReferenceModels = ReferenceModels()
    models: list[ModelPrice] = []
    discounts: list[Discount] = []
    deployments: dict[str, ModelName] = Field(
        default={}, description="Azure deployment name -> the model it serves"
    )
    batch_discounts: dict[str, Percent] = Field(
        default={},
        description="provider -> percent off list prices for batch calls the "
        "source has no batch price for (e.g. before its batch history starts)",
    )

    @field_validator("currency")
    @classmethod
    def _usd(cls, value: str) -> str:
        if value.upper() != "USD":
            raise ValueError(
                f"{value!r} is not supported: tokenledger counts US dollars; convert the "
                'prices to USD and write "USD"'
            )
        return "USD"

    @field_validator("unit")
    @classmethod
    def _per_million(cls, value: str) -> str:
        if value.lower() != "per_1m_tokens":
            raise ValueError(
                f"{value!r} is not supported: write every price in USD per 1M tokens "
                '("per_1m_tokens"; a price per 1K tokens times 1000)'
            )
        return "per_1m_tokens"


class Overrides:
    """The operator's file, indexed: entries by lower-case name and effective date."""

    def __init__(self, spec: PriceFile, path: Path | None = None) -> None:
        self.spec = spec
        self.path = path
        self.version = spec.version
        self.reference = spec.reference_models
        self.deployments = {k.lower(): v for k, v in spec.deployments.items()}
        self.batch_discounts = {k.lower(): v for k, v in spec.batch_discounts.items()}
        by_name: dict[str, list[ModelPrice]] = {}
        for entry in spec.models:
            for name in {entry.model.lower(), *(a.lower() for a in entry.aliases)}:
                by_name.setdefault(name, []).append(entry)
        self._entries: dict[str, list[ModelPrice]] = {}
        self._starts: dict[str, list[datetime]] = {}
        for name, entries in by_name.items():
            for entry in entries:  # refused now, not when the first event needs the price
                try:
                    entry.rates(batch=True)
                except ValueError as exc:
                    raise PriceFileError(f"model {name!r}: {exc}") from None
            entries.sort(key=lambda e: e.valid_from)
            starts = [e.starts for e in entries]
            if len(set(starts)) != len(starts):
                raise PriceFileError(f"model {name!r} has two entries with the same valid_from")
            self._entries[name] = entries
            self._starts[name] = starts
        self._discounts: dict[str, list[Discount]] = {}
        for d in sorted(spec.discounts, key=lambda d: d.valid_from):
            self._discounts.setdefault(d.provider.lower(), []).append(d)

    def knows(self, model: str) -> bool:
        """Whether the file has an entry for ``model`` (at any date)."""
        return model.lower() in self._entries

    def lookup(self, model: str, at: datetime) -> ModelPrice | None:
        """The entry in force for ``model`` at ``at``; None when absent or not yet valid."""
        starts = self._starts.get(model.lower())
        if starts is None:
            return None
        i = bisect.bisect_right(starts, at) - 1
        return self._entries[model.lower()][i] if i >= 0 else None

    def discount(self, provider: str, at: datetime) -> Discount | None:
        chosen = None
        for d in self._discounts.get(provider.lower(), ()):
            if midnight(d.valid_from) <= at:
                chosen = d
        return chosen


def read_price_file(path: str | Path | None = None) -> Overrides:
    """Load ``path``, else ``$TOKENLEDGER_PRICES``, else the bundled overlay."""
    chosen = Path(path or os.environ.get(PRICES_ENV) or BUNDLED_FILE)
    try:
        raw = chosen.read_bytes()
    except OSError as exc:
        raise PriceFileError(f"cannot read price file {chosen}: {exc.strerror}") from None
    try:
        spec = PriceFile.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"price file {chosen} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        why = first["msg"].removeprefix("Value error, ")
        raise PriceFileError(f"price file {chosen}: {where}: {why}") from None
    return Overrides(spec, chosen)
