"""Errors that reach a user as one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import re


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; the message says how."""

    exit_code = 2


class ServiceUnavailableError(UserError):
    """A service (Kafka, ClickHouse) cannot be reached."""

    exit_code = 3


_CLICKHOUSE = re.compile(r"Code: (\d+)\. DB::Exception: (.+?)(?: \(version [^)]*\))?\.?$", re.M)


def clickhouse_reason(text: str) -> str:
    """The one line of a ClickHouse error worth showing: the server's message (with its
    code name), else the driver's first line."""
    found = _CLICKHOUSE.search(text)
    if found:
        return found.group(2).strip()[:300]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "no message"


def from_exception(exc: BaseException) -> UserError | None:
    """The one line for an error that no command turned into a UserError: a file or
    network error, or an error from ClickHouse. None for anything else: a bug, whose
    traceback is what a report needs."""
    from tokenledger.signing import SigningKeyError

    if isinstance(exc, SigningKeyError):
        return UserError(str(exc))
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        where = exc.filename if exc.filename is not None else None
        error = ServiceUnavailableError if isinstance(exc, ConnectionError) else UserError
        return error(f"{what}: {where}" if where else what)
    if type(exc).__module__.startswith("clickhouse_connect."):
        if type(exc).__name__ == "OperationalError":
            return ServiceUnavailableError(
                f"ClickHouse is unavailable: {clickhouse_reason(str(exc))}"
            )
        hint = ""
        if "(UNKNOWN_TABLE)" in str(exc):
            hint = "; is the database migrated (`tokenledger migrate`)?"
        return UserError(f"ClickHouse refused the query: {clickhouse_reason(str(exc))}{hint}")
    return None
