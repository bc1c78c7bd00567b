"""Grafana panels and alert rules run the library's SQL, macros expanded, on the real engine."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.helpers import factories
from tokenledger.contract.rows import DlqRow, OutcomeRow, SignalRow, UsageRow
from tokenledger.streams.analytics import access, grafana, queries
from tokenledger.streams.sink import migrations

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)  # one clock for the panel and the library query
START = NOW.replace(second=0) - timedelta(hours=2)  # rollups count whole minutes
END = NOW + timedelta(minutes=1)


def instant(t: datetime) -> str:
    return f"toDateTime64('{t:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"


def expand(sql: str, variables: dict[str, str]) -> str:
    """What Grafana and its ClickHouse plugin do with the macros and the dashboard's
    variables: ``${name:percentencode}`` as Grafana encodes it (encodeURIComponent, and
    ``!'()*`` too: ``A-Z a-z 0-9 - _ . ~`` stay, all else is %XX), ``${name}`` and ``$name``
    as the plugin pastes a single value: as it is. A variable the dashboard lacks stays."""
    sql = sql.replace("$__fromTime", instant(START)).replace("$__toTime", instant(END))
    sql = sql.replace("$__interval_s", "3600")
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}:percentencode}}", quote(value, safe=""))
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    # the clock frozen at NOW, as the library query is bound to it, so both see the same second
    sql = sql.replace("now64(3)", instant(NOW))
    assert not re.search(r"\$\{?\w+", sql), f"unexpanded macro in {sql[:200]}"
    return sql


def panels() -> Iterator[tuple[grafana.Dashboard, grafana.Panel, dict[str, Any]]]:
    """Every panel of every dashboard file, with its spec."""
    for spec in grafana.DASHBOARDS:
        doc = json.loads(
            (
                grafana.GRAFANA_DIR / f"dashboards/{spec.uid.removeprefix('tokenledger-')}.json"
            ).read_text()
        )
        for shown in doc["panels"]:
            yield spec, next(p for p in spec.panels if p.title == shown["title"]), shown


def library_rows(ch: Any, panel: grafana.Panel, tenant: str) -> list[tuple[Any, ...]]:
    """What the panel's library query returns with its parameters bound (never pasted)."""
    query = queries.get(panel.query)
    params = {
        "start": START.isoformat(),
        "end": END.isoformat(),
        "tenant": tenant,
        "bucket_s": "3600",
        **panel.fixed,
    }
    given = {k: v for k, v in params.items() if k in {p.name for p in query.params}}
    return queries.run(ch, query, query.bind(given, now=NOW))[1]


def seed(ch: Any) -> None:
    migrations.migrate(ch)
    usage = [
        UsageRow.from_message(
            factories.enriched(
                tenant_id=f"tenant-{i % 3}",
                feature=f"f{i % 2}",
                model=("gpt-4o", "o3")[i % 2],
                ts=START + timedelta(minutes=i),
                cost_nusd=1_000 * (i + 1),
                table_cost_nusd=1_000 * (i + 1),
                duplicate_generation=i % 5 == 0,
                cache="exact" if i % 7 == 0 else "none",
                task_id=f"task-{i % 6}",
            )
        )
        for i in range(60)
    ]
    rows: list[tuple[Any, list[Any]]] = [(UsageRow, [r.values() for r in usage])]
    rows.append(
        (
            OutcomeRow,
            [
                OutcomeRow.from_message(
                    factories.outcome(tenant_id=f"tenant-{t % 3}", task_id=f"task-{t}", ts=START)
                ).values()
                for t in range(6)
            ],
        )
    )
    rows.append(
        (
            SignalRow,
            [
                SignalRow.from_message(
                    factories.signal(
                        scope="tenant/tenant-1",
                        tenant_id="tenant-1",
                        window_start=START,
                        window_end=END + timedelta(hours=20),
                    )
                ).values()
            ],
        )
    )
    rows.append(
        (
            DlqRow,
            [DlqRow.from_message(factories.dlq(failed_at=START + timedelta(minutes=5))).values()],
        )
    )
    for row_type, values in rows:
        ch.insert(
            row_type.table,
            [[*v, 0, i] for i, v in enumerate(values)],
            column_names=row_type.insert_columns(),
        )


def test_generated_files_match_the_library() -> None:
    assert grafana.drift() == [], "run `tokenledger grafana export` and commit grafana/"


@pytest.mark.parametrize("tenant", ["", "tenant-1"])
def test_every_panel_returns_what_its_library_query_returns(ch: Any, tenant: str) -> None:
    """A dashboard with the tenant variable filters by it; one without shows every tenant."""
    seed(ch)
    checked = 0
    for dashboard, panel, shown in panels():
        (target,) = shown["targets"]
        assert target["meta"]["library_query"] == panel.query
        variables = {"tenant": tenant} if dashboard.tenant_variable else {}
        expected = library_rows(ch, panel, tenant if dashboard.tenant_variable else "")
        got = [tuple(r) for r in ch.query(expand(target["rawSql"], variables)).result_rows]
        assert got == expected, f"{dashboard.uid}: {panel.title}"
        checked += 1
    assert checked == sum(len(d.panels) for d in grafana.DASHBOARDS)


HOSTILE = [
    "tenant-1' OR '1'='1",  # closes the string in '${tenant}'
    "tenant-1\\' OR 1=1 --",  # and in sqlstring's '' or singlequote's \' escaping
    "x'); DROP TABLE usage_events; --",
    "tenant-1\\",  # a trailing backslash escapes the closing quote
    "ünï'cøde\"%27`\n",
]


@pytest.mark.parametrize("tenant", HOSTILE)
def test_a_tenant_from_the_url_stays_a_string_whatever_it_holds(ch: Any, tenant: str) -> None:
    """?var-tenant= is the viewer's to choose: with Grafana's percentencode and ClickHouse's
    decodeURLComponent, every panel compares tenant_id with exactly that string (no such
    tenant: the rows the library query returns for it, bound as a parameter, i.e. none)."""
    seed(ch)
    (literal,) = ch.query(
        f"SELECT {expand(grafana.MACROS['tenant'], {'tenant': tenant})}"
    ).result_rows
    assert literal == (tenant,)
    checked = 0
    for dashboard, panel, shown in panels():
        if not dashboard.tenant_variable:
            continue
        sql = expand(shown["targets"][0]["rawSql"], {"tenant": tenant})
        got = [tuple(r) for r in ch.query(sql).result_rows]
        assert got == library_rows(ch, panel, tenant), f"{dashboard.uid}: {panel.title}"
        checked += 1
    assert checked == sum(len(d.panels) for d in grafana.DASHBOARDS if d.tenant_variable)
    assert ch.query("SELECT count() FROM usage_events").result_rows == [(60,)]


def test_panels_show_the_seeded_money(ch: Any) -> None:
    seed(ch)
    cost = json.loads((grafana.GRAFANA_DIR / "dashboards/cost.json").read_text())
    over_time = next(p for p in cost["panels"] if p["title"] == "Cost over time by model")
    rows = ch.query(expand(over_time["targets"][0]["rawSql"], {})).result_rows
    assert sum(r[2] for r in rows) == sum(1_000 * (i + 1) for i in range(60))
    assert {r[1] for r in rows} == {"gpt-4o", "o3"}


def test_alert_rules_fire_on_what_they_watch(ch: Any) -> None:
    seed(ch)
    doc = json.loads((grafana.GRAFANA_DIR / "provisioning/alerting/tokenledger.json").read_text())
    counts = {}
    for rule in doc["groups"][0]["rules"]:
        sql = rule["data"][0]["model"]["rawSql"]
        counts[rule["uid"]] = ch.query(expand(sql, {})).result_rows[0][0]
    assert counts == {"tokenledger-blocked": 1, "tokenledger-dlq": 1}


def test_remaining_library_queries_against_hand_computed_values(ch: Any) -> None:
    """The queries test_sink.py does not check, on seed(): event i is tenant-(i % 3),
    feature f(i % 2), model gpt-4o / o3 alternating, at START + i minutes, costing
    1000 * (i + 1) nano-USD, route rag, prompt v3."""
    seed(ch)
    events = [
        (
            f"tenant-{i % 3}",
            f"f{i % 2}",
            ("gpt-4o", "o3")[i % 2],
            START + timedelta(minutes=i),
            1_000 * (i + 1),
        )
        for i in range(60)
    ]

    def run(name: str, **params: str) -> list[tuple[Any, ...]]:
        query = queries.get(name)
        given = {"start": START.isoformat(), "end": END.isoformat(), **params}
        given = {k: v for k, v in given.items() if k in {p.name for p in query.params}}
        return queries.run(ch, query, query.bind(given))[1]

    by_feature = {(r[0], r[1]): (r[2], r[3]) for r in run("cost_by_feature")}
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for tenant, feature, _, _, cost in events:
        n, total = expected.get((tenant, feature), (0, 0))
        expected[(tenant, feature)] = (n + 1, total + cost)
    assert by_feature == expected
    everything = (60, sum(e[4] for e in events))
    assert [(r[0], r[1], r[2]) for r in run("cost_by", dimension="route")] == [("rag", *everything)]
    assert [(r[0], r[1], r[2]) for r in run("cost_by", dimension="prompt_version")] == [
        ("v3", *everything)
    ]
    hourly: dict[tuple[datetime, str], int] = {}
    for _, _, model, ts, cost in events:
        key = (ts.replace(minute=0), model)
        hourly[key] = hourly.get(key, 0) + cost
    got = {(r[0].replace(tzinfo=UTC), r[1]): r[2] for r in run("cost_over_time", bucket_s="3600")}
    assert got == hourly
    assert run("tenants") == [("tenant-0",), ("tenant-1",), ("tenant-2",)]
    ((scope, _, spend, limit, _),) = run("blocked_scopes")
    assert (scope, spend, limit) == ("tenant/tenant-1", 50_000_000_000, 50_000_000_000)
    assert run("dlq_by_reason") == [
        ("malformed_json", "usage-validator", "tokenledger.usage.v1", 1)
    ]


def test_grafanas_quoting_formats_would_not_hold_in_clickhouse(ch: Any) -> None:
    """Why percentencode: sqlstring doubles a quote and singlequote backslashes it, but
    neither escapes a backslash, which ClickHouse reads as an escape: the value ends the
    string and its own SQL runs (here: every row, not tenant-1's)."""
    seed(ch)
    value = "tenant-1\\' OR 1=1 --"
    formats = {
        "sqlstring": "'" + value.replace("'", "''") + "'",
        "singlequote": "'" + value.replace("'", "\\'") + "'",
        "percentencode": f"decodeURLComponent('{quote(value, safe='')}')",
    }
    counts = {
        name: ch.query(f"SELECT count() FROM usage_events WHERE tenant_id = {quoted}").result_rows  # noqa: S608
        for name, quoted in formats.items()
    }
    assert counts == {"sqlstring": [(60,)], "singlequote": [(60,)], "percentencode": [(0,)]}


def test_the_datasource_user_is_the_read_only_one_of_clickhouse_access(ch: Any) -> None:
    """grafana/provisioning logs in as the user clickhouse/access/grafana.sql makes: SELECT
    is its only grant, readonly = 1 its setting (only the plugin's query timeout may
    change), its password only as a SHA-256; and every panel and alert rule runs under
    readonly = 1, where a write is refused."""
    source = yaml.safe_load(
        (grafana.GRAFANA_DIR / "provisioning/datasources/clickhouse.yml").read_text()
    )["datasources"][0]
    assert (source["jsonData"]["username"], source["secureJsonData"]) == (
        access.GRAFANA_USER,
        {"password": "$TOKENLEDGER_GRAFANA_PASSWORD"},
    )
    password = "correct horse battery staple"  # noqa: S105 - a test value
    statements = access.render("grafana", database="tokenledger", password=password)
    assert password not in " ".join(statements)
    formatted = [
        ch.query("SELECT formatQuery({q:String})", parameters={"q": s}).result_rows[0][0]
        for s in statements
    ]
    digest = hashlib.sha256(password.encode()).hexdigest()
    tables = ", ".join(
        f"tokenledger.{t}"
        for t in (
            "usage_events",
            "request_events",
            "outcome_events",
            "signals",
            "alerts",
            "spend_by_minute",
            "dlq_events",
        )
    )
    assert formatted == [
        "CREATE ROLE IF NOT EXISTS tokenledger_grafana_reader SETTINGS readonly = 1, "
        "max_execution_time CHANGEABLE_IN_READONLY",
        "GRANT SELECT ON tokenledger.* TO tokenledger_grafana_reader",
        f"CREATE ROW POLICY IF NOT EXISTS tl_rows_grafana ON {tables} FOR SELECT USING 1 TO "
        "tokenledger_grafana_reader",
        f"CREATE USER OR REPLACE tokenledger_grafana IDENTIFIED WITH sha256_hash BY '{digest}'",
        "GRANT tokenledger_grafana_reader TO tokenledger_grafana",
        "ALTER USER tokenledger_grafana DEFAULT ROLE tokenledger_grafana_reader",
    ]
    seed(ch)

    def read_only(sql: str) -> str:  # as the account's readonly = 1 would run it
        return f"SELECT * FROM ({sql}) SETTINGS readonly = 1"  # noqa: S608

    for dashboard, _, shown in panels():
        variables = {"tenant": "tenant-1"} if dashboard.tenant_variable else {}
        ch.query(read_only(expand(shown["targets"][0]["rawSql"], variables)))
    rules = json.loads((grafana.GRAFANA_DIR / "provisioning/alerting/tokenledger.json").read_text())
    for rule in rules["groups"][0]["rules"]:
        ch.query(read_only(expand(rule["data"][0]["model"]["rawSql"], {})))
    with pytest.raises(DatabaseError, match="READONLY"):
        ch.command("INSERT INTO outcome_events (tenant_id) SETTINGS readonly = 1 VALUES ('x')")
