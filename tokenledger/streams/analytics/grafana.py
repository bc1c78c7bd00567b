"""Grafana dashboards and alert rules, generated from the query library.

Every panel's SQL is a library query (clickhouse/queries) with its parameters replaced by
Grafana macros: ``{start:...}`` -> ``$__fromTime``, ``{end:...}`` -> ``$__toTime``,
``{tenant:String}`` -> the dashboard variable, ``{bucket_s:UInt32}`` -> ``$__interval_s``,
and fixed values a panel sets.

The tenant comes from the page's URL (``?var-tenant=``), so anyone who can open a dashboard
chooses it. The ClickHouse plugin pastes a variable as it is, and neither of Grafana's
quoting formats is safe in a ClickHouse string (``sqlstring`` doubles quotes and
``singlequote`` backslashes them, but neither escapes a backslash, so ``\'`` still closes
the string). Grafana's ``percentencode`` leaves only ``A-Z a-z 0-9 - _ . ~`` and ``%XX``,
which cannot end a string literal, and ``decodeURLComponent`` gives the value back. `tokenledger grafana export` writes
grafana/dashboards/*.json and grafana/provisioning/alerting/tokenledger.json; a test fails
when the committed files differ, so panels never drift from the library.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tokenledger.streams.analytics import queries
from tokenledger.streams.config import sql_root

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "tokenledger-clickhouse"}
GRAFANA_DIR = sql_root().parent / "grafana"
MACROS = {
    "start": "$__fromTime",
    "end": "$__toTime",
    "now": "now64(3)",
    "tenant": "decodeURLComponent('${tenant:percentencode}')",
    "bucket_s": "$__interval_s",
}
_PARAM = re.compile(r"\{(\w+):[^}]+\}")


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    kind: str = "table"  # table | timeseries | barchart | stat
    fixed: dict[str, str] = field(default_factory=dict)
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    tenant_variable: bool = False


DASHBOARDS = (
    Dashboard(
        "tokenledger-cost",
        "tokenledger: cost overview",
        (
            Panel(
                "Cost over time by model",
                "cost_over_time",
                "timeseries",
                {"dimension": "model"},
                24,
            ),
            Panel("Cost by tenant", "cost_by", fixed={"dimension": "tenant_id"}),
            Panel("Cost by model", "cost_by", fixed={"dimension": "model"}),
            Panel("Top spenders", "top_spenders", fixed={"limit": "10"}),
            Panel("Cost by route", "cost_by", fixed={"dimension": "route"}),
            Panel("Unpriced models (add a price)", "unpriced_models", fixed={"tenant": ""}),
            Panel(
                "Ledger vs the providers' reports (tokenledger reconcile)",
                "reconciliation",
                fixed={"provider": ""},
                width=24,
            ),
        ),
    ),
    Dashboard(
        "tokenledger-tenant",
        "tokenledger: tenant drill-down",
        (
            Panel(
                "Cost over time by feature",
                "cost_over_time",
                "timeseries",
                {"dimension": "feature"},
                24,
            ),
            Panel("Cost by feature", "cost_by_feature"),
            Panel("Cost by prompt version", "cost_by", fixed={"dimension": "prompt_version"}),
            Panel("Retry cost", "retry_cost"),
            Panel("Token budget violations", "token_budget_violations"),
            Panel("Cost per successful task", "cost_per_successful_task", width=24),
        ),
        tenant_variable=True,
    ),
    Dashboard(
        "tokenledger-savings",
        "tokenledger: savings",
        (
            Panel("Savings waterfall", "savings_waterfall", "barchart", width=24),
            Panel("Cache savings", "cache_savings"),
            Panel("Route and model comparison", "route_comparison", fixed={"route": ""}),
        ),
        tenant_variable=True,
    ),
    Dashboard(
        "tokenledger-budgets",
        "tokenledger: budgets",
        (
            Panel("Budget burn-down and forecast", "budget_burndown", width=24),
            Panel("Blocked scopes", "blocked_scopes"),
            Panel("Rejected into the DLQ", "dlq_by_reason"),
            Panel(
                "Cost over time by tenant",
                "cost_over_time",
                "timeseries",
                {"dimension": "tenant_id"},
                24,
            ),
        ),
        tenant_variable=True,
    ),
)

ALERTS = (
    ("tokenledger-blocked", "A budget scope is blocked", "blocked_scopes", 0),
    ("tokenledger-dlq", "Events rejected into the DLQ", "dlq_by_reason", 0),
)


def panel_sql(query: queries.Query, fixed: dict[str, str]) -> str:
    """The library SQL with every parameter replaced by a Grafana macro or a fixed value."""
    types = {p.name: p.type for p in query.params}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in fixed:
            value = fixed[name]
            return (
                value
                if types[name] == "Identifier" or types[name].startswith("UInt")
                else ("'" + value.replace("'", "") + "'")
            )
        if name in MACROS:
            return MACROS[name]
        raise ValueError(f"query {query.name}: parameter {name} has no Grafana macro or value")

    body = "\n".join(line for line in query.sql.splitlines() if not line.startswith("--"))
    return _PARAM.sub(replace, body).strip()


def _panel(panel: Panel, index: int, y: int, x: int, tenant_variable: bool) -> dict[str, object]:
    query = queries.get(panel.query)
    # without the variable Grafana would leave ${tenant} as text, matching no tenant: all of them
    fixed = panel.fixed if tenant_variable else {"tenant": "", **panel.fixed}
    return {
        "id": index + 1,
        "title": panel.title,
        "description": query.answers,
        "type": panel.kind,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": "timeseries" if panel.kind == "timeseries" else "table",
                "format": 0 if panel.kind == "timeseries" else 1,
                "rawSql": panel_sql(query, fixed),
                "meta": {"library_query": panel.query},
            }
        ],
    }


def dashboard(spec: Dashboard) -> dict[str, object]:
    panels, x, y = [], 0, 0
    for i, panel in enumerate(spec.panels):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(_panel(panel, i, y, x, spec.tenant_variable))
        x += panel.width
    variables = []
    if spec.tenant_variable:
        tenants = queries.get("tenants")
        variables.append(
            {
                "name": "tenant",
                "label": "Tenant",
                "type": "query",
                "datasource": DATASOURCE,
                "query": panel_sql(tenants, {}),
                "includeAll": True,
                "allValue": "",
                "current": {"text": "All", "value": ""},
                "refresh": 2,
            }
        )
    return {
        "uid": spec.uid,
        "title": spec.title,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "tags": ["tokenledger"],
        "templating": {"list": variables},
        "panels": panels,
    }


def alert_rules() -> dict[str, object]:
    """Grafana file-provisioned alert rules: fire when a library query returns rows."""
    rules = []
    for uid, title, name, threshold in ALERTS:
        sql = panel_sql(queries.get(name), {})
        rules.append(
            {
                "uid": uid,
                "title": title,
                "condition": "C",
                "for": "0s",
                "noDataState": "OK",
                "execErrState": "Error",
                "annotations": {"summary": queries.get(name).answers},
                "labels": {"source": "tokenledger"},
                "data": [
                    {
                        "refId": "A",
                        "datasourceUid": DATASOURCE["uid"],
                        "relativeTimeRange": {"from": 600, "to": 0},
                        "model": {
                            "refId": "A",
                            "editorType": "sql",
                            "format": 1,
                            "queryType": "table",
                            "rawSql": f"SELECT count() AS n FROM ({sql})",  # noqa: S608
                            "meta": {"library_query": name},
                        },
                    },
                    {
                        "refId": "B",
                        "datasourceUid": "__expr__",
                        "model": {
                            "refId": "B",
                            "type": "reduce",
                            "expression": "A",
                            "reducer": "last",
                        },
                    },
                    {
                        "refId": "C",
                        "datasourceUid": "__expr__",
                        "model": {
                            "refId": "C",
                            "type": "threshold",
                            "expression": "B",
                            "conditions": [{"evaluator": {"type": "gt", "params": [threshold]}}],
                        },
                    },
                ],
            }
        )
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "tokenledger",
                "folder": "tokenledger",
                "interval": "1m",
                "rules": rules,
            }
        ],
    }


def documents() -> dict[str, str]:
    """Path under grafana/ -> file text, for every generated file."""
    docs = {
        f"dashboards/{d.uid.removeprefix('tokenledger-')}.json": dashboard(d) for d in DASHBOARDS
    }
    docs["provisioning/alerting/tokenledger.json"] = alert_rules()
    return {path: json.dumps(doc, indent=2, sort_keys=True) + "\n" for path, doc in docs.items()}


def export(root: Path = GRAFANA_DIR) -> list[Path]:
    written = []
    for rel, text in documents().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def drift(root: Path = GRAFANA_DIR) -> list[str]:
    present = {str(p.relative_to(root)): p.read_text() for p in root.glob("dashboards/*.json")}
    alerting = root / "provisioning/alerting/tokenledger.json"
    if alerting.exists():
        present["provisioning/alerting/tokenledger.json"] = alerting.read_text()
    docs = documents()
    return sorted(n for n in set(docs) | set(present) if docs.get(n) != present.get(n))
