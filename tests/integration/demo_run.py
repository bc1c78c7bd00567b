"""Run a short demo in this process, then read its ClickHouse directly; print one JSON.

Used by test_demo.py in a subprocess: the embedded ClickHouse allows one data path per
process, and the test process has its own.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

from tokenledger.streams.analytics import report
from tokenledger.streams.config import Settings
from tokenledger.streams.demo import run as demo
from tokenledger.streams.sink.client import get_client


def main() -> int:
    settings = Settings.from_env()
    plan = demo.DemoPlan(requests_per_day=int(sys.argv[1]), seconds=float(sys.argv[2]))
    result = demo.run(settings, plan)
    client = get_client(settings.clickhouse, result.database)

    def rows(sql: str) -> list[list[Any]]:
        return [list(r) for r in client.query(sql).result_rows]

    data = report.collect(
        client, result.start - timedelta(hours=1), result.end + timedelta(hours=1)
    )
    out = {
        "emitted": [e.model_dump(mode="json") for e in result.emitted],
        "blocked": dict(result.blocked),
        "alerts": result.alerts,
        "budgets": [b.model_dump(mode="json") for b in result.budgets],
        "summary": result.summary,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "report": str(result.report),
        "report_tables": {name: t.dicts() for name, t in data.tables.items()},
        "raw": {
            "cost_by_tenant": rows(
                "SELECT tenant_id, sum(ifNull(cost_nusd, 0)), count() "
                "FROM usage_events FINAL GROUP BY tenant_id ORDER BY tenant_id"
            ),
            "retry": rows(
                "SELECT sumIf(ifNull(cost_nusd, 0), duplicate_generation), "
                "countIf(duplicate_generation) FROM usage_events FINAL"
            ),
            "cache": rows(
                "SELECT sum(ifNull(table_cost_nusd, 0)), count() FROM usage_events "
                "FINAL WHERE cache != 'none'"
            ),
            "signals": rows("SELECT scope, state FROM signals FINAL ORDER BY issued_at, scope"),
            "alerts": rows(
                "SELECT detector, tenant_id, status FROM alerts FINAL "
                "ORDER BY issued_at, fingerprint"
            ),
        },
    }
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
