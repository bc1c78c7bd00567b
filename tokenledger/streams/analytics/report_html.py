"""The report as one self-contained HTML page: SVG charts and tables, no external assets."""

from __future__ import annotations

import html

from tokenledger.contract.common import format_usd
from tokenledger.streams.analytics.charts import burndown_svg, stacked_svg, waterfall_svg
from tokenledger.streams.analytics.report import DIMENSIONS, Clock, ReportData, cells


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(data: ReportData, clock: Clock | None = None) -> str:
    """The self-contained page: charts first, then the tables with human headers."""
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
    for name, title in (
        ("alerts", "Anomaly alerts"),
        ("signals", "Budget signals"),
        ("cost_by_feature", "Cost by tenant and feature"),
        ("cost_per_successful_task", "Cost per successful task"),
        ("retry_cost", "Retry cost (repeated generations)"),
        ("cache_savings", "Cache savings"),
        ("reconciliation", "Ledger vs the providers' reports"),
    ):
        sections.append(f"<h2>{title}</h2>" + _html_table(*cells(name, t[name], clock)))
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
