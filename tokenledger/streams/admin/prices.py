"""What the price book says, for people: list, show (which source priced a model and why),
check an operator's file, and diff the installed ``genai-prices`` snapshot with another."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from genai_prices import data_snapshot

from tokenledger.contract.price_book import CallContext, PriceBook
from tokenledger.contract.price_source import PriceSource
from tokenledger.contract.pricing import NANO_PER_USD_PER_MTOK, TOKEN_CLASSES, Quote, Rates


def per_mtok(rate: Decimal) -> str:
    """nano-USD per token -> "$2.5" per 1M tokens, every significant digit kept."""
    usd = (rate / NANO_PER_USD_PER_MTOK).normalize()
    return f"${usd:f}"


def describe_rates(rates: Rates) -> str:
    parts = [f"{cls} {per_mtok(r)}" for cls, r in zip(TOKEN_CLASSES, rates.per_token, strict=True)]
    if rates.per_request:
        parts.append(f"per request ${(rates.per_request / 10**9).normalize():f}")
    return ", ".join(parts)


def show(
    book: PriceBook, provider: str, model: str, at: datetime, context: CallContext
) -> list[str]:
    """Lines saying which source prices (provider, model) at ``at``, and at what rates."""
    name, found = book.resolve(provider, model)
    quote = book.quote(provider, model, at, context)
    lines = [f"{provider or '(any provider)'} {model} at {at.isoformat()}"]
    if name != model:
        lines.append(f"  deployment {model} -> model {name} (price file `deployments`)")
    if found is not None:
        lines.append(f"  genai-prices matches it as {found.provider.id}/{found.info.id}")
    if quote is None:
        lines.append(
            "  unpriced: no entry in the price file and genai-prices does not know "
            "it; add it to the file named by TOKENLEDGER_PRICES"
        )
        return lines
    lines.append(f"  priced by {_source(book, quote)} as {quote.provider}/{quote.model}")
    lines.append(f"  pricing_version {quote.version}")
    for threshold, rates in quote.rates.tiers:
        head = "  per 1M tokens" if threshold < 0 else f"  prompts over {threshold:,} tokens"
        lines.append(f"{head}: {describe_rates(rates)}")
    return lines


def _source(book: PriceBook, quote: Quote) -> str:
    if quote.source == "file":
        return f"the price file {book.overrides.path}"
    return book.source.version


def list_rows(book: PriceBook, at: datetime, provider: str | None = None) -> list[str]:
    """One line per model: source, provider/model, input/cached/output per 1M tokens."""
    rows = []
    for entry in book.overrides.spec.models:
        if entry.starts <= at and (provider is None or entry.provider == provider):
            rates = entry.rates(batch=False).tiers[0][1]
            rows.append(_row("file", f"{entry.provider}/{entry.model}", rates, tiered=False))
    for model in book.source.every_model():
        if provider is not None and model.provider.id != provider:
            continue
        tiered, _ = model.rates(at, ())
        rows.append(
            _row(
                "genai-prices",
                f"{model.provider.id}/{model.info.id}",
                tiered.tiers[0][1],
                tiered=len(tiered.tiers) > 1,
            )
        )
    return rows


def _row(source: str, name: str, rates: Rates, *, tiered: bool) -> str:
    r = rates.per_token
    tail = "  (+ tiers by prompt size)" if tiered else ""
    return (
        f"{source:12} {name:60} in {per_mtok(r[0]):>10} cached {per_mtok(r[1]):>10} "
        f"out {per_mtok(r[4]):>10}{tail}"
    )


def check(book: PriceBook) -> str:
    """One line: the file is usable, every entry and reference model is priced."""
    spec = book.overrides.spec
    source_models = sum(len(p.models) for p in book.source.snapshot.providers)
    return (
        f"price file {book.overrides.path} ({spec.version}): {len(spec.models)} model "
        f"entries, {len(spec.discounts)} discounts, {len(spec.deployments)} deployments, "
        f"valid; on {book.source.version} ({len(book.source.snapshot.providers)} providers, "
        f"{source_models} models)"
    )


@dataclass(frozen=True)
class Change:
    kind: str  # added, removed, changed
    model: str  # provider/model
    detail: str


def load_snapshot(path: Path) -> data_snapshot.DataSnapshot:
    """A ``genai-prices`` data file (the JSON its releases publish, the format its own
    ``UpdatePrices`` reads) as a snapshot."""
    from genai_prices.types import _providers_from_raw  # the library's own reader of it

    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            providers = _providers_from_raw(raw)
    except Exception as exc:  # noqa: BLE001 - any shape error is the file's
        raise ValueError(
            f"{path} is not a genai-prices data file: {str(exc).splitlines()[0]}"
        ) from None
    return data_snapshot.DataSnapshot(providers=providers, from_auto_update=False)


def diff(old: PriceSource, new: PriceSource, at: datetime | None = None) -> list[Change]:
    """What moving from ``old`` to ``new`` changes in the prices in force at ``at``."""
    at = at or datetime.now(UTC)

    def index(source: PriceSource) -> dict[str, str]:
        out = {}
        for m in source.every_model():
            tiered, _ = m.rates(at, ())
            out[f"{m.provider.id}/{m.info.id}"] = "; ".join(
                (f"over {t:,}: " if t >= 0 else "") + describe_rates(r) for t, r in tiered.tiers
            )
        return out

    before, after = index(old), index(new)
    changes = [Change("added", k, after[k]) for k in sorted(after.keys() - before.keys())]
    changes += [Change("removed", k, before[k]) for k in sorted(before.keys() - after.keys())]
    changes += [
        Change("changed", k, f"{before[k]}  ->  {after[k]}")
        for k in sorted(before.keys() & after.keys())
        if before[k] != after[k]
    ]
    return changes


def installed_source() -> PriceSource:
    return PriceSource(data_snapshot.get_snapshot())
