"""ClickHouse access control SQL: parsed by the real engine; one tenant's policy names only
that tenant; on a server (TOKENLEDGER_TEST_CONTAINERS=1) a tenant analyst sees only its
rows; the embedded engine refuses access control, and the CLI says it skipped it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import pytest

from tests.helpers import factories
from tests.helpers.backends import Backends
from tokenledger.contract.rows import UsageRow
from tokenledger.streams.analytics import access
from tokenledger.streams.errors import UserError
from tokenledger.streams.sink import migrations

pytestmark = pytest.mark.integration
TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")
TABLES = {
    "usage_events",
    "request_events",
    "outcome_events",
    "signals",
    "alerts",
    "spend_by_minute",
    "dlq_events",
}


def _formatted(ch: Any, statement: str) -> str:
    return str(
        ch.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
    )


def test_tenant_analyst_sql_parses_and_confines_the_role_to_its_tenant(ch: Any) -> None:
    statements = access.render("tenant_analyst", database="tokenledger", tenant="acme")
    kinds = [ast.splitlines()[0] for ast in access.parse_only(ch, statements)]
    assert kinds == ["CreateRoleQuery"] + ["GrantQuery"] * 6 + [
        "CREATE ROW POLICY or ALTER ROW POLICY query"
    ]
    assert _formatted(ch, statements[0]) == (
        "CREATE ROLE IF NOT EXISTS tl_analyst_acme SETTINGS readonly = 1"
    )
    grants = [_formatted(ch, s) for s in statements[1:7]]
    assert all(
        g.startswith("GRANT SELECT ON tokenledger.") and g.endswith(" TO tl_analyst_acme")
        for g in grants
    )
    policy = _formatted(ch, statements[7])
    on = policy.split(" ON ")[1].split(" FOR ")[0].split(", ")
    assert {t.removeprefix("tokenledger.") for t in on} == TABLES
    assert policy.endswith("FOR SELECT USING tenant_id = 'acme' TO tl_analyst_acme")
    platform = access.render("platform", database="tokenledger")
    assert _formatted(ch, platform[2]).endswith("FOR SELECT USING 1 TO tokenledger_platform")


@pytest.mark.parametrize(
    ("tenant", "problem"),
    [
        ("acme' OR 1=1 --", '"\'" cannot be part of a name'),
        ("a`b", "'`' cannot be part of a name"),
        ("ａｃｍｅ", "a name starts with a letter or a digit"),
        ("", "a name cannot be empty"),
        ("x;DROP USER default", "';' cannot be part of a name"),
    ],
)
def test_a_tenant_that_is_not_a_name_never_reaches_the_sql(tenant: str, problem: str) -> None:
    with pytest.raises(UserError) as raised:
        access.render("tenant_analyst", database="tokenledger", tenant=tenant)
    assert str(raised.value).startswith(f"--tenant {tenant!r}: {problem}"), str(raised.value)


def test_the_embedded_engine_says_it_skips_access_control(cli_env: dict[str, str]) -> None:
    subprocess.run([TOKENLEDGER, "migrate"], env=cli_env, check=True, capture_output=True)
    done = subprocess.run(
        [TOKENLEDGER, "access", "grant", "--tenant", "acme"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "the embedded engine has no access control: 8 statements parsed and skipped; apply "
        "them on a ClickHouse server (--print shows them)"
    )
    shown = subprocess.run(
        [TOKENLEDGER, "access", "grant", "--tenant", "acme", "--print"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.count(";\n") == 8 and "USING tenant_id = 'acme'" in shown.stdout


def test_row_policies_confine_a_tenant_analyst_to_its_rows(
    ch: Any, clickhouse_dsn: str, backends: Backends
) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    migrations.migrate(ch)
    database = ch.query("SELECT currentDatabase()").result_rows[0][0]
    role = f"tl_analyst_acme_{database[-6:]}"
    statements = access.render("tenant_analyst", database=database, tenant="acme")
    statements = [s.replace("tl_analyst_acme", role) for s in statements]
    if not backends.containers:
        # The embedded engine has no access control: it refuses the first statement (which
        # is why `tokenledger access grant` only parses them there) as a server refuses a
        # user without ACCESS MANAGEMENT, and that is one line, not a driver error.
        with pytest.raises(UserError) as refused:
            access.apply(ch, statements)
        assert str(refused.value) == (
            "the ClickHouse user of TOKENLEDGER_CLICKHOUSE may not manage access (default: Not "
            "enough privileges. To execute this query, it's necessary to have the grant CREATE "
            f"ROLE ON {role}. (ACCESS_DENIED)); apply them as a user with ACCESS MANAGEMENT "
            "(`--print` shows the SQL)"
        )
        return
    rows = [
        UsageRow.from_message(factories.enriched(tenant_id=t, event_id=f"{t}-{i}"))
        for i, t in enumerate(["acme", "globex", "acme", "initech"])
    ]
    ch.insert(
        UsageRow.table,
        [[*r.values(), 0, i] for i, r in enumerate(rows)],
        column_names=UsageRow.insert_columns(),
    )
    access.apply(ch, statements)
    user = f"u_{database}"
    ch.command(f"CREATE USER `{user}` IDENTIFIED WITH plaintext_password BY 'pw-{user}'")
    ch.command(f"GRANT `{role}` TO `{user}`")
    ch.command(f"ALTER USER `{user}` DEFAULT ROLE `{role}`")
    try:
        parts = urlsplit(clickhouse_dsn)
        analyst = clickhouse_connect.get_client(
            host=parts.hostname,
            port=parts.port,
            username=user,
            password=f"pw-{user}",
            database=database,
        )
        seen = analyst.query("SELECT tenant_id, count() FROM usage_events GROUP BY tenant_id")
        assert seen.result_rows == [("acme", 2)]
        rollup = analyst.query("SELECT DISTINCT tenant_id FROM spend_by_minute").result_rows
        assert rollup == [("acme",)]
        with pytest.raises(DatabaseError, match="readonly|READONLY|ACCESS_DENIED"):
            analyst.command("INSERT INTO usage_events (tenant_id) VALUES ('acme')")
    finally:
        ch.command(f"DROP USER IF EXISTS `{user}`")
        on = ", ".join(f"`{database}`.{table}" for table in sorted(TABLES))
        ch.command(f"DROP ROW POLICY IF EXISTS `tl_rows_acme` ON {on}")
        ch.command(f"DROP ROLE IF EXISTS `{role}`")
