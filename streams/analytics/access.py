"""ClickHouse access control: a read-only analyst role per tenant with row policies.

The SQL lives in clickhouse/access/*.sql with ``{tenant}``, ``{database}`` and ``{role}``
placeholders. Only names that match the project's name pattern (and, for the database,
ClickHouse's identifier rules) are substituted, so a rendered statement cannot be steered
by its inputs. On a server the statements run in order; the embedded engine (chdb) has no
access control, so there they are only parsed (``EXPLAIN AST``) and reported as skipped.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.names import name_problem
from streams.config import sql_root
from streams.errors import UserError

DATABASE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def role_for(tenant: str) -> str:
    return f"tl_analyst_{tenant}"


def render(name: str, *, database: str, tenant: str | None = None) -> list[str]:
    """The statements of clickhouse/access/<name>.sql for ``database`` (and ``tenant``)."""
    if not re.match(DATABASE_PATTERN, database):
        raise UserError(f"database name {database!r} is not valid")
    values = {"database": database}
    if tenant is not None:
        problem = name_problem(tenant)
        if problem is not None:
            raise UserError(f"--tenant {tenant!r}: {problem}")
        values.update(tenant=tenant, role=role_for(tenant))
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
    return ["\n".join(str(r[0]) for r in client.query(f"EXPLAIN AST {s}").result_rows)
            for s in statements]  # fmt: skip


def apply(client: Any, statements: list[str]) -> None:
    for statement in statements:
        client.command(statement)
