"""Where days begin and how operators write times: one reader of each for every command and
query default (tokenledger/contract/days.py, tokenledger/streams/times.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tokenledger.contract.days import midnight, start_of_day
from tokenledger.streams.analytics import queries
from tokenledger.streams.errors import UserError
from tokenledger.streams.times import parse_time

NOW = datetime(2026, 3, 8, 17, 45, 30, 123_000, tzinfo=UTC)


def test_midnight_of_a_date_in_utc_and_in_a_zone() -> None:
    assert midnight(date(2026, 3, 8)) == datetime(2026, 3, 8, tzinfo=UTC)
    assert midnight(date(2026, 3, 8)).tzinfo is UTC
    # New York: 05:00 UTC before the spring change that day, 04:00 UTC the day after
    new_york = ZoneInfo("America/New_York")
    assert midnight(date(2026, 3, 8), new_york) == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert midnight(date(2026, 3, 9), new_york) == datetime(2026, 3, 9, 4, tzinfo=UTC)


def test_start_of_the_day_that_holds_an_instant() -> None:
    assert start_of_day(NOW) == datetime(2026, 3, 8, tzinfo=UTC)
    assert start_of_day(datetime(2026, 3, 8, tzinfo=UTC)) == datetime(2026, 3, 8, tzinfo=UTC)
    tokyo = timezone(timedelta(hours=9))  # 17:45 UTC is 02:45 on the 9th there
    assert start_of_day(NOW, tokyo) == datetime(2026, 3, 8, 15, tzinfo=UTC)
    west = timezone(timedelta(hours=-11))  # 06:45 on the 8th
    assert start_of_day(NOW, west) == datetime(2026, 3, 8, 11, tzinfo=UTC)
    in_paris = NOW.astimezone(ZoneInfo("Europe/Paris"))
    assert start_of_day(in_paris) == datetime(2026, 3, 8, tzinfo=UTC)  # UTC's day, not Paris's


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("now", NOW),
        ("today", datetime(2026, 3, 8, tzinfo=UTC)),
        ("-7d", NOW - timedelta(days=7)),
        ("-12h", NOW - timedelta(hours=12)),
        ("-90m", NOW - timedelta(minutes=90)),
        ("-0d", NOW),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T10:30:00", datetime(2025, 6, 1, 10, 30, tzinfo=UTC)),
        ("2025-06-01T10:30:00Z", datetime(2025, 6, 1, 10, 30, tzinfo=UTC)),
        ("2025-06-01T12:30:00+02:00", datetime(2025, 6, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_the_forms_of_a_time(raw: str, expected: datetime) -> None:
    assert parse_time(raw, NOW) == expected


@pytest.mark.parametrize("raw", ["", "yesterday", "7d", "-7w", "-d", "+7d", "2025-13-01", "Now"])
def test_anything_else_is_not_a_time(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_time(raw, NOW)


def test_query_parameters_read_times_the_same_way() -> None:
    start = queries.Param("start", "DateTime64(3)", "-7d")
    assert queries.parse_value(start, "today", NOW) == datetime(2026, 3, 8, tzinfo=UTC)
    assert queries.parse_value(start, "-2h", NOW) == NOW - timedelta(hours=2)
    with pytest.raises(UserError) as raised:
        queries.parse_value(start, "soon", NOW)
    assert str(raised.value) == (
        "--param start='soon' is not a time; use ISO 8601, now, today or -7d / -12h"
    )
