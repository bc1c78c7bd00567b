"""The cost report: every number comes from the query library (clickhouse/queries) run on
ClickHouse, rendered as a terminal summary and a self-contained HTML page with SVG charts.

`tokenledger report` writes it from whatever ClickHouse holds (the embedded engine or a
server); `tokenledger demo` writes it at the end of its run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tokenledger.contract.common import format_evidence, format_usd, usd_to_nusd
from tokenledger.contract.names import parse_scope
from tokenledger.streams.analytics import queries

DIMENSIONS = ("tenant_id", "feature", "route", "model")


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


@dataclass
class Burndown:
    scope: str
    tenant_id: str
    limit_nusd: int
    window_start: datetime
    window_end: datetime
    points: list[tuple[datetime, int]]  # (bucket start, cumulative spend at its end)
    blocked_at_nusd: int | None
    blocked_issued_at: datetime | None


@dataclass
class ReportData:
    start: datetime
    end: datetime
    tables: dict[str, Table] = field(default_factory=dict)
    over_time: dict[str, Table] = field(default_factory=dict)
    burndowns: list[Burndown] = field(default_factory=list)

    @property
    def total_nusd(self) -> int:
        return sum(int(r["cost_nusd"]) for r in self.tables["cost_by_tenant"].dicts())


def _run(client: Any, name: str, **params: Any) -> Table:
    query = queries.get(name)
    bound = query.bind({k: str(v) for k, v in params.items()})
    columns, rows = queries.run(client, query, bound)
    return Table(columns, rows)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def collect(client: Any, start: datetime, end: datetime, *, bucket_s: int = 3600) -> ReportData:
    """Run the library queries the report shows, for [start, end)."""
    span = {"start": _iso(start), "end": _iso(end)}
    data = ReportData(start, end)
    data.tables["cost_by_tenant"] = _run(client, "cost_by", dimension="tenant_id", **span)
    data.tables["cost_by_feature"] = _run(client, "cost_by_feature", **span)
    data.tables["cost_per_successful_task"] = _run(client, "cost_per_successful_task", **span)
    data.tables["retry_cost"] = _run(client, "retry_cost", **span)
    data.tables["cache_savings"] = _run(client, "cache_savings", **span)
    data.tables["savings_waterfall"] = _run(client, "savings_waterfall", **span)
    data.tables["signals"] = _run(client, "signal_history", **span)
    data.tables["alerts"] = _run(client, "alerts", **span)
    data.tables["reconciliation"] = _run(client, "reconciliation", provider="", **span)
    for dimension in DIMENSIONS:
        data.over_time[dimension] = _run(
            client, "cost_over_time", dimension=dimension, bucket_s=bucket_s, **span
        )
    data.burndowns = _burndowns(client, data.tables["signals"])
    return data


def _burndowns(client: Any, signals: Table) -> list[Burndown]:
    """Tenant budgets that signalled: cumulative spend over the latest window, the limit, and
    the spend at which the block was published."""
    rows = signals.dicts()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        parts = parse_scope(row["scope"])
        if parts is not None and parts[1] is None and row["limit_nusd"] > 0:
            latest[row["scope"]] = row  # rows are in issue order: the last one wins
    out = []
    for scope, last in sorted(latest.items()):
        w_start, w_end = last["window_start"], last["window_end"]
        blocks = [
            r
            for r in rows
            if r["scope"] == scope and r["state"] == "block" and r["window_start"] == w_start
        ]
        spend = _run(
            client,
            "cost_over_time",
            dimension="tenant_id",
            tenant=last["tenant_id"],
            bucket_s=900,
            start=_iso(w_start),
            end=_iso(w_end),
        )
        points, running = [], 0
        for row in spend.dicts():
            running += int(row["cost_nusd"])
            points.append((row["time"], running))
        out.append(
            Burndown(
                scope,
                last["tenant_id"],
                int(last["limit_nusd"]),
                w_start,
                w_end,
                points,
                int(blocks[0]["spend_nusd"]) if blocks else None,
                blocks[0]["issued_at"] if blocks else None,
            )
        )
    return out


# -- what the tables show --------------------------------------------------------------------

Clock = Callable[[datetime], datetime]
"""Maps a processing time (when a signal was issued) onto the report's clock: the identity,
or the demo's simulated day."""


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"
    """text, count, usd (nano-USD), usd_decimal (USD), event_time, issue_time (processing
    time, shown on the report's clock), resolved (an end time or "still firing")."""


COLUMNS: dict[str, tuple[Column, ...]] = {
    "reconciliation": (
        Column("day", "Day"),
        Column("model_key", "Model"),
        Column("ledger_calls", "Calls", "count"),
        Column("ledger_input_tokens", "Input (ledger)", "count"),
        Column("provider_input_tokens", "Input (bill)", "count"),
        Column("ledger_output_tokens", "Output (ledger)", "count"),
        Column("provider_output_tokens", "Output (bill)", "count"),
        Column("ledger_cost_nusd", "Ledger", "usd_exact"),
        Column("provider_cost_nusd", "Bill", "usd_exact"),
        Column("difference_nusd", "Difference", "usd_exact"),
        Column("difference_pct", "Difference %", "pct"),
        Column("unpriced_calls", "Unpriced calls", "count"),
        Column("estimated_calls", "Estimated calls", "count"),
    ),
    "cost_by_feature": (
        Column("tenant_id", "Tenant"),
        Column("feature", "Feature"),
        Column("events", "Calls", "count"),
        Column("cost_nusd", "Cost", "usd"),
        Column("unpriced_events", "Unpriced calls", "count"),
    ),
    "cost_per_successful_task": (
        Column("tenant_id", "Tenant"),
        Column("feature", "Feature"),
        Column("tasks", "Tasks", "count"),
        Column("successful_tasks", "Successful", "count"),
        Column("cost_nusd", "Cost", "usd"),
        Column("cost_per_success_usd", "Cost per successful task", "usd_decimal"),
    ),
    "retry_cost": (
        Column("tenant_id", "Tenant"),
        Column("feature", "Feature"),
        Column("duplicate_generations", "Repeated generations", "count"),
        Column("retry_cost_nusd", "Retry cost", "usd"),
        Column("replayed_retries", "Replayed retries", "count"),
        Column("prevented_nusd", "Prevented", "usd"),
        Column("total_cost_nusd", "Total cost", "usd"),
    ),
    "cache_savings": (
        Column("tenant_id", "Tenant"),
        Column("cache", "Cache"),
        Column("hits", "Hits", "count"),
        Column("saved_nusd", "Saved", "usd"),
    ),
    "signals": (
        Column("issued_at", "Issued", "issue_time"),
        Column("scope", "Scope"),
        Column("state", "State"),
        Column("reason", "Reason"),
        Column("spend_nusd", "Spend", "usd"),
        Column("limit_nusd", "Limit", "usd"),
    ),
    "alerts": (
        Column("started", "Started", "event_time"),
        Column("detector", "Detector"),
        Column("scope", "Scope"),
        Column("evidence", "Observed / expected"),
        Column("resolved", "Resolved", "resolved"),
        Column("summary", "Summary"),
    ),
}


def cell(column: Column, row: dict[str, Any], clock: Clock | None = None) -> str:
    """One value as people read it: money as money, times on one clock, no None."""
    if column.key == "evidence":
        unit = row["unit"]
        return (
            f"{format_evidence(int(row['observed']), unit)} / "
            f"{format_evidence(int(row['expected']), unit)}"
        )
    value = row[column.key]
    if column.kind == "resolved":
        return "still firing" if value is None else f"{value:%Y-%m-%d %H:%M}"
    if value is None:
        return "-"
    if column.kind == "usd":
        return format_usd(int(value))
    if column.kind == "usd_exact":
        return format_usd(int(value), exact=True)
    if column.kind == "pct":
        return f"{float(value):+.2f}%"
    if column.kind == "usd_decimal":
        return format_usd(usd_to_nusd(Decimal(value)))
    if column.kind == "count":
        return f"{int(value):,}"
    if column.kind == "issue_time":
        return f"{(clock or (lambda t: t))(value):%Y-%m-%d %H:%M}"
    if column.kind == "event_time":
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def cells(name: str, table: Table, clock: Clock | None = None) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows of a library table, as COLUMNS[name] says."""
    columns = COLUMNS[name]
    return [c.header for c in columns], [
        [cell(c, r, clock) for c in columns] for r in table.dicts()
    ]


# -- terminal --------------------------------------------------------------------------------


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "  none"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [
        all(
            r[i].startswith(("$", "-$")) or r[i].replace(",", "").isdigit() or r[i] == "-"
            for r in rows
        )
        for i in range(len(headers))
    ]
    lines = [
        "  ".join(
            h.rjust(w) if n else h.ljust(w)
            for h, w, n in zip(headers, widths, numeric, strict=True)
        )
    ]
    lines += [
        "  ".join(
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric, strict=True)
        )
        for r in rows
    ]
    return "\n".join("  " + line.rstrip() for line in lines)


def render_text(data: ReportData, clock: Clock | None = None) -> str:
    """The terminal summary. ``clock`` puts processing times on the report's clock."""
    t = data.tables
    parts = [
        f"Cost {data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC: "
        f"{format_usd(data.total_nusd)} exactly {format_usd(data.total_nusd, exact=True)}"
    ]
    for name, title in (
        ("cost_by_feature", "Cost by tenant and feature"),
        ("cost_per_successful_task", "Cost per successful task"),
    ):
        parts += [f"\n{title}", fmt_table(*cells(name, t[name]))]
    retry = t["retry_cost"].dicts()
    parts.append(
        f"\nRetry cost (repeated generations): "
        f"{format_usd(sum(int(r['retry_cost_nusd']) for r in retry))} over "
        f"{sum(int(r['duplicate_generations']) for r in retry):,} retries; prevented by "
        f"claims: {format_usd(sum(int(r['prevented_nusd']) for r in retry))} over "
        f"{sum(int(r['replayed_retries']) for r in retry):,} replayed retries"
    )
    cache = t["cache_savings"].dicts()
    parts.append(
        f"Cache savings: {format_usd(sum(int(r['saved_nusd']) for r in cache))} over "
        f"{sum(int(r['hits']) for r in cache):,} hits (exact and semantic)"
    )
    parts.append("\nSavings waterfall")
    parts.append(
        fmt_table(
            ["Step", "Amount"],
            [
                [r["step"], format_usd(int(r["amount_nusd"]))]
                for r in t["savings_waterfall"].dicts()
            ],
        )
    )
    signals = Table(
        t["signals"].columns,
        [r for r in t["signals"].rows if r[t["signals"].columns.index("state")] != "allow"],
    )
    parts += ["\nBudget signals (warn and block)", fmt_table(*cells("signals", signals, clock))]
    parts.append("\nLedger vs the providers' reports (tokenledger reconcile)")
    if t["reconciliation"].rows:
        parts.append(fmt_table(*cells("reconciliation", t["reconciliation"])))
    else:
        parts.append("  no provider report imported for these days")
    headers, rows = cells("alerts", t["alerts"])
    parts += ["\nAnomaly alerts", fmt_table(headers, [r[:-1] + [r[-1][:90]] for r in rows])]
    return "\n".join(parts) + "\n"
