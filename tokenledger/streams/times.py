"""Times as operators write them: on the command line (`report --start -7d`, `prices --at
2025-06-01`) and as defaults of the query library's parameters
(`-- param start DateTime64(3) = -7d`). One reader, so every place takes the same forms."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tokenledger.contract.days import start_of_day

FORMS = "ISO 8601, now, today or -7d / -12h"
"""The forms parse_time reads, as error messages name them."""

_RELATIVE = re.compile(r"-(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_time(raw: str, now: datetime) -> datetime:
    """``now``; ``today`` (00:00 UTC); ``-<n>d``, ``-<n>h`` or ``-<n>m`` before ``now``; or
    ISO 8601, read as UTC unless it names an offset (``Z``, ``+02:00``). ValueError for
    anything else."""
    if raw == "now":
        return now
    if raw == "today":
        return start_of_day(now)
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
