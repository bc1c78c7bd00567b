"""Migrations on the real ClickHouse engine (embedded): idempotent, tamper-evident, and the
row models in schemas/ match the tables they describe."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import factories
from tokenledger.contract.rows import (
    ROWS,
    AlertRow,
    DlqRow,
    OutcomeRow,
    RequestRow,
    SignalRow,
    UsageRow,
)
from tokenledger.streams.sink import migrations

pytestmark = pytest.mark.integration

TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")


def test_migrate_twice_changes_nothing_the_second_time(ch: Any) -> None:
    first = migrations.migrate(ch)
    assert [m.version for m in first] == [m.version for m in migrations.discover()]
    tables_after_first = ch.query("SHOW TABLES").result_rows
    assert migrations.migrate(ch) == []
    assert ch.query("SHOW TABLES").result_rows == tables_after_first
    recorded = ch.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert recorded.result_rows == [(m.version, m.checksum) for m in migrations.discover()]


def test_an_edited_applied_migration_is_refused(ch: Any, tmp_path: Path) -> None:
    source = migrations.sql_root() / "migrations"
    shutil.copytree(source, tmp_path / "m")
    migrations.migrate(ch, migrations.discover(tmp_path / "m"))
    edited = tmp_path / "m" / "0002_request_events.sql"
    edited.write_text(edited.read_text().replace("400 DAY", "30 DAY"))
    with pytest.raises(migrations.MigrationError) as err:
        migrations.migrate(ch, migrations.discover(tmp_path / "m"))
    assert str(err.value).startswith("0002_request_events.sql was edited after it was applied")
    assert "put the change in a new migration" in str(err.value)


def test_a_database_ahead_of_this_release_is_refused(ch: Any, tmp_path: Path) -> None:
    migrations.migrate(ch)
    *older, newest = migrations.discover()
    with pytest.raises(migrations.MigrationError, match=f"does not know .*{newest.path.stem}"):
        migrations.migrate(ch, older)


def _family(annotation: Any) -> tuple[str, bool]:
    """A row field's annotation -> (ClickHouse type family, nullable)."""
    nullable = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable, annotation = True, args[0]
    if typing.get_origin(annotation) is list:
        return "Array", nullable
    return {int: "Int", str: "String", bool: "Bool", datetime: "DateTime64"}[annotation], nullable


def _ch_family(ch_type: str) -> tuple[str, bool]:
    nullable = ch_type.startswith("Nullable(")
    inner = re.sub(r"^(Nullable|LowCardinality)\((.*)\)$", r"\2", ch_type)
    inner = re.sub(r"^(Nullable|LowCardinality)\((.*)\)$", r"\2", inner)
    for family in ("Array", "DateTime64", "Bool", "String"):
        if inner.startswith(family):
            return family, nullable
    if re.match(r"U?Int\d+$", inner):
        return "Int", nullable
    return inner, nullable


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.table)
def test_row_models_match_their_tables(ch: Any, row: type[Any]) -> None:
    migrations.migrate(ch)
    described = ch.query("DESCRIBE TABLE {t:Identifier}", parameters={"t": row.table}).result_rows
    columns = [(name, _ch_family(ch_type)) for name, ch_type, *_ in described]
    fields = [(name, _family(info.annotation)) for name, info in row.model_fields.items()]
    assert columns == fields + [
        ("kafka_partition", ("Int", False)),
        ("kafka_offset", ("Int", False)),
    ]


def test_every_row_model_round_trips_through_its_table(ch: Any) -> None:
    migrations.migrate(ch)
    rows = [
        UsageRow.from_message(factories.enriched()),
        RequestRow.from_message(factories.request()),
        OutcomeRow.from_message(factories.outcome()),
        SignalRow.from_message(factories.signal()),
        AlertRow.from_message(factories.alert()),
        DlqRow.from_message(factories.dlq()),
    ]
    assert {type(r) for r in rows} == set(ROWS)
    for row in rows:
        ch.insert(row.table, [row.values()], column_names=row.columns())
        stored = ch.query(
            "SELECT * EXCEPT (kafka_partition, kafka_offset) FROM {t:Identifier}",
            parameters={"t": row.table},
        ).named_results()
        (got,) = list(stored)
        assert type(row).model_validate(_utc(got)) == row


def _utc(values: dict[str, Any]) -> dict[str, Any]:
    """The engine returns naive UTC datetimes for DateTime64(3, 'UTC')."""
    from datetime import UTC

    return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for k, v in values.items()}


def test_materialized_views_match_their_target_tables(ch: Any) -> None:
    migrations.migrate(ch)
    views = ch.query(
        "SELECT name, as_select FROM system.tables WHERE database = currentDatabase() "
        "AND engine = 'MaterializedView'"
    ).result_rows
    assert [name for name, _ in views] == ["spend_by_minute_mv"]
    for name, select in views:
        target = name.removesuffix("_mv")
        produced = [r[0] for r in ch.query(f"DESCRIBE ({select})").result_rows]
        stored = [r[0] for r in ch.query(f"DESCRIBE TABLE {target}").result_rows]
        assert produced == stored, name


def test_money_sums_exactly_to_the_nano_dollar(ch: Any) -> None:
    migrations.migrate(ch)
    costs = [1, 999_999_999, 2**40 + 7, 11_670_000, 3]
    rows = [UsageRow.from_message(factories.enriched(cost_nusd=c)).values() for c in costs]
    rows.append(
        UsageRow.from_message(
            factories.enriched(
                cost_nusd=None, priced=False, table_cost_nusd=None, cost_source="unpriced"
            )
        ).values()
    )
    ch.insert("usage_events", rows, column_names=UsageRow.columns())
    total, unpriced = ch.query(
        "SELECT sum(cost_nusd), countIf(cost_nusd IS NULL) FROM usage_events"
    ).result_rows[0]
    assert (total, unpriced) == (sum(costs), 1)


def test_migrate_command_twice(cli_env: dict[str, str]) -> None:
    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TOKENLEDGER, "migrate"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = migrate()
    assert first.returncode == 0, first.stderr
    n = len(migrations.discover())
    assert first.stdout.startswith(f"{n} migration(s) applied, 0 already applied")
    second = migrate()
    assert second.stdout.startswith(f"0 migration(s) applied, {n} already applied")
    assert second.stderr == ""


def test_rollup_repair_restores_a_lost_materialized_view_part(ch: Any) -> None:
    """A raw INSERT whose rollup part was lost (the view detached stands in for a process
    killed between the two writes): the repair makes the rollup equal the raw table."""
    from tokenledger.streams.sink.resume import REPAIR_SQL

    migrations.migrate(ch)
    columns = UsageRow.columns() + ["kafka_partition", "kafka_offset"]
    first = [
        UsageRow.from_message(factories.enriched(cost_nusd=c, table_cost_nusd=c))
        for c in (5, 7, 11)
    ]
    ch.insert(
        "usage_events", [[*r.values(), 0, i] for i, r in enumerate(first)], column_names=columns
    )
    ch.command("DETACH TABLE spend_by_minute_mv")
    lost = [
        UsageRow.from_message(factories.enriched(cost_nusd=c, duplicate_generation=True))
        for c in (13, 17)
    ]
    ch.insert(
        "usage_events", [[*r.values(), 0, 3 + i] for i, r in enumerate(lost)], column_names=columns
    )
    ch.command("ATTACH TABLE spend_by_minute_mv")
    totals = "SELECT sum(cost_nusd), sum(events), sum(retry_cost_nusd) FROM spend_by_minute"
    assert ch.query(totals).result_rows == [(23, 3, 0)]
    minutes = [
        r[0] for r in ch.query("SELECT DISTINCT toStartOfMinute(ts) FROM usage_events").result_rows
    ]
    ch.command(REPAIR_SQL.read_text(), parameters={"minutes": minutes})
    assert ch.query(totals).result_rows == [(53, 5, 30)]
    ch.command(REPAIR_SQL.read_text(), parameters={"minutes": minutes})  # idempotent
    assert ch.query(totals).result_rows == [(53, 5, 30)]
