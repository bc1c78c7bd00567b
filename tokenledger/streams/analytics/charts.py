"""The report's SVG charts: the savings waterfall, stacked cost over time, and a budget's
burn-down with its limit and the block marked at the spend it was published at."""

from __future__ import annotations

import html
import itertools
from datetime import datetime, timedelta
from typing import Any

from tokenledger.contract.common import format_usd
from tokenledger.streams.analytics.report import Burndown, Table

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
TOP_SERIES = 7
W, H = 760, 300
PAD_L, PAD_R, PAD_T, PAD_B = 80, 20, 20, 50


def _usd_axis(value: int) -> str:
    if value == 0:
        return "$0"
    return format_usd(value) if abs(value) < 10**9 else f"${value / 10**9:,.0f}"


def _svg(kind: str, points: int, body: list[str], height: int = H) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" data-points="{points}" '
        f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">'
        + "".join(body)
        + "</svg>"
    )


def _y_grid(top: int, height: float, y_of: Any, ticks: int = 4) -> list[str]:
    out = []
    for i in range(ticks + 1):
        value = int(top * i / ticks)
        y = y_of(value)
        out.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e5e5e5"/><text x="{PAD_L - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end" font-size="11">{_usd_axis(value)}</text>'
        )
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
        body.append(
            f'<rect x="{x:.1f}" y="{y1:.1f}" width="{bar_w - 16:.1f}" '
            f'height="{max(y2 - y1, 1):.1f}" fill="{color}"><title>{html.escape(step)}: '
            f"{format_usd(amount, exact=True)}</title></rect>"
        )
        body.append(
            f'<text x="{x + (bar_w - 16) / 2:.1f}" y="{y1 - 4:.1f}" font-size="11" '
            f'text-anchor="middle">{format_usd(amount)}</text>'
        )
        body.append(
            f'<text x="{x + (bar_w - 16) / 2:.1f}" y="{H - PAD_B + 16}" font-size="11" '
            f'text-anchor="middle">{html.escape(step)}</text>'
        )
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
            body.append(
                f'<rect x="{x:.1f}" y="{y1:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{max(y2 - y1, 0.5):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{t:%H:%M} {html.escape(s)}: {format_usd(v)}</title></rect>"
            )
            base += v
        if i % max(len(times) // 6, 1) == 0:
            body.append(
                f'<text x="{x:.1f}" y="{H - PAD_B + 16}" font-size="11">{t:%d %H:%M}</text>'
            )
    for j, s in enumerate(names):
        y = PAD_T + 16 * j
        body.append(
            f'<rect x="{W - 150}" y="{y}" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{W - 135}" y="{y + 9}" '
            f'font-size="11">{html.escape(s[:18])} {format_usd(totals.get(s, 0) if s != "other" else sum(totals[x] for x in ranked[TOP_SERIES:]))}</text>'
        )
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
    body.append(
        f'<polyline points="{x_of(b.window_start):.1f},{y_of(0):.1f} {path}" '
        f'fill="none" stroke="#4e79a7" stroke-width="2"/>'
    )
    ly = y_of(b.limit_nusd)
    body.append(
        f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{ly:.1f}" y2="{ly:.1f}" '
        f'stroke="#e15759" stroke-dasharray="6 4"/><text x="{W - PAD_R}" y="{ly - 5:.1f}" '
        f'text-anchor="end" font-size="11" fill="#e15759">limit '
        f"{format_usd(b.limit_nusd)}</text>"
    )
    if b.blocked_at_nusd is not None:
        at = next((t + step for t, v in b.points if v >= b.blocked_at_nusd), b.points[-1][0])
        bx, by = x_of(at), y_of(b.blocked_at_nusd)
        body.append(
            f'<circle cx="{bx:.1f}" cy="{by:.1f}" r="6" fill="#e15759" data-block="1"/>'
            f'<text x="{bx + 8:.1f}" y="{by + 16:.1f}" font-size="12" fill="#e15759">'
            f"blocked at {format_usd(b.blocked_at_nusd)}</text>"
        )
    for i in range(5):
        at = b.window_start + (b.window_end - b.window_start) * i / 4
        body.append(
            f'<text x="{x_of(at):.1f}" y="{H - PAD_B + 16}" font-size="11" '
            f'text-anchor="middle">{at:%d %H:%M}</text>'
        )
    return _svg("burndown", len(b.points), body)
