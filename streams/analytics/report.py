"""The cost report: every number comes from the query library (clickhouse/queries) run on
ClickHouse, rendered as a terminal summary and a self-contained HTML page with SVG charts.

`tokenledger report` writes it from whatever ClickHouse holds (the embedded engine or a
server); `tokenledger demo` writes it at the end of its run.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.common import format_usd
from streams.analytics import queries

DIMENSIONS = ("tenant_id", "feature", "route", "model")
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
TOP_SERIES = 7


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
    for dimension in DIMENSIONS:
        data.over_time[dimension] = _run(client, "cost_over_time", dimension=dimension,
                                         bucket_s=bucket_s, **span)  # fmt: skip
    data.burndowns = _burndowns(client, data.tables["signals"])
    return data


def _burndowns(client: Any, signals: Table) -> list[Burndown]:
    """Tenant budgets that signalled: cumulative spend over the latest window, the limit, and
    the spend at which the block was published."""
    rows = signals.dicts()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["scope"].count("/") == 1 and row["limit_nusd"] > 0:
            latest[row["scope"]] = row  # rows are in issue order: the last one wins
    out = []
    for scope, last in sorted(latest.items()):
        w_start, w_end = last["window_start"], last["window_end"]
        blocks = [r for r in rows if r["scope"] == scope and r["state"] == "block"
                  and r["window_start"] == w_start]  # fmt: skip
        spend = _run(client, "cost_over_time", dimension="tenant_id", tenant=last["tenant_id"],
                     bucket_s=900, start=_iso(w_start), end=_iso(w_end))  # fmt: skip
        points, running = [], 0
        for row in spend.dicts():
            running += int(row["cost_nusd"])
            points.append((row["time"], running))
        out.append(Burndown(scope, last["tenant_id"], int(last["limit_nusd"]), w_start, w_end,
                            points, int(blocks[0]["spend_nusd"]) if blocks else None,
                            blocks[0]["issued_at"] if blocks else None))  # fmt: skip
    return out


# -- terminal --------------------------------------------------------------------------------


def _fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) if c.startswith(("$", "-$")) or c.isdigit() else c.ljust(w)
                        for c, w in zip(r, widths, strict=True)) for r in rows]  # fmt: skip
    return "\n".join("  " + line.rstrip() for line in lines)


def render_text(data: ReportData) -> str:
    t = data.tables
    parts = [f"Cost {data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC: "
             f"{format_usd(data.total_nusd)} exactly {format_usd(data.total_nusd, exact=True)}"]  # fmt: skip
    parts.append("\nCost by tenant and feature")
    parts.append(_fmt_table(["tenant", "feature", "events", "cost"], [
        [r["tenant_id"], r["feature"], str(r["events"]), format_usd(int(r["cost_nusd"]))]
        for r in t["cost_by_feature"].dicts()]))  # fmt: skip
    parts.append("\nCost per successful task")
    parts.append(_fmt_table(["tenant", "feature", "tasks", "successful", "cost", "per success"], [
        [r["tenant_id"], r["feature"], str(r["tasks"]), str(r["successful_tasks"]),
         format_usd(int(r["cost_nusd"])),
         "-" if r["cost_per_success_usd"] is None else f"${r['cost_per_success_usd']:.6f}"]
        for r in t["cost_per_successful_task"].dicts()]))  # fmt: skip
    retry = t["retry_cost"].dicts()
    parts.append(f"\nRetry cost (repeated generations): "
                 f"{format_usd(sum(int(r['retry_cost_nusd']) for r in retry))} over "
                 f"{sum(int(r['duplicate_generations']) for r in retry)} retries")  # fmt: skip
    cache = t["cache_savings"].dicts()
    parts.append(f"Cache savings: {format_usd(sum(int(r['saved_nusd']) for r in cache))} over "
                 f"{sum(int(r['hits']) for r in cache)} hits (exact and semantic)")  # fmt: skip
    parts.append("\nSavings waterfall")
    parts.append(_fmt_table(["step", "amount"], [[r["step"], format_usd(int(r["amount_nusd"]))]
                            for r in t["savings_waterfall"].dicts()]))  # fmt: skip
    parts.append("\nBudget signals")
    sig = [r for r in t["signals"].dicts() if r["state"] != "allow"]
    parts.append(_fmt_table(["issued", "scope", "state", "reason"], [
        [f"{r['issued_at']:%H:%M:%S}", r["scope"], r["state"], r["reason"]] for r in sig])
        if sig else "  none")  # fmt: skip
    parts.append("\nAnomaly alerts")
    alerts = t["alerts"].dicts()
    parts.append(_fmt_table(["started", "detector", "scope", "resolved", "summary"], [
        [f"{r['started']:%H:%M}", r["detector"], r["scope"],
         f"{r['resolved']:%H:%M}" if r["resolved"] else "firing", r["summary"][:90]]
        for r in alerts]) if alerts else "  none")  # fmt: skip
    return "\n".join(parts) + "\n"


# -- HTML ------------------------------------------------------------------------------------

W, H = 760, 300
PAD_L, PAD_R, PAD_T, PAD_B = 80, 20, 20, 50


def _usd_axis(value: int) -> str:
    if value == 0:
        return "$0"
    return format_usd(value) if abs(value) < 10**9 else f"${value / 10**9:,.0f}"


def _svg(kind: str, points: int, body: list[str], height: int = H) -> str:
    return (f'<svg class="chart" data-chart="{kind}" data-points="{points}" '
            f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">'
            + "".join(body) + "</svg>")  # fmt: skip


def _y_grid(top: int, height: float, y_of: Any, ticks: int = 4) -> list[str]:
    out = []
    for i in range(ticks + 1):
        value = int(top * i / ticks)
        y = y_of(value)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#e5e5e5"/><text x="{PAD_L - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end" font-size="11">{_usd_axis(value)}</text>')  # fmt: skip
    return out


def waterfall_svg(rows: list[dict[str, Any]]) -> str:
    steps = [(r["step"], int(r["amount_nusd"])) for r in rows]
    if not steps or steps[0][1] <= 0:
        return _svg("waterfall", 0, ['<text x="20" y="40">no priced usage</text>'])
    top = max(itertools.accumulate(a for _, a in steps[:-1]))
    top = max(top, steps[0][1])
    inner_h = H - PAD_T - PAD_B

    def y_of(v: float) -> float:
        return PAD_T + inner_h * (1 - v / top)

    body = _y_grid(top, inner_h, y_of)
    bar_w = (W - PAD_L - PAD_R) / len(steps)
    level = 0
    for i, (step, amount) in enumerate(steps):
        x = PAD_L + i * bar_w + 8
        if i == 0 or i == len(steps) - 1:
            lo, hi, color = 0, amount, "#4e79a7" if i == 0 else "#59a14f"
            level = amount
        else:
            lo, hi = sorted((level, level + amount))
            color = "#e15759" if amount > 0 else "#76b7b2"
            level += amount
        y1, y2 = y_of(hi), y_of(lo)
        body.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{bar_w - 16:.1f}" '
                    f'height="{max(y2 - y1, 1):.1f}" fill="{color}"><title>{html.escape(step)}: '
                    f'{format_usd(amount, exact=True)}</title></rect>')  # fmt: skip
        body.append(f'<text x="{x + (bar_w - 16) / 2:.1f}" y="{y1 - 4:.1f}" font-size="11" '
                    f'text-anchor="middle">{format_usd(amount)}</text>')  # fmt: skip
        body.append(f'<text x="{x + (bar_w - 16) / 2:.1f}" y="{H - PAD_B + 16}" font-size="11" '
                    f'text-anchor="middle">{html.escape(step)}</text>')  # fmt: skip
    return _svg("waterfall", len(steps), body)


def stacked_svg(kind: str, table: Table) -> str:
    rows = table.dicts()
    if not rows:
        return _svg(kind, 0, ['<text x="20" y="40">no spend in this period</text>'])
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["series"]] = totals.get(r["series"], 0) + int(r["cost_nusd"])
    ranked = sorted(totals, key=lambda s: (-totals[s], s))
    keep = ranked[:TOP_SERIES]
    times = sorted({r["time"] for r in rows})
    cells: dict[tuple[Any, str], int] = {}
    for r in rows:
        series = r["series"] if r["series"] in keep else "other"
        cells[(r["time"], series)] = cells.get((r["time"], series), 0) + int(r["cost_nusd"])
    names = keep + (["other"] if len(ranked) > TOP_SERIES else [])
    top = max(sum(cells.get((t, s), 0) for s in names) for t in times) or 1
    inner_h = H - PAD_T - PAD_B

    def y_of(v: float) -> float:
        return PAD_T + inner_h * (1 - v / top)

    body = _y_grid(top, inner_h, y_of)
    bar_w = (W - PAD_L - PAD_R - 140) / len(times)
    for i, t in enumerate(times):
        x = PAD_L + i * bar_w
        base = 0
        for j, s in enumerate(names):
            v = cells.get((t, s), 0)
            if v <= 0:
                continue
            y1, y2 = y_of(base + v), y_of(base)
            body.append(f'<rect x="{x:.1f}" y="{y1:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                        f'height="{max(y2 - y1, 0.5):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                        f"<title>{t:%H:%M} {html.escape(s)}: {format_usd(v)}</title></rect>")  # fmt: skip
            base += v
        if i % max(len(times) // 6, 1) == 0:
            body.append(
                f'<text x="{x:.1f}" y="{H - PAD_B + 16}" font-size="11">{t:%d %H:%M}</text>'
            )
    for j, s in enumerate(names):
        y = PAD_T + 16 * j
        body.append(f'<rect x="{W - 150}" y="{y}" width="10" height="10" '
                    f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{W - 135}" y="{y + 9}" '
                    f'font-size="11">{html.escape(s[:18])} {format_usd(totals.get(s, 0) if s != "other" else sum(totals[x] for x in ranked[TOP_SERIES:]))}</text>')  # fmt: skip
    return _svg(kind, len(rows), body)


def burndown_svg(b: Burndown) -> str:
    if not b.points:
        return _svg("burndown", 0, ['<text x="20" y="40">no spend in this window</text>'])
    top = max(b.limit_nusd, b.points[-1][1]) * 11 // 10
    inner_h = H - PAD_T - PAD_B
    span = (b.window_end - b.window_start).total_seconds()

    def y_of(v: float) -> float:
        return PAD_T + inner_h * (1 - v / top)

    def x_of(at: datetime) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * (at - b.window_start).total_seconds() / span

    body = _y_grid(top, inner_h, y_of)
    step = timedelta(minutes=15)
    path = " ".join(f"{x_of(t + step):.1f},{y_of(v):.1f}" for t, v in b.points)
    body.append(f'<polyline points="{x_of(b.window_start):.1f},{y_of(0):.1f} {path}" '
                f'fill="none" stroke="#4e79a7" stroke-width="2"/>')  # fmt: skip
    ly = y_of(b.limit_nusd)
    body.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{ly:.1f}" y2="{ly:.1f}" '
                f'stroke="#e15759" stroke-dasharray="6 4"/><text x="{W - PAD_R}" y="{ly - 5:.1f}" '
                f'text-anchor="end" font-size="11" fill="#e15759">limit '
                f"{format_usd(b.limit_nusd)}</text>")  # fmt: skip
    if b.blocked_at_nusd is not None:
        at = next((t + step for t, v in b.points if v >= b.blocked_at_nusd), b.points[-1][0])
        bx, by = x_of(at), y_of(b.blocked_at_nusd)
        body.append(f'<circle cx="{bx:.1f}" cy="{by:.1f}" r="6" fill="#e15759" data-block="1"/>'
                    f'<text x="{bx + 8:.1f}" y="{by + 16:.1f}" font-size="12" fill="#e15759">'
                    f"blocked at {format_usd(b.blocked_at_nusd)}</text>")  # fmt: skip
    for i in range(5):
        at = b.window_start + (b.window_end - b.window_start) * i / 4
        body.append(f'<text x="{x_of(at):.1f}" y="{H - PAD_B + 16}" font-size="11" '
                    f'text-anchor="middle">{at:%d %H:%M}</text>')  # fmt: skip
    return _svg("burndown", len(b.points), body)


def _html_table(table: Table, money: tuple[str, ...] = ()) -> str:
    if not table.rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for r in table.rows:
        cells = []
        for c, v in zip(table.columns, r, strict=True):
            text = format_usd(int(v)) if c in money and v is not None else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(data: ReportData) -> str:
    t = data.tables
    sections = [
        f"<h1>tokenledger cost report</h1><p class=sub>{data.start:%Y-%m-%d %H:%M} to "
        f"{data.end:%Y-%m-%d %H:%M} UTC &middot; total <b>{format_usd(data.total_nusd)}</b> "
        f"({html.escape(format_usd(data.total_nusd, exact=True))} exactly)</p>",
        "<h2>Savings waterfall</h2><p class=sub>from the baseline (each route's reference "
        "model, no retries, no cache, untrimmed context, no batch) to the bill</p>",
        waterfall_svg(t["savings_waterfall"].dicts()),
    ]
    for dimension in DIMENSIONS:
        label = dimension.replace("_id", "")
        sections.append(f"<h2>Cost by {label} over time</h2>")
        sections.append(stacked_svg(f"over_time_{dimension}", data.over_time[dimension]))
    sections.append("<h2>Budget burn-down</h2>")
    if not data.burndowns:
        sections.append("<p>no budget signalled in this period</p>")
    for b in data.burndowns:
        sections.append(f"<h3>{html.escape(b.scope)}</h3>{burndown_svg(b)}")
    sections.append("<h2>Anomaly alerts</h2>" + _html_table(t["alerts"]))
    sections.append("<h2>Budget signals</h2>" + _html_table(
        t["signals"], ("spend_nusd", "limit_nusd")))  # fmt: skip
    sections.append("<h2>Cost by tenant and feature</h2>" + _html_table(
        t["cost_by_feature"], ("cost_nusd",)))  # fmt: skip
    sections.append("<h2>Cost per successful task</h2>" + _html_table(
        t["cost_per_successful_task"], ("cost_nusd",)))  # fmt: skip
    sections.append("<h2>Retry cost</h2>" + _html_table(
        t["retry_cost"], ("retry_cost_nusd", "total_cost_nusd")))  # fmt: skip
    sections.append("<h2>Cache savings</h2>" + _html_table(t["cache_savings"], ("saved_nusd",)))
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>tokenledger report</title>"
        "<style>body{font-family:sans-serif;margin:24px;color:#222;max-width:820px}"
        "h2{margin-top:32px;border-bottom:1px solid #ddd}.sub{color:#666}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;"
        "padding:3px 6px;text-align:left}svg{display:block;margin:8px 0}</style></head><body>"
        + "\n".join(sections)
        + "<script>document.body.dataset.charts=document.querySelectorAll("
        "'svg.chart:not([data-points=\"0\"])').length;</script></body></html>\n"
    )
