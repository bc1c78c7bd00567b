"""Apply clickhouse/migrations/NNNN_name.sql in order, recording each with its checksum.

Idempotent: applied versions are skipped. An applied file that was edited afterwards is
refused (its checksum no longer matches): changes go into a new migration.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenledger.streams.config import sql_root
from tokenledger.streams.errors import UserError

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)

LEDGER_TABLE = "schema_migrations"
_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE}
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(UserError):
    """The migrations on disk and in the database disagree; the message says how to fix it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        parts = _STATEMENT_END.split(self.sql)
        return [p.strip() for p in parts if _strip_comments(p).strip()]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration file in order; refuses stray names and duplicate numbers."""
    directory = directory or sql_root() / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise MigrationError(
                f"{path.name}: migration files are named NNNN_snake_name.sql (e.g. 0007_add_x.sql)"
            )
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations are numbered {version:04d}: {found[version].path.name} and "
                f"{path.name}; renumber the newer one"
            )
        found[version] = Migration(version, m.group(2), path, path.read_text())
    return [found[v] for v in sorted(found)]


def applied(client: Any) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) recorded in the database."""
    client.command(_LEDGER_DDL)
    rows = client.query("SELECT version, name, checksum FROM schema_migrations").result_rows
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def migrate(
    client: Any,
    migrations: list[Migration] | None = None,
    progress: Callable[[str], None] = log.info,
) -> list[Migration]:
    """Apply what is not applied yet, in order; returns the migrations applied now."""
    migrations = discover() if migrations is None else migrations
    done = applied(client)
    known = {m.version for m in migrations}
    unknown = sorted(set(done) - known)
    if unknown:
        names = ", ".join(f"{v:04d}_{done[v][0]}" for v in unknown)
        raise MigrationError(
            f"the database has migrations this release does not know ({names}); "
            "upgrade tokenledger or use another database"
        )
    now_applied = []
    for m in migrations:
        if m.version in done:
            name, checksum = done[m.version]
            if checksum != m.checksum:
                raise MigrationError(
                    f"{m.path.name} was edited after it was applied (recorded sha256 "
                    f"{checksum[:12]}, file {m.checksum[:12]}); restore it and put the change "
                    "in a new migration"
                )
            continue
        progress(f"applying {m.path.name}")
        for statement in m.statements():
            try:
                client.command(statement)
            except Exception as exc:  # noqa: BLE001 - reported as one line, never swallowed
                from clickhouse_connect.driver.exceptions import ClickHouseError

                if not isinstance(exc, ClickHouseError):
                    raise
                first = str(exc).strip().splitlines()[0][:300]
                raise MigrationError(f"{m.path.name} failed: {first}") from None
        client.insert(
            LEDGER_TABLE,
            [[m.version, m.name, m.checksum]],
            column_names=["version", "name", "checksum"],
        )
        now_applied.append(m)
    return now_applied
