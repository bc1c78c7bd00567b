"""The providers' own cost and usage exports, read as their APIs document the JSON.

- OpenAI: a page of ``GET /v1/organization/costs`` (``amount.value`` in USD, per
  ``line_item`` and ``project_id`` when grouped so) or of ``GET
  /v1/organization/usage/completions`` (tokens per ``model`` and ``project_id``).
- Anthropic: a page of ``GET /v1/organizations/cost_report`` (``amount``: a decimal string in
  cents, per ``model``, ``workspace_id``, ``token_type`` ...) or of ``GET
  /v1/organizations/usage_report/messages`` (uncached, cache read, cache creation by TTL and
  output tokens per ``model`` and ``workspace_id``).

Money is read as written (JSON numbers as Decimal, never float) and rounded once to nano-USD.
Rows are summed per (report, day, model, project, line item): buckets finer than a day and
breakdowns by API key or user add up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tokenledger.contract.common import usd_to_nusd

PROVIDERS = ("openai", "anthropic")


class ReportError(ValueError):
    """The file is not a report this module reads; the message says what it expected."""


@dataclass(frozen=True)
class ProviderCost:
    """One line of a provider's report, summed to a day."""

    provider: str
    report: str  # "cost" or "usage"
    day: date
    model: str
    project: str
    line_item: str
    cost_nusd: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    requests: int | None = None

    @property
    def key(self) -> tuple[str, str, date, str, str, str]:
        return (self.provider, self.report, self.day, self.model, self.project, self.line_item)


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def merge(rows: Iterable[ProviderCost]) -> list[ProviderCost]:
    """Rows with the same key summed (finer buckets, API keys, users)."""
    out: dict[tuple[Any, ...], ProviderCost] = {}
    for row in rows:
        seen = out.get(row.key)
        if seen is None:
            out[row.key] = row
            continue
        out[row.key] = replace(
            seen,
            cost_nusd=_add(seen.cost_nusd, row.cost_nusd),
            input_tokens=_add(seen.input_tokens, row.input_tokens),
            output_tokens=_add(seen.output_tokens, row.output_tokens),
            cached_input_tokens=_add(seen.cached_input_tokens, row.cached_input_tokens),
            cache_write_tokens=_add(seen.cache_write_tokens, row.cache_write_tokens),
            requests=_add(seen.requests, row.requests),
        )
    return sorted(out.values(), key=lambda r: (r.day, r.model, r.project, r.line_item))


def _int(result: Mapping[str, Any], name: str) -> int:
    value = result.get(name) or 0
    if not isinstance(value, int | Decimal) or value < 0:
        raise ReportError(f"{name} is {value!r}, not a token count")
    return int(value)


def _openai(page: Mapping[str, Any]) -> Iterable[ProviderCost]:
    for bucket in page.get("data") or ():
        day = datetime.fromtimestamp(int(bucket["start_time"]), UTC).date()
        for r in bucket.get("results") or bucket.get("result") or ():
            kind = r.get("object", "")
            project = r.get("project_id") or ""
            if kind == "organization.costs.result":
                amount = r["amount"]
                if str(amount.get("currency", "usd")).lower() != "usd":
                    raise ReportError(f"cost in {amount.get('currency')}; tokenledger counts USD")
                line = r.get("line_item") or ""
                # line items read "<model>, <token class>" when the model is known
                model = line.split(",")[0].strip() if "," in line else ""
                yield ProviderCost(
                    "openai",
                    "cost",
                    day,
                    model,
                    project,
                    line,
                    cost_nusd=usd_to_nusd(Decimal(amount["value"])),
                )
            elif kind == "organization.usage.completions.result":
                batch = "batch" if r.get("batch") else ""
                yield ProviderCost(
                    "openai",
                    "usage",
                    day,
                    r.get("model") or "",
                    project,
                    batch,
                    input_tokens=_int(r, "input_tokens"),
                    output_tokens=_int(r, "output_tokens"),
                    cached_input_tokens=_int(r, "input_cached_tokens"),
                    requests=_int(r, "num_model_requests"),
                )
            else:
                raise ReportError(
                    f"result object {kind!r} is neither "
                    "organization.costs.result nor "
                    "organization.usage.completions.result"
                )


def _anthropic(page: Mapping[str, Any]) -> Iterable[ProviderCost]:
    for bucket in page.get("data") or ():
        starts = datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00"))
        day = starts.astimezone(UTC).date()
        for r in bucket.get("results") or ():
            project = r.get("workspace_id") or ""
            model = r.get("model") or ""
            if "amount" in r:
                if str(r.get("currency", "USD")).upper() != "USD":
                    raise ReportError(f"cost in {r.get('currency')}; tokenledger counts USD")
                line = " ".join(
                    str(r.get(k) or "")
                    for k in (
                        "cost_type",
                        "token_type",
                        "service_tier",
                        "context_window",
                        "description",
                    )
                ).strip()
                cents = Decimal(str(r["amount"]))  # a decimal string in cents
                yield ProviderCost(
                    "anthropic",
                    "cost",
                    day,
                    model,
                    project,
                    line,
                    cost_nusd=usd_to_nusd(cents / 100),
                )
            else:
                creation = r.get("cache_creation") or {}
                writes = _int(creation, "ephemeral_5m_input_tokens") + _int(
                    creation, "ephemeral_1h_input_tokens"
                )
                cached = _int(r, "cache_read_input_tokens")
                yield ProviderCost(
                    "anthropic",
                    "usage",
                    day,
                    model,
                    project,
                    r.get("service_tier") or "",
                    input_tokens=_int(r, "uncached_input_tokens") + cached + writes,
                    output_tokens=_int(r, "output_tokens"),
                    cached_input_tokens=cached,
                    cache_write_tokens=writes,
                )


def read_report(provider: str, path: Path) -> list[ProviderCost]:
    """Every row of the export file at ``path`` (one page, a list of pages, or JSON lines)."""
    if provider not in PROVIDERS:
        raise ReportError(f"provider {provider!r}: tokenledger reads {', '.join(PROVIDERS)}")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    try:
        pages: Any = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError:
        try:  # JSON lines: one page per line, as a paging loop writes them
            pages = [
                json.loads(line, parse_float=Decimal) for line in text.splitlines() if line.strip()
            ]
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} is not JSON: {exc}") from None
    pages = pages if isinstance(pages, list) else [pages]
    parse = _openai if provider == "openai" else _anthropic
    try:
        rows = [row for page in pages for row in parse(page)]
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
        raise ReportError(
            f"{path} is not a {provider} cost or usage report as its API documents it "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not rows:
        raise ReportError(f"{path} holds no {provider} cost or usage rows")
    return merge(rows)
