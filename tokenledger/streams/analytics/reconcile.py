"""Reconcile the ledger with the bill: store a provider's report, give both sides' model
names one key, and compare per day and model (clickhouse/queries/reconciliation.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tokenledger.contract.price_book import PriceBook
from tokenledger.streams.analytics.provider_reports import ProviderCost

COST_COLUMNS = (
    "provider",
    "report",
    "day",
    "model",
    "project",
    "line_item",
    "cost_nusd",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "requests",
    "source_file",
    "imported_at",
)


def store(client: Any, rows: Sequence[ProviderCost], source_file: str) -> int:
    """Insert the report's rows (a re-import of the same lines replaces them)."""
    now = datetime.now(UTC)
    values = [
        [
            r.provider,
            r.report,
            r.day,
            r.model,
            r.project,
            r.line_item,
            r.cost_nusd,
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_write_tokens,
            r.requests,
            source_file,
            now,
        ]
        for r in rows
    ]
    client.insert("provider_costs", values, column_names=list(COST_COLUMNS))
    return len(values)


def model_key(book: PriceBook, provider: str, model: str) -> str:
    """``provider/model`` as the price book resolves it; the written name when unknown."""
    if not model:
        return f"{provider.lower()}/(not a model)"
    _, found = book.resolve(provider, model)
    if found is None:
        return f"{provider.lower()}/{model.lower()}"
    return f"{found.provider.id}/{found.info.id}"


def refresh_model_keys(client: Any, book: PriceBook) -> int:
    """A key for every (provider, model) pair the ledger or a report uses."""
    pairs = client.query(
        "SELECT DISTINCT provider, model FROM usage_events "
        "UNION DISTINCT SELECT DISTINCT provider, model FROM provider_costs"
    ).result_rows
    now = datetime.now(UTC)
    values = [[p, m, model_key(book, p, m), now] for p, m in pairs]
    if values:
        client.insert(
            "model_keys", values, column_names=["provider", "model", "model_key", "updated_at"]
        )
    return len(values)
