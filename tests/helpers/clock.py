"""Times for tests that run against the real clock, chosen so that no result depends on the
hour the suite runs at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def midday_zone(now: datetime | None = None) -> str:
    """An IANA fixed-offset zone in which it is now between 12:00 and 13:00: a daily budget
    there starts about 12 hours ago and ends about 12 hours ahead, so a test that lasts
    minutes never crosses its midnight."""
    now = now or datetime.now(UTC)
    offset = 12 - now.hour  # -11..12 hours east of UTC
    if offset == 0:
        return "UTC"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX sign: inverted


def recent(minutes: int = 3) -> datetime:
    """A whole second ``minutes`` ago: event times well inside today's window in
    ``midday_zone()`` and far from any future-time check."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)
