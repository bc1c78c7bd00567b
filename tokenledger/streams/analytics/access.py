"""ClickHouse access control: a read-only analyst role per tenant with row policies, the
platform's role, and Grafana's read-only user.

The SQL lives in clickhouse/access/*.sql with ``{tenant}``, ``{database}``, ``{role}`` and
``{password_sha256}`` placeholders. Only names that match the project's name pattern (and,
for the database, ClickHouse's identifier rules) and hex digests are substituted, so a
rendered statement cannot be steered by its inputs. On a server the statements run in order; the embedded engine (chdb) has no
access control, so there they are only parsed (``EXPLAIN AST``) and reported as skipped.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tokenledger.contract.names import name_problem
from tokenledger.streams.config import GRAFANA_PASSWORD_ENV, sql_root
from tokenledger.streams.errors import UserError, clickhouse_reason

DATABASE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
GRAFANA_USER = "tokenledger_grafana"
"""The ClickHouse user grafana/provisioning/datasources/clickhouse.yml logs in as."""
MIN_PASSWORD_CHARS = 16


def role_for(tenant: str) -> str:
    return f"tl_analyst_{tenant}"


def render(
    name: str, *, database: str, tenant: str | None = None, password: str | None = None
) -> list[str]:
    """The statements of clickhouse/access/<name>.sql for ``database`` (and ``tenant``, or
    the ``password`` of Grafana's account, which goes in only as its SHA-256)."""
    if not re.match(DATABASE_PATTERN, database):
        raise UserError(f"database name {database!r} is not valid")
    values = {"database": database}
    if tenant is not None:
        problem = name_problem(tenant)
        if problem is not None:
            raise UserError(f"--tenant {tenant!r}: {problem}")
        values.update(tenant=tenant, role=role_for(tenant))
    if password is not None:
        if len(password) < MIN_PASSWORD_CHARS:
            raise UserError(
                f"{GRAFANA_PASSWORD_ENV} is {len(password)} characters; use at least "
                f"{MIN_PASSWORD_CHARS} (e.g. the output of `openssl rand -hex 16`)"
            )
        values["password_sha256"] = hashlib.sha256(password.encode()).hexdigest()
    text = (sql_root() / "access" / f"{name}.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in body.split(";") if s.strip()]
    out = []
    for statement in statements:
        for key, value in values.items():
            statement = statement.replace("{" + key + "}", value)
        if "{" in statement:
            raise UserError(f"clickhouse/access/{name}.sql needs a value it was not given")
        out.append(statement)
    return out


def parse_only(client: Any, statements: list[str]) -> list[str]:
    """``EXPLAIN AST`` of each statement: the engine's parser accepts them (nothing runs)."""
    return [
        "\n".join(str(r[0]) for r in client.query(f"EXPLAIN AST {s}").result_rows)
        for s in statements
    ]


def apply(client: Any, statements: list[str]) -> None:
    """Run the statements in order; a user who may not manage access is told so in one
    line (the statements are idempotent: run them again as a user who may)."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    for statement in statements:
        try:
            client.command(statement)
        except DatabaseError as exc:
            if "(ACCESS_DENIED)" not in str(exc):
                raise
            raise UserError(
                f"the ClickHouse user of TOKENLEDGER_CLICKHOUSE may not manage access "
                f"({clickhouse_reason(str(exc))}); apply them as a user with ACCESS "
                "MANAGEMENT (`--print` shows the SQL)"
            ) from None
