"""Every price tokenledger applies: the operator's file on top of the kept source.

Resolution, for an event's (provider, model) at its time: an Azure deployment name is
mapped to its model; an entry of the operator's file in force wins (source ``file``); else
the ``genai-prices`` snapshot's model (source ``genai-prices``), at the price in force on the
event's date, with the call's request context (batch processing, service tier) selecting
the provider's price variants, and the operator's negotiated discount for that provider
applied. A name nobody prices stays unpriced (None): never $0. Names are resolved once
per (provider, model) and cached; rates once per (model, price period, context).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from genai_prices.data_snapshot import find_provider_by_id

from tokenledger.contract.model_names import candidates, source_provider
from tokenledger.contract.price_file import Overrides, PriceFileError, read_price_file
from tokenledger.contract.price_source import EPOCH, PriceSource, SourceModel
from tokenledger.contract.pricing import Priced, Quote, TokenCounts, exactly

_MAX_NAMES = 50_000  # resolved names kept; unknown names from bad input cannot grow it forever
_DEFAULT_TIERS = {"", "default", "standard", "auto", "on_demand"}


@dataclass(frozen=True)
class CallContext:
    """What of a call, besides its tokens, selects a price."""

    batch: bool = False
    service_tier: str = ""

    def source_context(self) -> tuple[tuple[str, str], ...]:
        ctx = []
        if self.batch:
            ctx.append(("processing", "batch"))
        tier = self.service_tier.strip().lower()
        if tier not in _DEFAULT_TIERS:
            ctx.append(("service_tier", tier))
        return tuple(ctx)


STANDARD = CallContext()
BATCH = (("processing", "batch"),)


class PriceBook:
    """Rates by (provider, model), effective date and request context; pure and exact."""

    def __init__(
        self, overrides: Overrides | None = None, source: PriceSource | None = None
    ) -> None:
        self.overrides = overrides or read_price_file()
        self.source = source or PriceSource()
        self.version = f"{self.source.version}+{self.overrides.version}"
        self._names: dict[tuple[str, str], tuple[str, SourceModel | None]] = {}
        self._quotes: dict[tuple[str, str, CallContext, int], Quote | None] = {}
        for model in (self.overrides.reference.default, *self.overrides.reference.routes.values()):
            if self.resolve("", model)[1] is None and not self.overrides.knows(model):
                raise PriceFileError(
                    f"reference model {model!r} has no price in the price file or genai-prices"
                )

    # -- names ---------------------------------------------------------------------------

    def resolve(self, provider: str, model: str) -> tuple[str, SourceModel | None]:
        """(the name the file is searched by, the source's model or None); cached."""
        key = (provider, model)
        hit = self._names.get(key)
        if hit is not None:
            return hit
        name = self.overrides.deployments.get(model.lower(), model)
        providers = self.source.snapshot.providers
        stated = source_provider(provider)
        known = stated is not None and find_provider_by_id(providers, stated) is not None
        found = None
        for hint, ref in candidates(provider, name):
            if hint is not None and find_provider_by_id(providers, hint) is None:
                hint = None  # a gateway's own name: let the model name find its provider
            if hint is None and known:
                continue  # a provider the source knows and that does not sell the model
            found = self.source.find(hint, ref)
            if found is not None:
                break
        if len(self._names) >= _MAX_NAMES:
            self._names.clear()
        self._names[key] = resolved = (name, found)
        return resolved

    # -- prices --------------------------------------------------------------------------

    def quote(
        self, provider: str, model: str, at: datetime, context: CallContext = STANDARD
    ) -> Quote | None:
        """The rates in force for the call (``at`` in UTC), or None when nobody prices the
        model. Every price source changes at UTC midnight (file entries, discounts and the
        source's start dates), so a quote is kept for its day; the source's rare
        time-of-day prices are resolved per call."""
        key = (provider, model, context, at.toordinal())
        try:
            return self._quotes[key]
        except KeyError:
            pass
        quote, daily = self._quote(provider, model, at, context)
        if daily:
            if len(self._quotes) >= _MAX_NAMES:
                self._quotes.clear()
            self._quotes[key] = quote
        return quote

    def _quote(
        self, provider: str, model: str, at: datetime, context: CallContext
    ) -> tuple[Quote | None, bool]:
        name, found = self.resolve(provider, model)
        entry = self.overrides.lookup(name, at)
        if entry is not None:
            version = f"file {self.overrides.version}:{entry.model}@{entry.valid_from}"
            rates = entry.rates(batch=context.batch)
            return Quote(rates, "file", entry.model, entry.provider, version[:128]), True
        if found is None:
            return None, True
        rates, since = found.rates(at, context.source_context())
        version = f"{self.source.version}:{found.provider.id}/{found.info.id}"
        if since > EPOCH:
            version += f"@{since.date()}"
        batch_off = self.overrides.batch_discounts.get(found.provider.id)
        if context.batch and batch_off and not found.has_variant(BATCH, at):
            rates = rates.scaled(_off(batch_off))
            version += f"-batch{batch_off}%"
        discount = self.overrides.discount(found.provider.id, at)
        if discount is not None:
            rates = rates.scaled(_off(discount.percent))
            version += f"-{discount.percent}%"
        quote = Quote(rates, "genai-prices", found.info.id, found.provider.id, version[:128])
        return quote, not found.by_time_of_day

    def price(
        self,
        provider: str,
        model: str,
        at: datetime,
        tokens: TokenCounts,
        context: CallContext = STANDARD,
    ) -> Priced | None:
        quote = self.quote(provider, model, at, context)
        if quote is None:
            return None
        return Priced(quote.cost_nusd(tokens), quote.version)

    def reference_model(self, route: str) -> str:
        return self.overrides.reference.routes.get(route, self.overrides.reference.default)

    def reference_quote(self, route: str, at: datetime) -> Quote | None:
        return self.quote("", self.reference_model(route), at)


def _off(percent: Decimal) -> Decimal:
    """The factor a discount of ``percent`` leaves, exactly."""
    with exactly():
        return 1 - percent / 100


def load_price_book(path: str | Path | None = None) -> PriceBook:
    """The operator's file at ``path`` (else ``$TOKENLEDGER_PRICES``, else the bundled
    overlay) on top of the installed ``genai-prices`` snapshot."""
    return PriceBook(read_price_file(path or os.environ.get("TOKENLEDGER_PRICES")))
