"""ClickHouse access control SQL: parsed by the real engine; one tenant's policy names only
that tenant; the embedded engine is reported as skipped, not silently ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.analytics import access
from streams.errors import UserError

pytestmark = pytest.mark.integration
TOKENLEDGER = str(Path(sys.executable).parent / "tokenledger")
TABLES = {"usage_events", "request_events", "outcome_events", "signals", "alerts",
          "spend_by_minute", "dlq_events"}  # fmt: skip


def _formatted(ch: Any, statement: str) -> str:
    return str(
        ch.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
    )


def test_tenant_analyst_sql_parses_and_confines_the_role_to_its_tenant(ch: Any) -> None:
    statements = access.render("tenant_analyst", database="tokenledger", tenant="acme")
    kinds = [ast.splitlines()[0] for ast in access.parse_only(ch, statements)]
    assert kinds == ["CreateRoleQuery"] + ["GrantQuery"] * 6 + [
        "CREATE ROW POLICY or ALTER ROW POLICY query"]  # fmt: skip
    assert _formatted(ch, statements[0]) == (
        "CREATE ROLE IF NOT EXISTS tl_analyst_acme SETTINGS readonly = 1"
    )
    grants = [_formatted(ch, s) for s in statements[1:7]]
    assert all(g.startswith("GRANT SELECT ON tokenledger.") and g.endswith(" TO tl_analyst_acme")
               for g in grants)  # fmt: skip
    policy = _formatted(ch, statements[7])
    on = policy.split(" ON ")[1].split(" FOR ")[0].split(", ")
    assert {t.removeprefix("tokenledger.") for t in on} == TABLES
    assert policy.endswith("FOR SELECT USING tenant_id = 'acme' TO tl_analyst_acme")
    platform = access.render("platform", database="tokenledger")
    assert _formatted(ch, platform[2]).endswith("FOR SELECT USING 1 TO tokenledger_platform")


@pytest.mark.parametrize(
    "tenant", ["acme' OR 1=1 --", "a`b", "ａｃｍｅ", "", "x;DROP USER default"]
)
def test_a_tenant_that_is_not_a_name_never_reaches_the_sql(tenant: str) -> None:
    with pytest.raises(UserError, match="use 1-128 letters"):
        access.render("tenant_analyst", database="tokenledger", tenant=tenant)


def test_the_embedded_engine_says_it_skips_access_control(cli_env: dict[str, str]) -> None:
    subprocess.run([TOKENLEDGER, "migrate"], env=cli_env, check=True, capture_output=True)
    done = subprocess.run([TOKENLEDGER, "access", "grant", "--tenant", "acme"], env=cli_env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "the embedded engine has no access control: 8 statements parsed and skipped; apply "
        "them on a ClickHouse server (--print shows them)"
    )
    shown = subprocess.run([TOKENLEDGER, "access", "grant", "--tenant", "acme", "--print"],
                           env=cli_env, capture_output=True, text=True, check=True)  # fmt: skip
    assert shown.stdout.count(";\n") == 8 and "USING tenant_id = 'acme'" in shown.stdout
