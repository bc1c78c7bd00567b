"""ClickHouse clients from one setting: ``chdb:///path`` (embedded engine) or a server URL.

All access goes through clickhouse-connect, so the same code runs against the embedded
engine and a server or cluster. The embedded engine allows one data path per process and
one process per path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenledger.streams.config import Settings
from tokenledger.streams.errors import ServiceUnavailableError, UserError, clickhouse_reason
from tokenledger.streams.redact import dsn_secrets, redact_dsn, scrub

log = logging.getLogger(__name__)
_HINT = "use chdb:///path/to/data (embedded) or http(s)://host:8123 (a server)"


def normalize_dsn(dsn: str) -> str:
    """Make a chdb DSN's path absolute (and create it); check a server DSN's shape."""
    if dsn.startswith("chdb://"):
        rest = dsn.removeprefix("chdb://")
        if not rest:
            raise UserError(f"TOKENLEDGER_CLICKHOUSE={dsn!r} has no data path; {_HINT}")
        path = Path(rest).resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".tokenledger-write-check"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"TOKENLEDGER_CLICKHOUSE={dsn!r}: cannot write the data path {path} "
                f"({exc.strerror}); point it at a folder you can write"
            ) from None
        return f"chdb://{path}"
    parts = urlsplit(dsn)
    if parts.scheme in ("http", "https", "clickhouse", "clickhouses") and parts.hostname:
        return dsn
    raise UserError(f"TOKENLEDGER_CLICKHOUSE={redact_dsn(dsn)!r} is not a ClickHouse DSN; {_HINT}")


class MissingDatabaseError(UserError):
    """The database does not exist (yet): `tokenledger migrate` creates it."""


def reading_client(settings: Settings) -> tuple[Any, str]:
    """A client for reading (report, query) and the database it reads: the configured one;
    when that is the default and does not exist but the demo's database does, the demo's,
    so a bare `tokenledger report` after `make demo` shows the demo's day."""
    try:
        return get_client(
            settings.clickhouse, settings.clickhouse_database
        ), settings.clickhouse_database
    except MissingDatabaseError:
        if settings.clickhouse_database_chosen:
            raise
        try:
            client = get_client(settings.clickhouse, settings.demo_database)
        except MissingDatabaseError:
            raise MissingDatabaseError(
                f"database {settings.clickhouse_database} does not exist at "
                f"{redact_dsn(normalize_dsn(settings.clickhouse))}; create it with `tokenledger "
                "migrate` (or fill a demo one with `tokenledger demo`)"
            ) from None
    log.info(
        "reading %s, the database `tokenledger demo` wrote (%s does not exist; "
        "TOKENLEDGER_CLICKHOUSE_DATABASE chooses another)",
        settings.demo_database,
        settings.clickhouse_database,
    )
    return client, settings.demo_database


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
    shown = redact_dsn(dsn)
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
                f"the embedded ClickHouse at {shown} is in use by another process (a running "
                "sink or worker?); stop it, or point TOKENLEDGER_CLICKHOUSE at a server"
            ) from None
        if "UNKNOWN_DATABASE" in text:
            raise MissingDatabaseError(
                f"database {database} does not exist at {shown}; create it with `tokenledger migrate`"
            ) from None
        raise ServiceUnavailableError(
            f"ClickHouse at {shown} is unavailable: {scrub(_reason(text), dsn_secrets(dsn))}; check "
            "TOKENLEDGER_CLICKHOUSE and that the server is up"
        ) from None


_REASONS = (
    ("Connection refused", "connection refused"),
    ("Failed to resolve", "host not found"),
    ("Name or service not known", "host not found"),
    ("timed out", "timed out"),
    ("Authentication failed", "authentication failed"),
)


def _reason(text: str) -> str:
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return clickhouse_reason(text)[:200]


def _valid_database(name: str) -> None:
    if not name.replace("_", "").isalnum() or name[0].isdigit() or len(name) > 64:
        raise UserError(
            f"database name {name!r} is not valid; use letters, digits and _, not starting "
            "with a digit"
        )
