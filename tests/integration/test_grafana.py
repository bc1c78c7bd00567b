"""Grafana panels and alert rules run the library's SQL, macros expanded, on the real engine."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.rows import DlqRow, OutcomeRow, SignalRow, UsageRow
from streams.analytics import grafana, queries
from streams.sink import migrations
from tests.helpers import factories

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)  # one clock for the panel and the library query
START = NOW.replace(second=0) - timedelta(hours=2)  # rollups count whole minutes
END = NOW + timedelta(minutes=1)


def instant(t: datetime) -> str:
    return f"toDateTime64('{t:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"


def expand(sql: str, tenant: str) -> str:
    """What the Grafana ClickHouse plugin does with the macros and the tenant variable."""
    sql = sql.replace("$__fromTime", instant(START)).replace("$__toTime", instant(END))
    sql = sql.replace("$__interval_s", "3600").replace("${tenant}", tenant)
    # the clock frozen at NOW, as the library query is bound to it, so both see the same second
    sql = sql.replace("now64(3)", instant(NOW))
    assert not re.search(r"\$\{?\w+", sql), f"unexpanded macro in {sql[:200]}"
    return sql


def seed(ch: Any) -> None:
    migrations.migrate(ch)
    usage = [UsageRow.from_message(factories.enriched(
        tenant_id=f"tenant-{i % 3}", feature=f"f{i % 2}", model=("gpt-4o", "o3")[i % 2],
        ts=START + timedelta(minutes=i), cost_nusd=1_000 * (i + 1), table_cost_nusd=1_000 * (i + 1),
        duplicate_generation=i % 5 == 0, cache="exact" if i % 7 == 0 else "none",
        task_id=f"task-{i % 6}")) for i in range(60)]  # fmt: skip
    rows: list[tuple[Any, list[Any]]] = [(UsageRow, [r.values() for r in usage])]
    rows.append((OutcomeRow, [OutcomeRow.from_message(factories.outcome(
        tenant_id=f"tenant-{t % 3}", task_id=f"task-{t}", ts=START)).values() for t in range(6)]))  # fmt: skip
    rows.append((SignalRow, [SignalRow.from_message(factories.signal(
        scope="tenant/tenant-1", tenant_id="tenant-1", window_start=START,
        window_end=END + timedelta(hours=20))).values()]))  # fmt: skip
    rows.append(
        (
            DlqRow,
            [DlqRow.from_message(factories.dlq(failed_at=START + timedelta(minutes=5))).values()],
        )
    )
    for row_type, values in rows:
        ch.insert(row_type.table, [[*v, 0, i] for i, v in enumerate(values)],
                  column_names=row_type.insert_columns())  # fmt: skip


def test_generated_files_match_the_library() -> None:
    assert grafana.drift() == [], "run `tokenledger grafana export` and commit grafana/"


@pytest.mark.parametrize("tenant", ["", "tenant-1"])
def test_every_panel_returns_what_its_library_query_returns(ch: Any, tenant: str) -> None:
    seed(ch)
    checked = 0
    for path in sorted(grafana.GRAFANA_DIR.glob("dashboards/*.json")):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            (target,) = panel["targets"]
            name = target["meta"]["library_query"]
            query = queries.get(name)
            spec = next(
                p for d in grafana.DASHBOARDS for p in d.panels if p.title == panel["title"]
            )
            params = {"start": START.isoformat(), "end": END.isoformat(), "tenant": tenant,
                      "bucket_s": "3600", **spec.fixed}  # fmt: skip
            given = {k: v for k, v in params.items() if k in {p.name for p in query.params}}
            expected = queries.run(ch, query, query.bind(given, now=NOW))[1]
            got = [tuple(r) for r in ch.query(expand(target["rawSql"], tenant)).result_rows]
            assert got == expected, f"{path.name}: {panel['title']}"
            checked += 1
    assert checked == sum(len(d.panels) for d in grafana.DASHBOARDS)


def test_panels_show_the_seeded_money(ch: Any) -> None:
    seed(ch)
    cost = json.loads((grafana.GRAFANA_DIR / "dashboards/cost.json").read_text())
    over_time = next(p for p in cost["panels"] if p["title"] == "Cost over time by model")
    rows = ch.query(expand(over_time["targets"][0]["rawSql"], "")).result_rows
    assert sum(r[2] for r in rows) == sum(1_000 * (i + 1) for i in range(60))
    assert {r[1] for r in rows} == {"gpt-4o", "o3"}


def test_alert_rules_fire_on_what_they_watch(ch: Any) -> None:
    seed(ch)
    doc = json.loads((grafana.GRAFANA_DIR / "provisioning/alerting/tokenledger.json").read_text())
    counts = {}
    for rule in doc["groups"][0]["rules"]:
        sql = rule["data"][0]["model"]["rawSql"]
        counts[rule["uid"]] = ch.query(expand(sql, "")).result_rows[0][0]
    assert counts == {"tokenledger-blocked": 1, "tokenledger-dlq": 1}


def test_remaining_library_queries_against_hand_computed_values(ch: Any) -> None:
    """The queries test_sink.py does not check, on seed(): event i is tenant-(i % 3),
    feature f(i % 2), model gpt-4o / o3 alternating, at START + i minutes, costing
    1000 * (i + 1) nano-USD, route rag, prompt v3."""
    seed(ch)
    events = [(f"tenant-{i % 3}", f"f{i % 2}", ("gpt-4o", "o3")[i % 2], START + timedelta(minutes=i),
               1_000 * (i + 1)) for i in range(60)]  # fmt: skip

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
