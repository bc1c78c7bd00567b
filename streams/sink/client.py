"""ClickHouse clients from one setting: ``chdb:///path`` (embedded engine) or a server URL.

All access goes through clickhouse-connect, so the same code runs against the embedded
engine and a server or cluster. The embedded engine allows one data path per process and
one process per path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streams.errors import ServiceUnavailableError, UserError

_HINT = "use chdb:///path/to/data (embedded) or http(s)://host:8123 (a server)"


def normalize_dsn(dsn: str) -> str:
    """Make a chdb DSN's path absolute (and create it); check a server DSN's shape."""
    if dsn.startswith("chdb://"):
        rest = dsn.removeprefix("chdb://")
        if not rest:
            raise UserError(f"TOKENLEDGER_CLICKHOUSE={dsn!r} has no data path; {_HINT}")
        path = Path(rest).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return f"chdb://{path}"
    parts = urlsplit(dsn)
    if parts.scheme in ("http", "https", "clickhouse", "clickhouses") and parts.hostname:
        return dsn
    raise UserError(f"TOKENLEDGER_CLICKHOUSE={dsn!r} is not a ClickHouse DSN; {_HINT}")


def get_client(dsn: str, database: str | None = None, *, create: bool = False) -> Any:
    """A clickhouse-connect client for ``dsn``; ``create`` makes ``database`` first."""
    try:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError
    except ImportError:
        raise UserError(
            "clickhouse-connect is not installed; pip install 'tokenledger[streams]'"
        ) from None
    dsn = normalize_dsn(dsn)
    try:
        if create and database:
            _valid_database(database)
            clickhouse_connect.get_client(dsn=dsn).command(
                f"CREATE DATABASE IF NOT EXISTS `{database}`"
            )
        return clickhouse_connect.get_client(dsn=dsn, database=database)
    except ClickHouseError as exc:
        text = str(exc)
        if any(
            m in text
            for m in ("Cannot lock file", "already initialized", "Unable to open the chdb")
        ):
            raise ServiceUnavailableError(
                f"the embedded ClickHouse at {dsn} is in use by another process (a running "
                "sink or worker?); stop it, or point TOKENLEDGER_CLICKHOUSE at a server"
            ) from None
        if "UNKNOWN_DATABASE" in text:
            raise UserError(
                f"database {database} does not exist at {dsn}; create it with `tokenledger migrate`"
            ) from None
        raise ServiceUnavailableError(
            f"ClickHouse at {dsn} is unavailable: {_reason(text, exc)}; check "
            "TOKENLEDGER_CLICKHOUSE and that the server is up"
        ) from None


_REASONS = (
    ("Connection refused", "connection refused"),
    ("Failed to resolve", "host not found"),
    ("Name or service not known", "host not found"),
    ("timed out", "timed out"),
    ("Authentication failed", "authentication failed"),
)


def _reason(text: str, exc: Exception) -> str:
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


def _valid_database(name: str) -> None:
    if not name.replace("_", "").isalnum() or name[0].isdigit() or len(name) > 64:
        raise UserError(
            f"database name {name!r} is not valid; use letters, digits and _, not starting "
            "with a digit"
        )
