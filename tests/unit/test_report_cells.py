"""What the report shows people: money as money, evidence in dollars, no None, one clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tokenledger.contract.common import format_evidence
from tokenledger.streams.analytics.report import COLUMNS, Column, Table, cell, cells
from tokenledger.streams.demo.replay import SimClock

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("usd", 11_670_000, "$0.0117"),
        ("usd", 1_234_560_000_000, "$1,234.56"),
        ("usd_decimal", Decimal("0.011670000"), "$0.0117"),
        ("count", 12345, "12,345"),
        ("event_time", AT, "2026-11-20 12:00"),
        ("resolved", None, "still firing"),
        ("resolved", AT, "2026-11-20 12:00"),
        ("usd", None, "-"),
        ("text", None, "-"),
    ],
)
def test_each_kind_reads_as_people_expect(kind: str, value: object, shown: str) -> None:
    assert cell(Column("x", "X", kind), {"x": value}) == shown


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (1_230_000_000, "nusd/2min", "$1.23 per 2 min"),
        (53_000_000, "nusd/window", "$0.0530 in the window"),
        (208, "permille", "20.8%"),
        (6140, "x1000_reference", "6.14x the reference model"),
        (7, "tokens", "7 tokens"),
    ],
)
def test_alert_evidence_is_in_dollars_and_percent(value: int, unit: str, shown: str) -> None:
    assert format_evidence(value, unit) == shown


def test_issue_times_move_onto_the_report_clock() -> None:
    clock = SimClock(wall_start=AT, sim_start=AT - timedelta(days=1), speed=576.0)
    signals = Table(
        ["issued_at", "scope", "state", "reason", "spend_nusd", "limit_nusd"],
        [
            (
                AT.replace(tzinfo=None) + timedelta(seconds=75),
                "tenant/acme",
                "block",
                "limit",
                60_000_000_000,
                60_000_000_000,
            )
        ],
    )
    headers, rows = cells("signals", signals, clock)
    assert headers == ["Issued", "Scope", "State", "Reason", "Spend", "Limit"]
    # 75 wall seconds at 576x are 12 simulated hours after the simulated start
    assert rows == [["2026-11-20 00:00", "tenant/acme", "block", "limit", "$60.00", "$60.00"]]


def test_no_table_header_is_a_column_name() -> None:
    for columns in COLUMNS.values():
        for column in columns:
            assert "_" not in column.header and column.header[0].isupper(), column
