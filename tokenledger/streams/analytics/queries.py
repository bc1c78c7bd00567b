"""The analyst query library: clickhouse/queries/*.sql, each with a header saying what it
answers and its parameters. The CLI, the tests and Grafana panels load the same files.

Header lines (SQL comments at the top of the file):

    -- answers: Which tenants spent the money?
    -- param start DateTime64(3) = -7d      (default: 7 days before now, UTC)
    -- param end DateTime64(3) = now
    -- param tenant String = ''

Defaults: ``now``, ``today`` (00:00 UTC), ``-<n>d`` / ``-<n>h`` relative to now, or a literal.
Parameters are bound server-side (``{start:DateTime64(3)}``); no SQL is built by formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenledger.streams.config import sql_root
from tokenledger.streams.errors import UserError
from tokenledger.streams.times import FORMS, parse_time

_PARAM = re.compile(r"^--\s*param\s+(\w+)\s+(\S+)\s*(?:=\s*(.*?))?\s*$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None


@dataclass(frozen=True)
class Query:
    name: str
    answers: str
    params: tuple[Param, ...]
    sql: str

    def bind(self, given: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserError(
                f"query {self.name} has no parameter {', '.join(unknown)}; it takes: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            raw = given.get(p.name, p.default)
            if raw is None:
                raise UserError(f"query {self.name} needs --param {p.name}=<{p.type}>")
            out[p.name] = parse_value(p, raw, now)
        return out


def parse_value(p: Param, raw: str, now: datetime) -> Any:
    if p.type == "Identifier" and not re.fullmatch(r"[a-z_]+", raw):
        raise UserError(f"--param {p.name}={raw!r} is not a column name")
    if not p.type.startswith("DateTime"):
        if p.type.startswith(("UInt", "Int")):
            try:
                return int(raw)
            except ValueError:
                raise UserError(f"--param {p.name}={raw!r} is not a whole number") from None
        return raw.strip("'")
    try:
        return parse_time(raw, now)
    except ValueError:
        raise UserError(f"--param {p.name}={raw!r} is not a time; use {FORMS}") from None


def queries_dir() -> Path:
    return sql_root() / "queries"


def load(path: Path) -> Query:
    answers, params = "", []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        if line.startswith("-- answers:"):
            answers = line.removeprefix("-- answers:").strip()
        elif m := _PARAM.match(line):
            params.append(Param(m.group(1), m.group(2), m.group(3)))
    if not answers:
        raise UserError(f"{path.name} has no '-- answers:' header line")
    return Query(path.stem, answers, tuple(params), path.read_text())


def library() -> dict[str, Query]:
    return {q.name: q for q in (load(p) for p in sorted(queries_dir().glob("*.sql")))}


def get(name: str) -> Query:
    found = library()
    if name not in found:
        raise UserError(f"no query named {name!r}; `tokenledger query --list` shows them")
    return found[name]


def run(
    client: Any, query: Query, params: dict[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:  # the result is read lazily: errors can surface while reading rows
        result = client.query(query.sql, parameters=params)
        return list(result.column_names), [tuple(r) for r in result.result_rows]
    except ClickHouseError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise UserError(f"query {query.name} failed: {first}") from None
