"""Guards on committed contract files: JSON Schema drift, migration files, ORDER BY comments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tokenledger.contract import export
from tokenledger.streams.sink import migrations


def test_committed_json_schema_matches_the_models() -> None:
    assert export.drift() == [], "run `tokenledger schemas export` and commit schemas/json"


def test_drift_is_detected(tmp_path: Path) -> None:
    export.export(tmp_path)
    assert export.drift(tmp_path) == []
    usage = tmp_path / "usage.json"
    doc = json.loads(usage.read_text())
    doc["properties"]["input_tokens"]["maximum"] = 5
    usage.write_text(json.dumps(doc))
    (tmp_path / "retired.json").write_text("{}")
    (tmp_path / "signal.json").unlink()
    assert export.drift(tmp_path) == ["retired.json", "signal.json", "usage.json"]


def test_migrations_are_numbered_uniquely_and_in_order() -> None:
    found = migrations.discover()
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1))


def test_duplicate_migration_numbers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 2")
    with pytest.raises(migrations.MigrationError, match="two migrations are numbered 0001"):
        migrations.discover(tmp_path)


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Add-Thing.sql").write_text("SELECT 1")
    with pytest.raises(migrations.MigrationError, match="NNNN_snake_name.sql"):
        migrations.discover(tmp_path)


def test_statements_split_on_terminating_semicolons_only() -> None:
    m = migrations.Migration(
        1,
        "x",
        Path("0001_x.sql"),
        "-- header; with a semicolon\nCREATE TABLE a (s String DEFAULT ';') ENGINE = Log;\n"
        "\nCREATE TABLE b (x UInt8) ENGINE = Log\n;\n-- trailing comment\n",
    )
    statements = m.statements()
    assert len(statements) == 2
    assert statements[0].endswith("ENGINE = Log") and "DEFAULT ';'" in statements[0]
    assert statements[1].startswith("CREATE TABLE b")


def test_every_order_by_is_explained_by_a_comment() -> None:
    for m in migrations.discover():
        lines = m.sql.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*ORDER BY", line):
                assert lines[i - 1].lstrip().startswith("--"), f"{m.path.name}:{i + 1}"
