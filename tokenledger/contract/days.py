"""Where days begin. Prices change, budget windows open and reports start at midnight: of
UTC unless a budget names its own zone. Every such instant is a UTC datetime."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo


def midnight(day: date, zone: tzinfo = UTC) -> datetime:
    """00:00 of ``day`` in ``zone``, as a UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def start_of_day(at: datetime, zone: tzinfo = UTC) -> datetime:
    """00:00 in ``zone`` of the day that holds ``at`` (a timezone-aware datetime), in UTC."""
    return midnight(at.astimezone(zone).date(), zone)
